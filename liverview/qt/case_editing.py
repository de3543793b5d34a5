"""Edits of the open case from the main window: picks, boxes, undo and redo, and the CAM source of its findings."""

from __future__ import annotations

from liverview.qt import box_edits
from liverview.qt.cam_overlay import CamSource
from liverview.study.case import MAX_PICKS, Box
from liverview.study.phases import PHASES


class CaseEditing:
    """Turns keys, clicks and drags into Case edits (each one an undo step, saved by the CaseSaver)."""

    def _case_event(self, kind: str, payload: dict) -> None:
        if kind in ("picks", "boxes", "restored"):
            if self.grid.selected_box and not any(b.id == self.grid.selected_box for b in self.case.boxes):
                self.grid.selected_box = None
            self.grid.refresh()
            self.picks.refresh()
        elif kind == "findings":
            self._new_cam_source()
            self.findings.set_findings(self.case.findings)
            self.cam_panel.set_available(self.cam.stages())
            self.grid.refresh()
        self._update_actions()

    def _new_cam_source(self) -> None:
        """CAMs of the case's findings, looked up by slice of each phase."""
        views = self.grid.views

        def slice_index(phase: str, position: float) -> int | None:
            view = views.get(phase)
            return view.index_for(position) if view is not None and view.volume is not None else None

        findings = self.case.findings if self.case is not None else None
        self.cam = CamSource(findings, self.cam_panel.current_stage(), self.cam_panel.cmap.currentText(), slice_index,
                             self.cam_panel.opacity.value() / 100.0)
        self.grid.cam_lookup = self.cam.lookup

    def _active_position(self) -> tuple[str, float] | None:
        v = self.grid.views[self.grid.active]
        if self.case is None or v.volume is None or v.position is None:
            return None
        return v.phase, v.position

    def toggle_pick(self) -> None:
        at = self._active_position()
        if at is None:
            return
        phase, pos = at
        if self.case.is_picked(phase, pos):
            self.case.remove_pick(phase, pos)
        elif not self.case.add_pick(phase, pos):
            self.statusBar().showMessage(f"phase {phase} already has {MAX_PICKS} picks: unpick one first", 5000)

    def pick_all(self) -> None:
        if self.case is None:
            return
        for p in PHASES:
            v = self.grid.views[p]
            if v.volume is None:
                continue
            pos = float(v.positions[v.index_for(self.grid.position)])
            if not self.case.is_picked(p, pos) and not self.case.add_pick(p, pos):
                self.statusBar().showMessage(f"phase {p} already has {MAX_PICKS} picks", 4000)

    def auto_pick(self) -> None:
        self._request("auto_pick")

    def run_analysis(self) -> None:
        self._request("analyze")

    def _box_drawn(self, phase: str, position: float, rect: tuple) -> None:
        if self.case is None:
            return
        box = self.case.add_box(Box(phase, position, *rect, origin="user", author=self.user))
        self.grid.select_box(box.id)

    def _box_changed(self, box_id: str, rect: tuple) -> None:
        if self.case is None:
            return
        try:
            box = self.case.box(box_id)
        except KeyError:
            return
        x0, y0, x1, y1 = rect
        if box.origin == "ai":  # a reader who moves an AI box stands behind it: it becomes theirs
            self.case.update_box(box_id, x0=x0, y0=y0, x1=x1, y1=y1, origin="user", accepted=True, author=self.user)
        else:
            self.case.update_box(box_id, x0=x0, y0=y0, x1=x1, y1=y1)
        self.grid.select_box(box_id)

    def _box_selected(self, box_id: str) -> None:
        self.grid.select_box(box_id)
        box = self._selected()
        if box is not None and box.origin == "ai" and not box.accepted:
            score = f" (score {box.score:.2f})" if box.score is not None else ""
            self.statusBar().showMessage(f"AI box{score}: Enter accepts it, dragging makes it yours, Delete removes it", 6000)

    def _selected(self) -> Box | None:
        if self.case is None or not self.grid.selected_box:
            return None
        try:
            return self.case.box(self.grid.selected_box)
        except KeyError:
            return None

    def delete_box(self) -> None:
        box = self._selected()
        if box is None:
            self.statusBar().showMessage("click a box to select it first", 3000)
            return
        self.case.remove_box(box.id)
        self.grid.select_box(None)

    def copy_box(self) -> None:
        box = self._selected()
        if box is None:
            self.statusBar().showMessage("click a box to select it first", 3000)
            return
        new = box_edits.copy_to_other_phases(self.case, box.id, self.user)
        self.statusBar().showMessage(
            f"copied the box to {', '.join(f'{b.phase} ({b.position:.1f} mm)' for b in new) or 'no other phase'}", 5000)

    def accept_box(self) -> None:
        box = self._selected()
        if box is None or box.origin != "ai":
            self.statusBar().showMessage("select an AI box (dashed) to accept it", 3000)
            return
        self.case.update_box(box.id, accepted=True)

    def accept_all(self) -> None:
        if self.case is not None:
            n = box_edits.accept_all_ai(self.case)
            self.statusBar().showMessage(f"accepted {n} AI boxes", 3000)

    def undo(self) -> None:
        if self.case is not None and not self.case.undo():
            self.statusBar().showMessage("nothing to undo", 2000)

    def redo(self) -> None:
        if self.case is not None and not self.case.redo():
            self.statusBar().showMessage("nothing to redo", 2000)

    def jump_to(self, phase: str, position: float) -> None:
        self.grid.set_active(phase)
        self.grid.set_position(position)

