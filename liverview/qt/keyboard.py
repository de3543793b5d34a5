"""The keyboard map: one table that sets the actions' shortcuts, the Help dialog and docs/keyboard.md."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    action: str  # the QAction name in the main window ("" for mouse gestures)
    keys: tuple[str, ...]  # QKeySequence strings; the first is shown first
    text: str
    group: str


KEYS: tuple[Key, ...] = (
    Key("open_folder", ("Ctrl+O",), "Open an exam folder", "Exam"),
    Key("open_file", ("Ctrl+Shift+O",), "Open a DICOMDIR or zip file", "Exam"),
    Key("phase_dialog", ("Ctrl+Shift+P",), "Show or reassign the phase of each series", "Exam"),
    Key("quit", ("Ctrl+Q",), "Quit", "Exam"),
    Key("prev_slice", ("Up", "Left"), "Previous slice (all phases follow by patient position)", "Navigate"),
    Key("next_slice", ("Down", "Right"), "Next slice", "Navigate"),
    Key("prev_10", ("PgUp",), "Ten slices back", "Navigate"),
    Key("next_10", ("PgDown",), "Ten slices forward", "Navigate"),
    Key("first_slice", ("Home",), "First slice", "Navigate"),
    Key("last_slice", ("End",), "Last slice", "Navigate"),
    Key("cine", ("C",), "Cine play / stop", "Navigate"),
    Key("next_phase", ("Tab",), "Make the next phase the active one", "Navigate"),
    Key("phase_P", ("1",), "Active phase: pre-contrast (P)", "Navigate"),
    Key("phase_A", ("2",), "Active phase: arterial (A)", "Navigate"),
    Key("phase_V", ("3",), "Active phase: portal venous (V)", "Navigate"),
    Key("phase_D", ("4",), "Active phase: delayed (D)", "Navigate"),
    Key("layout", ("L",), "Cycle the layout: 2 x 2, 1 x 4, single phase", "View"),
    Key("reset_view", ("R",), "Reset zoom and pan", "View"),
    Key("window_next", ("W",), "Next window preset", "View"),
    Key("link_windows", ("Shift+W",), "Link / unlink the windows of the phases", "View"),
    Key("cam_toggle", ("H",), "Show / hide the Grad-CAM overlay", "View"),
    Key("cam_stage", ("Shift+H",), "Grad-CAM stage: stage 1 / stage 2", "View"),
    Key("cam_less", ("[",), "Grad-CAM overlay more transparent", "View"),
    Key("cam_more", ("]",), "Grad-CAM overlay more opaque", "View"),
    Key("pick", ("Space",), "Pick / unpick the current slice of the active phase", "Picks and boxes"),
    Key("pick_all", ("Shift+Space",), "Pick the current position in every phase", "Picks and boxes"),
    Key("auto_pick", ("Ctrl+K",), "Auto-pick three slices per phase (engine)", "Picks and boxes"),
    Key("draw_box", ("B",), "Box drawing tool on / off (left-drag on a picked slice)", "Picks and boxes"),
    Key("delete_box", ("Delete", "Backspace"), "Delete the selected box", "Picks and boxes"),
    Key("copy_box", ("Ctrl+D",), "Copy the selected box to the matching slices of the other phases", "Picks and boxes"),
    Key("accept_box", ("Return", "Enter"), "Accept the selected AI box", "Picks and boxes"),
    Key("accept_all", ("Shift+Return",), "Accept every AI box", "Picks and boxes"),
    Key("undo", ("Ctrl+Z",), "Undo the last pick or box edit", "Picks and boxes"),
    Key("redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo", "Picks and boxes"),
    Key("analyze", ("Ctrl+R", "F5"), "Run the analysis (detection and diagnosis)", "Analysis"),
    Key("cancel", ("Esc",), "Cancel the running task", "Analysis"),
    Key("keyboard_map", ("F1",), "This keyboard map", "Help"),
    Key("", ("Wheel",), "Scroll slices", "Mouse"),
    Key("", ("Ctrl+Wheel",), "Zoom (all phases follow)", "Mouse"),
    Key("", ("Left-drag", "Middle-drag"), "Pan (all phases follow)", "Mouse"),
    Key("", ("Right-drag",), "Window / level: left-right sets the width, up-down the level", "Mouse"),
    Key("", ("Shift+Left-drag",), "Draw a box on a picked slice (also with the box tool on)", "Mouse"),
    Key("", ("Drag a box or its handles",), "Move / resize a box", "Mouse"),
    Key("", ("Click a thumbnail",), "Jump to that picked slice", "Mouse"),
)


def shortcuts(action: str) -> tuple[str, ...]:
    for k in KEYS:
        if k.action == action:
            return k.keys
    raise KeyError(f"no keyboard entry for action {action!r}")


def markdown() -> str:
    """The keyboard map as Markdown (the text of docs/keyboard.md)."""
    lines = [
        "# liverview keyboard map",
        "",
        "Generated from `liverview/qt/keyboard.py` (the same table sets the shortcuts and the",
        "Help > Keyboard map dialog); `tests/qt/test_keyboard.py` checks that they agree.",
        "",
    ]
    group = None
    for k in KEYS:
        if k.group != group:
            group = k.group
            lines += ["", f"## {group}", "", "| keys | what it does |", "|---|---|"]
        keys = " or ".join(f"`{key}`" for key in k.keys)
        lines.append(f"| {keys} | {k.text} |")
    return "\n".join(lines).replace("\n\n\n", "\n\n") + "\n"


def html() -> str:
    """The keyboard map as HTML for the Help dialog."""
    rows, group = [], None
    for k in KEYS:
        if k.group != group:
            group = k.group
            rows.append(f"<tr><td colspan=2><h3>{group}</h3></td></tr>")
        keys = " or ".join(f"<b>{key}</b>" for key in k.keys)
        rows.append(f"<tr><td style='padding-right:16px'>{keys}</td><td>{k.text}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"
