"""Builds the main window's parts: docks for picks, analysis and problems, status bar, actions (from the keyboard table), menus, toolbar."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDockWidget, QLabel, QListWidget, QProgressBar, QPushButton, QScrollArea, QVBoxLayout,
    QWidget,
)

from liverview.qt import keyboard
from liverview.qt.cam_panel import CamPanel
from liverview.qt.findings_panel import FindingsPanel
from liverview.qt.phase_grid import LAYOUTS, PRESETS
from liverview.qt.pick_strip import PickStrip



def build_docks(w) -> None:
    w.picks = PickStrip()
    w.picks.sigJump.connect(w.jump_to)
    w.picks.sigPick.connect(w.toggle_pick)
    w.picks.sigAutoPick.connect(w.auto_pick)
    dock = QDockWidget("Picked slices", w)
    dock.setObjectName("picks")
    dock.setWidget(w.picks)
    w.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
    w.picks_dock = dock

    w.cam_panel = CamPanel()  # its controls set the session's view state (MainWindow._bind_session)
    w.findings = FindingsPanel()
    holder = QWidget()
    lay = QVBoxLayout(holder)
    lay.setContentsMargins(0, 0, 0, 0)
    w.analyze_button = QPushButton("Run analysis (Ctrl+R)")
    w.analyze_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    w.analyze_button.clicked.connect(w.run_analysis)
    w.engine_label = QLabel("engine: not started")
    w.engine_label.setWordWrap(True)
    lay.addWidget(w.analyze_button)
    lay.addWidget(w.engine_label)
    lay.addWidget(w.cam_panel)
    lay.addWidget(w.findings)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(holder)
    dock = QDockWidget("Analysis", w)
    dock.setObjectName("findings")
    dock.setWidget(scroll)
    dock.setMinimumWidth(430)
    w.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
    w.findings_dock = dock

    w.problems = QListWidget()
    w.problems.setWordWrap(True)
    w.problems.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # item views swallow letter and Space shortcuts
    dock = QDockWidget("Problems", w)
    dock.setObjectName("problems")
    dock.setWidget(w.problems)
    w.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    w.problems_dock = dock
    w.resizeDocks([w.problems_dock], [90], Qt.Orientation.Vertical)

def build_status(w) -> None:
    bar = w.statusBar()
    w.readout = QLabel("")
    w.readout.setMinimumWidth(520)
    bar.addWidget(w.readout, 1)
    w.progress = QProgressBar()
    w.progress.setMaximumWidth(260)
    w.progress.setRange(0, 1000)
    w.progress.setTextVisible(True)
    w.progress.hide()
    bar.addPermanentWidget(w.progress)
    w.cancel_button = QPushButton("Cancel")
    w.cancel_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    w.cancel_button.clicked.connect(w.cancel_work)
    w.cancel_button.hide()
    bar.addPermanentWidget(w.cancel_button)

def build_actions(w) -> None:
    handlers = {
        "open_folder": w.open_folder_dialog,
        "open_file": w.open_file_dialog,
        "phase_dialog": w.show_phase_dialog,
        "quit": w.close,
        "prev_slice": lambda: w.grid.step(-1),
        "next_slice": lambda: w.grid.step(1),
        "prev_10": lambda: w.grid.step(-10),
        "next_10": lambda: w.grid.step(10),
        "first_slice": lambda: w.grid.go_to_end(False),
        "last_slice": lambda: w.grid.go_to_end(True),
        "cine": w.toggle_cine,
        "next_phase": w._next_phase,
        "phase_P": lambda: w.grid.set_active("P"),
        "phase_A": lambda: w.grid.set_active("A"),
        "phase_V": lambda: w.grid.set_active("V"),
        "phase_D": lambda: w.grid.set_active("D"),
        "layout": lambda: w.set_layout(w.grid.cycle_layout()),
        "reset_view": w.grid.reset_view,
        "window_next": lambda: w.set_preset(w.grid.cycle_preset()),
        "link_windows": lambda: w.link_box.toggle(),
        "cam_toggle": lambda: w.cam_panel.toggle.toggle(),
        "cam_stage": w.cam_panel.cycle_stage,
        "cam_less": lambda: w.cam_panel.step_opacity(-10),
        "cam_more": lambda: w.cam_panel.step_opacity(10),
        "pick": w.toggle_pick,
        "pick_all": w.pick_all,
        "auto_pick": w.auto_pick,
        "draw_box": None,  # checkable, below
        "delete_box": w.delete_box,
        "copy_box": w.copy_box,
        "accept_box": w.accept_box,
        "accept_all": w.accept_all,
        "undo": w.undo,
        "redo": w.redo,
        "analyze": w.run_analysis,
        "cancel": w.cancel_work,
        "keyboard_map": w.show_keyboard_map,
    }
    w.actions: dict[str, QAction] = {}
    for entry in keyboard.KEYS:
        if not entry.action:
            continue
        act = QAction(entry.text, w)
        act.setObjectName(entry.action)
        act.setShortcuts([QKeySequence(k) for k in entry.keys])
        act.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        handler = handlers[entry.action]
        if handler is not None:
            act.triggered.connect(lambda _=False, h=handler: h())
        w.addAction(act)
        w.actions[entry.action] = act
    draw = w.actions["draw_box"]
    draw.setCheckable(True)
    draw.toggled.connect(w.grid.set_draw_mode)
    w.actions["keyboard_map"].setMenuRole(QAction.MenuRole.NoRole)

def build_menus_and_toolbar(w) -> None:
    a = w.actions
    m = w.menuBar().addMenu("&File")
    m.addAction(a["open_folder"])
    m.addAction(a["open_file"])
    w.recent_menu = m.addMenu("Recent exams")
    w.recent_menu.aboutToShow.connect(w._fill_recent)
    demo = QAction("Open the demo phantom exam", w)
    demo.triggered.connect(w.open_demo)
    m.addAction(demo)
    m.addSeparator()
    m.addAction(a["quit"])

    m = w.menuBar().addMenu("&Exam")
    m.addAction(a["phase_dialog"])

    m = w.menuBar().addMenu("&View")
    w.layout_group = QActionGroup(w)
    w.layout_actions = {}
    for mode in LAYOUTS:
        act = QAction(f"Layout {mode.replace('x', ' x ')}", w, checkable=True)
        act.triggered.connect(lambda _=False, mode=mode: w.set_layout(mode))
        w.layout_group.addAction(act)
        m.addAction(act)
        w.layout_actions[mode] = act
    w.layout_actions[w.grid.layout_mode].setChecked(True)
    m.addAction(a["layout"])
    m.addSeparator()
    for key in ("prev_slice", "next_slice", "cine", "reset_view", "window_next", "link_windows"):
        m.addAction(a[key])
    m.addSeparator()
    for key in ("cam_toggle", "cam_stage", "cam_less", "cam_more"):
        m.addAction(a[key])

    m = w.menuBar().addMenu("&Picks and boxes")
    for key in ("pick", "pick_all", "auto_pick", None, "draw_box", "delete_box", "copy_box", "accept_box",
                "accept_all", None, "undo", "redo"):
        if key is None:
            m.addSeparator()
        else:
            m.addAction(a[key])

    m = w.menuBar().addMenu("&Analysis")
    m.addAction(a["analyze"])
    m.addAction(a["cancel"])
    choose = QAction("Choose model bundle folder…", w)
    choose.triggered.connect(w.choose_bundle_dialog)
    m.addAction(choose)
    w.choose_bundle_action = choose

    m = w.menuBar().addMenu("&Help")
    m.addAction(a["keyboard_map"])
    about = QAction("About liverview", w)
    about.triggered.connect(w.show_about)
    m.addAction(about)

    tb = w.addToolBar("Main")
    tb.setObjectName("main-toolbar")
    tb.addAction(a["open_folder"])
    tb.addSeparator()
    tb.addWidget(QLabel(" Layout "))
    w.layout_combo = QComboBox()
    w.layout_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    w.layout_combo.addItems(list(LAYOUTS))
    w.layout_combo.currentTextChanged.connect(w.set_layout)
    tb.addWidget(w.layout_combo)
    tb.addWidget(QLabel(" Window "))
    w.preset_combo = QComboBox()
    w.preset_combo.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    w.preset_combo.addItems(list(PRESETS) + ["custom"])
    w.preset_combo.model().item(len(PRESETS)).setEnabled(False)
    w.preset_combo.currentTextChanged.connect(lambda name: name in PRESETS and w.set_preset(name))
    tb.addWidget(w.preset_combo)
    w.link_box = QCheckBox("link windows")
    w.link_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    w.link_box.setChecked(w.grid.link_windows)
    w.link_box.toggled.connect(w._link_windows)
    tb.addWidget(w.link_box)
    tb.addSeparator()
    tb.addAction(a["cine"])
    tb.addAction(a["pick"])
    tb.addAction(a["auto_pick"])
    tb.addAction(a["draw_box"])
    tb.addAction(a["undo"])
    tb.addAction(a["redo"])
    tb.addSeparator()
    tb.addAction(a["analyze"])
    tb.addAction(a["cam_toggle"])
    for act, text in ((a["pick"], "Pick"), (a["auto_pick"], "Auto-pick"), (a["draw_box"], "Draw box"),
                      (a["analyze"], "Analyze"), (a["cam_toggle"], "CAM"), (a["cine"], "Cine"),
                      (a["open_folder"], "Open"), (a["undo"], "Undo"), (a["redo"], "Redo")):
        act.setIconText(text)
    for child in tb.findChildren(QWidget):
        child.setFocusPolicy(Qt.FocusPolicy.NoFocus)

