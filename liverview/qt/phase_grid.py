"""The four-phase grid: P, A, V, D views in 2 x 2, 1 x 4 or single layout, linked by patient position."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, QTimer, Signal

from liverview.qt.box_layer import BoxLayer
from liverview.qt.phase_view import PhaseView
from liverview.study.case import Box, Case
from liverview.study.phases import PHASES, WINDOWS

LAYOUTS = ("2x2", "1x4", "single")
MAX_AI_SHOWN = 3
POOL_ROIS = MAX_AI_SHOWN + 2  # box outlines each view keeps ready

# name -> (level, width) in HU; "METHOD" gives every phase its own window (liverview.study.phases.WINDOWS).
PRESETS: dict[str, tuple[float, float] | None] = {
    "METHOD": None,
    "abdomen": (40.0, 400.0),
    "liver": (60.0, 160.0),
    "bone": (400.0, 1800.0),
}

CamLookup = Callable[[str, float], tuple[object, np.ndarray, tuple[float, float, float, float]] | None]


class PhaseGrid(pg.GraphicsLayoutWidget):
    """Shows one position of every phase; a scroll in any view moves them all by patient position."""

    sigPositionChanged = Signal(float)
    sigActiveChanged = Signal(str)
    sigHover = Signal(object)  # readout dict or None
    sigBoxDrawn = Signal(str, float, tuple)  # phase, slice position, pixel rect
    sigBoxChanged = Signal(str, tuple)  # box id, pixel rect
    sigBoxSelected = Signal(str)
    sigMessage = Signal(str)
    sigWindowChanged = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setBackground("#000000")
        # keys belong to the window's shortcuts: a focused QGraphicsView would eat arrows and Space
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.ci.setSpacing(2)
        self.ci.setContentsMargins(0, 0, 0, 0)
        self.views: dict[str, PhaseView] = {}
        self.box_layers: dict[str, BoxLayer] = {}
        for p in PHASES:
            v = PhaseView(p)
            v.sigScroll.connect(lambda view, n: self.step(n, view.phase))
            v.sigWindowDrag.connect(self._window_drag)
            v.sigActivated.connect(lambda view: self.set_active(view.phase))
            v.sigBoxDrawn.connect(lambda view, rect: self.sigBoxDrawn.emit(view.phase, view.position, rect))
            v.sigMessage.connect(self.sigMessage)
            layer = BoxLayer(v)
            layer.sigChanged.connect(self.sigBoxChanged)
            layer.sigSelected.connect(self.sigBoxSelected)
            self.views[p] = v
            self.box_layers[p] = layer
        for p in PHASES[1:]:
            self.views[p].setXLink(self.views[PHASES[0]])
            self.views[p].setYLink(self.views[PHASES[0]])
        self.layout_mode = ""
        self.active = PHASES[0]
        self.position: float | None = None
        self.case: Case | None = None
        self.selected_box: str | None = None
        self.link_windows = True
        self.preset = "METHOD"
        self.cam_lookup: CamLookup | None = None
        self.cam_visible = True
        self._box_index: dict[tuple[str, float], list[Box]] | None = None
        self.set_layout("2x2")
        self.set_preset("METHOD")
        self.views[self.active].set_active(True)
        self.scene().sigMouseMoved.connect(self._mouse_moved)
        self._prewarm = QTimer(self)
        self._prewarm.setInterval(40)
        self._prewarm.timeout.connect(self._prewarm_step)
        self._prewarm.start()

    def _prewarm_step(self) -> None:
        """One box ROI per tick until every view has POOL_ROIS ready."""
        for layer in self.box_layers.values():
            if layer.prewarm(POOL_ROIS):
                return
        self._prewarm.stop()

    # ---- layout ---------------------------------------------------------------------------
    def set_layout(self, mode: str) -> None:
        if mode not in LAYOUTS:
            raise ValueError(f"unknown layout {mode!r}: expected one of {', '.join(LAYOUTS)}")
        if mode == self.layout_mode:
            return
        self.layout_mode = mode
        for v in self.views.values():
            if v.parentItem() is not None:
                self.ci.removeItem(v)
            v.hide()
        if mode == "2x2":
            cells = {p: divmod(i, 2) for i, p in enumerate(PHASES)}
        elif mode == "1x4":
            cells = {p: (0, i) for i, p in enumerate(PHASES)}
        else:
            cells = {self.active: (0, 0)}
        for p, (r, c) in cells.items():
            self.ci.addItem(self.views[p], row=r, col=c)
            self.views[p].show()
        self.ci.setGeometry(self.range)  # removing every cell collapsed the layout; give it the view back
        if self.position is not None:
            self._show(force=True)

    def cycle_layout(self) -> str:
        mode = LAYOUTS[(LAYOUTS.index(self.layout_mode) + 1) % len(LAYOUTS)]
        self.set_layout(mode)
        return mode

    def visible_phases(self) -> list[str]:
        return [p for p, v in self.views.items() if v.isVisible()]

    def set_active(self, phase: str) -> None:
        if phase not in self.views:
            return
        if phase != self.active:
            self.views[self.active].set_active(False)
            self.active = phase
            self.views[phase].set_active(True)
            if self.layout_mode == "single":
                self.layout_mode = ""
                self.set_layout("single")
            self.sigActiveChanged.emit(phase)

    # ---- content --------------------------------------------------------------------------
    def set_case(self, case: Case | None, descriptions: dict[str, str] | None = None) -> None:
        """Show a case's study (None clears). Starts at the middle of the active phase."""
        self.case = case
        self.selected_box = None
        self._box_index = None
        study = case.study if case is not None else None
        for p, v in self.views.items():
            vol = study.volumes.get(p) if study else None
            v.set_volume(vol, (descriptions or {}).get(p, ""))
            self.box_layers[p].forget()
        self.position = None
        loaded = [p for p in PHASES if self.views[p].volume is not None]
        if loaded:
            if self.active not in loaded:
                self.set_active(loaded[0])
            pos = self.views[self.active].positions
            self.set_preset(self.preset)
            self.set_position(float(pos[len(pos) // 2]))
            self.views[loaded[0]].reset_range()

    def set_position(self, position: float) -> None:
        self.position = float(position)
        self._show()
        self.sigPositionChanged.emit(self.position)

    def step(self, n: int, phase: str | None = None) -> None:
        """Move n slices of `phase` (the active one by default); other phases follow by position."""
        phase = phase or self.active
        v = self.views.get(phase)
        if v is None or v.volume is None or self.position is None:
            return
        k = int(np.clip(v.index_for(self.position) + n, 0, len(v.positions) - 1))
        self.set_position(float(v.positions[k]))

    def go_to_end(self, last: bool) -> None:
        v = self.views[self.active]
        if v.volume is not None:
            self.set_position(float(v.positions[-1 if last else 0]))

    def refresh(self) -> None:
        """Redraw picks, boxes and CAM after the case changed."""
        self._box_index = None
        self._show(force=True)

    def refresh_ready(self) -> None:
        """Show slices the loader has decoded since the last call."""
        for v in self.views.values():
            if v.isVisible():
                v.refresh_if_ready()

    def _show(self, force: bool = False) -> None:
        if self.position is None:
            return
        case = self.case
        for p in self.visible_phases():
            v = self.views[p]
            if v.volume is None:
                continue
            changed = v.show_position(self.position)
            if not (changed or force):
                continue
            pos = v.position
            picks = case.picks.get(p, []) if case is not None else []
            rank = next((i for i, q in enumerate(picks) if abs(q - pos) <= 1e-3), None)
            v.set_picked(rank is not None, rank)
            self.box_layers[p].show(self.shown_boxes(p, pos), self.selected_box)
            self._show_cam(v)

    def _show_cam(self, v: PhaseView) -> None:
        found = self.cam_lookup(v.phase, v.position) if (self.cam_lookup and self.cam_visible) else None
        if found is None:
            v.set_cam(None, None, None)
        else:
            key, image, rect = found
            v.set_cam(key, image, rect)

    def set_cam_visible(self, visible: bool) -> None:
        self.cam_visible = visible
        for v in self.views.values():
            if v.volume is not None and v.index >= 0:
                self._show_cam(v)

    def select_box(self, box_id: str | None) -> None:
        self.selected_box = box_id
        self._show(force=True)

    # ---- windows --------------------------------------------------------------------------
    def set_preset(self, name: str) -> None:
        """Apply a window preset to every phase (linked) or to the active phase."""
        if name not in PRESETS:
            raise ValueError(f"unknown window preset {name!r}: expected one of {', '.join(PRESETS)}")
        self.preset = name
        phases = PHASES if self.link_windows else (self.active,)
        for p in phases:
            lw = PRESETS[name] or WINDOWS[p]
            self.views[p].set_window(*lw)
        self.sigWindowChanged.emit()

    def cycle_preset(self) -> str:
        names = list(PRESETS)
        name = names[(names.index(self.preset) + 1) % len(names)] if self.preset in names else names[0]
        self.set_preset(name)
        return name

    def set_window(self, phase: str, level: float, width: float) -> None:
        if self.link_windows:
            for v in self.views.values():
                v.set_window(level, width)
        else:
            self.views[phase].set_window(level, width)
        self.sigWindowChanged.emit()

    def _window_drag(self, view: PhaseView, level: float, width: float) -> None:
        self.preset = "custom"
        self.set_window(view.phase, level, width)

    def reset_view(self) -> None:
        for p in PHASES:
            if self.views[p].volume is not None:
                self.views[p].reset_range()
                return

    # ---- mouse readout --------------------------------------------------------------------
    def _mouse_moved(self, scene_pos: QPointF) -> None:
        for v in self.views.values():
            if v.isVisible():
                info = v.readout(scene_pos)
                if info is not None:
                    self.sigHover.emit(info)
                    return
        self.sigHover.emit(None)

    def set_draw_mode(self, on: bool) -> None:
        for v in self.views.values():
            v.draw_mode = on

    def shown_boxes(self, phase: str, position: float | None = None) -> list[Box]:
        """The boxes drawn on a phase's slice: every user box, accepted AI boxes, and the
        MAX_AI_SHOWN best-scoring unaccepted AI boxes (an untrained detector proposes dozens)."""
        position = self.views[phase].position if position is None else position
        if self.case is None or position is None:
            return []
        if self._box_index is None:  # (phase, slice index) -> boxes; rebuilt after every case change
            self._box_index = {}
            for b in self.case.boxes:
                v = self.views.get(b.phase)
                if b.origin == "truth" or v is None or v.volume is None:
                    continue
                k = v.index_for(b.position)
                if abs(v.positions[k] - b.position) <= 1e-3:  # the tolerance of Case.boxes_on
                    self._box_index.setdefault((b.phase, k), []).append(b)
        boxes = self._box_index.get((phase, self.views[phase].index_for(position)), [])
        proposals = sorted((b for b in boxes if b.origin == "ai" and not b.accepted), key=lambda b: -(b.score or 0.0))
        hidden = {b.id for b in proposals[MAX_AI_SHOWN:] if b.id != self.selected_box}
        return [b for b in boxes if b.id not in hidden]
