"""`--screenshot FILE`: open the exam, auto-pick, analyse, show the CAM, save the window as a PNG and quit."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from liverview.study.case import MAX_PICKS

log = logging.getLogger(__name__)
TIMEOUT_S = 900


class ScreenshotDriver(QObject):
    """Drives a MainWindow through the demo steps; `exit_code` is 0 once the PNG is written."""

    def __init__(self, window, path: str) -> None:
        super().__init__(window)
        self.window = window
        self.path = Path(path)
        self.exit_code = 1
        self.picked_by = ""
        window.sigEngineStudyReady.connect(self._exam_ready)
        window.sigAutoPickDone.connect(self._picked)
        window.sigAnalysisDone.connect(self._analysed)
        window.sigJobFailed.connect(self._job_failed)
        window.sigEngineState.connect(self._engine_state)
        window.session.open_failed.connect(lambda message: self._fail(f"could not open the exam: {message}"))
        self._stage = "loading"
        QTimer.singleShot(TIMEOUT_S * 1000, lambda: self._fail(f"timed out after {TIMEOUT_S} s at step {self._stage}"))

    def _engine_state(self, state: str) -> None:
        if state == "no-bundle":
            self._fail(f"no model bundle: {self.window.engine.bundle_error} (pass --bundle DIR)")

    def _exam_ready(self) -> None:
        if self._stage != "loading":
            return
        case = self.window.case
        if all(len(case.picks.get(p, [])) == MAX_PICKS for p in case.study.phases):
            self.picked_by = "case file"
            self._picked()
            return
        self._stage = "auto-pick"
        self.window.auto_pick()

    def _job_failed(self, message: str) -> None:
        if self._stage == "auto-pick":
            self._fallback_picks(message)
        else:
            self._fail(f"{self._stage} failed: {message}")

    def _fallback_picks(self, why: str) -> None:
        """Auto-pick found nothing: use the phantom's reference picks (demo) or the middle slices."""
        from liverview.qt.demo import demo_truth

        case = self.window.case
        try:
            truth = demo_truth(Path(self.window.path))
            picks = {p: truth["phases"][p]["picks"] for p in case.study.phases}
            self.picked_by = f"phantom reference picks (auto-pick: {why})"
        except (OSError, KeyError, ValueError):
            picks = {}
            for p in case.study.phases:
                pos = case.volume(p).positions
                mid = len(pos) // 2
                picks[p] = [float(pos[max(0, mid - 2)]), float(pos[mid]), float(pos[min(len(pos) - 1, mid + 2)])]
            self.picked_by = f"middle slices (auto-pick: {why})"
        case.set_all_picks(picks)
        self.window.add_problem(f"screenshot: picks from {self.picked_by}")
        self._picked()

    def _picked(self) -> None:
        if self._stage not in ("loading", "auto-pick"):
            return
        self.picked_by = self.picked_by or "auto-pick"
        self._stage = "analysis"
        self.window.run_analysis()

    def _analysed(self) -> None:
        if self._stage != "analysis":
            return
        self._stage = "render"
        w = self.window
        case = w.case
        active = "V" if "V" in case.study.phases else case.study.phases[0]
        w.grid.set_active(active)
        picks = case.picks.get(active) or []
        if picks:
            w.grid.set_position(picks[len(picks) // 2])
        w.cam_panel.toggle.setChecked(True)
        QTimer.singleShot(300, self._render)

    def _render(self) -> None:
        w = self.window
        QApplication.processEvents()
        if QApplication.platformName() == "offscreen":
            image = w.grab()  # the widgets painted into a pixmap
        else:  # a real display (e.g. Xvfb): what the screen shows where the window is
            image = w.screen().grabWindow(w.winId())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(self.path), "PNG"):
            self._fail(f"{self.path}: could not write the PNG")
            return
        print(f"screenshot written to {self.path} (picks: {self.picked_by}; "
              f"result: {w.findings.summary()})", flush=True)
        self.exit_code = 0
        self._stage = "done"
        QApplication.quit()

    def _fail(self, message: str) -> None:
        if self._stage == "done":
            return
        log.error("screenshot: %s", message)
        print(f"screenshot failed: {message}", file=sys.stderr, flush=True)
        self._stage = "done"
        self.exit_code = 1
        QApplication.quit()
