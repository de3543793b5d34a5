"""The main window: opening exams, the four-phase grid, picks, boxes, analysis, findings and CAM overlays."""

from __future__ import annotations

import getpass
import logging
import os
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QDialog, QMainWindow, QMessageBox, QTextBrowser, QVBoxLayout

from liverview import RESEARCH_NOTICE
from liverview.qt import gc_pauses, keyboard
from liverview.qt.analysis_jobs import AnalysisJobs
from liverview.qt.case_editing import CaseEditing
from liverview.qt.cam_overlay import CamSource
from liverview.qt.case_saver import CaseSaver
from liverview.qt.engine_client import EngineClient
from liverview.qt.exam_opening import ExamOpening, _Relay
from liverview.qt.phase_grid import PRESETS, PhaseGrid
from liverview.qt.settings import settings
from liverview.qt.window_layout import WindowLayout
from liverview.qt.workers import Task, TaskRunner
from liverview.study.case import Case, Study
from liverview.study.phases import PHASES

log = logging.getLogger(__name__)


class MainWindow(ExamOpening, AnalysisJobs, CaseEditing, WindowLayout, QMainWindow):
    """The viewer: the mixins hold opening, analysis, editing and construction; this class the
    state, the view controls, progress, errors and closing."""

    sigStudyShown = Signal()  # the grid shows a new exam (its slices may still be decoding)
    sigExamLoaded = Signal()  # every slice decoded, problems listed
    sigEngineStudyReady = Signal()  # the engine process has the exam
    sigAnalysisDone = Signal()
    sigAutoPickDone = Signal()
    sigJobFailed = Signal(str)

    def __init__(self, bundle_dir: str | None = None, engine_threads: int = 0) -> None:
        super().__init__()
        self.setWindowTitle(f"liverview — {RESEARCH_NOTICE}")
        self.resize(1500, 950)
        self.setAcceptDrops(True)
        self.user = getpass.getuser() if hasattr(os, "getuid") else "reader"
        self.runner = TaskRunner(self)
        stored_bundle = settings().value("engine/bundle", "")
        self.engine = EngineClient(bundle_dir or (str(stored_bundle) if stored_bundle else None), engine_threads, self)
        self.engine.sigState.connect(self._engine_state)
        self.engine.sigBundle.connect(self._engine_bundle)
        self.engine.sigProgress.connect(self._engine_progress)
        self.engine.sigResult.connect(self._engine_result)
        self.engine.sigError.connect(self._engine_error)
        self.engine.sigCancelled.connect(self._engine_cancelled)
        self.engine.sigStudyReady.connect(self._engine_study_ready)

        self.path: str | None = None
        self.exam = None
        self.study: Study | None = None
        self.case: Case | None = None
        self.saver: CaseSaver | None = None
        self.case_path: Path | None = None
        self.case_restored = False
        self.phase_override: dict[str, str] | None = None
        self.load_token = 0
        self.load_task: Task | None = None
        self.loading = False
        self.cam = CamSource(None)
        self.lesion_extent: tuple[float, float] | None = None
        self.jobs: dict[int, str] = {}
        self._pending_jobs: list[str] = []
        self.last_error = ""
        self._relay = _Relay(self)
        self._relay.study.connect(self._study_arrived)
        self._progress_owner: object = None
        self._shared_token: int | None = None
        self.preload_task: Task | None = None
        self.shut_down = False

        self.grid = PhaseGrid()
        self.grid.cam_lookup = self.cam.lookup
        self.setCentralWidget(self.grid)
        self.grid.sigHover.connect(self._hover)
        self.grid.sigBoxDrawn.connect(self._box_drawn)
        self.grid.sigBoxChanged.connect(self._box_changed)
        self.grid.sigBoxSelected.connect(self._box_selected)
        self.grid.sigMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.grid.sigActiveChanged.connect(lambda p: self.statusBar().showMessage(f"active phase: {p}", 2000))
        self.grid.sigWindowChanged.connect(self._sync_window_widgets)

        self._build_docks()
        self._build_status()
        self._build_actions()
        self._build_menus_and_toolbar()
        self.ready_timer = QTimer(self)
        self.ready_timer.setInterval(120)
        self.ready_timer.timeout.connect(self._refresh_ready)
        self.cine_timer = QTimer(self)
        self.cine_timer.setInterval(100)
        self.cine_timer.timeout.connect(self._cine_step)
        self._update_actions()
        gc_pauses.freeze()  # Qt, pyqtgraph and the widgets live as long as the window

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self.preload_task is None:
            QTimer.singleShot(300, self._preload)

    def _preload(self) -> None:
        """Import the exam loader (pydicom & co., ~0.5-1 s) in the background once the window shows,
        so opening the first exam does not wait for it."""
        if self.preload_task is not None:
            return

        def work(progress, cancelled):
            import liverview.io.loader  # noqa: F401

            gc_pauses.freeze()
            return True

        self.preload_task = self.runner.start(Task(work, "loading the DICOM reader", user_work=False))

    # ---- view -----------------------------------------------------------------------------------
    def set_layout(self, mode: str) -> None:
        self.grid.set_layout(mode)
        self.layout_actions[mode].setChecked(True)
        if self.layout_combo.currentText() != mode:
            self.layout_combo.setCurrentText(mode)

    def set_preset(self, name: str) -> None:
        self.grid.set_preset(name)

    def _link_windows(self, on: bool) -> None:
        self.grid.link_windows = on
        self.statusBar().showMessage("windows linked across phases" if on else
                                     "windows per phase: presets and right-drag change the active phase only", 4000)

    def _sync_window_widgets(self) -> None:
        name = self.grid.preset if self.grid.preset in PRESETS else "custom"
        if self.preset_combo.currentText() != name:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentText(name)
            self.preset_combo.blockSignals(False)

    def _next_phase(self) -> None:
        loaded = [p for p in PHASES if self.grid.views[p].volume is not None] or list(PHASES)
        i = loaded.index(self.grid.active) if self.grid.active in loaded else -1
        self.grid.set_active(loaded[(i + 1) % len(loaded)])

    def _cam_stage(self, stage: str) -> None:
        self.cam.set_stage(stage)
        self.grid.refresh()

    def _cam_opacity(self, opacity: float) -> None:
        self.cam.set_opacity(opacity)
        self.grid.refresh()

    def _cam_cmap(self, name: str) -> None:
        self.cam.set_cmap(name)
        self.grid.refresh()

    def toggle_cine(self) -> None:
        if self.cine_timer.isActive():
            self.stop_cine()
        elif self.case is not None:
            self.cine_timer.start()
            self.statusBar().showMessage("cine: press C to stop", 3000)

    def stop_cine(self) -> None:
        self.cine_timer.stop()

    def _cine_step(self) -> None:
        v = self.grid.views[self.grid.active]
        if v.volume is None or self.grid.position is None:
            self.stop_cine()
            return
        k = v.index_for(self.grid.position)
        self.grid.set_position(float(v.positions[(k + 1) % len(v.positions)]))

    def _refresh_ready(self) -> None:
        self.grid.refresh_ready()

    def _hover(self, info: dict | None) -> None:
        if info is None:
            self.readout.setText("")
            return
        x, y, z = info["lps"]
        value = f"{info['value']:.0f} {info['unit']}".strip() if info["value"] == info["value"] else "loading"
        self.readout.setText(
            f"{info['phase']}  slice {info['slice'] + 1}  col {info['col']} row {info['row']}   {value}   "
            f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm")

    # ---- progress, errors, help ----------------------------------------------------------------
    def _progress_start(self, owner: object, message: str) -> None:
        self._progress_owner = owner
        self.progress.setValue(0)
        self.progress.setFormat(message[:60] + " %p%")
        self.progress.show()
        self.cancel_button.show()
        self._progress_message = message
        self.statusBar().showMessage(message)

    def _progress_set(self, fraction: float, message: str) -> None:
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        if message:
            self.progress.setFormat(message[:60] + " %p%")

    def _progress_done(self) -> None:
        self._progress_owner = None
        self.progress.hide()
        self.cancel_button.hide()
        if self.statusBar().currentMessage() == getattr(self, "_progress_message", None):
            self.statusBar().clearMessage()  # only our own "working…" line, not a later message

    def cancel_work(self) -> None:
        if self.load_task is not None and self.load_task.running:
            self.load_task.cancel()
        self.runner.cancel_all()
        for job in list(self.jobs):
            self.engine.cancel(job)
        if self._pending_jobs:
            self._pending_jobs.clear()
            if self._progress_owner == "engine-wait":
                self._progress_done()
        self.stop_cine()

    def busy(self) -> list[str]:
        work = list(self.runner.busy())
        names = {"analyze": "analysis", "auto_pick": "auto-pick"}
        work += [names.get(k, k) for k in self.jobs.values()]
        work += [f"{names.get(k, k)} (waiting for the engine)" for k in self._pending_jobs]
        return work

    def add_problem(self, text: str) -> None:
        self.problems.addItem(text)

    def problem_lines(self) -> list[str]:
        return [self.problems.item(i).text() for i in range(self.problems.count())]

    def show_error(self, message: str) -> None:
        """Tell the user (message box, problems panel, log); never blocks a worker."""
        log.error("%s", message)
        self.last_error = message
        self.add_problem(message)
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, "liverview", message, QMessageBox.StandardButton.Ok, self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def show_keyboard_map(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Keyboard map")
        lay = QVBoxLayout(dialog)
        text = QTextBrowser()
        text.setHtml(keyboard.html())
        lay.addWidget(text)
        dialog.resize(640, 720)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        self.keyboard_dialog = dialog

    def show_about(self) -> None:
        from liverview import __version__

        QMessageBox.about(self, "About liverview",
                          f"liverview {__version__}\nFour-phase liver CT workstation.\n{RESEARCH_NOTICE}.")

    def _update_actions(self) -> None:
        have = self.case is not None
        a = self.actions
        a["undo"].setEnabled(have and self.case.can_undo)
        a["redo"].setEnabled(have and self.case.can_redo)
        for key in ("pick", "pick_all", "delete_box", "copy_box", "accept_box", "accept_all", "draw_box"):
            a[key].setEnabled(have)
        engine_ok = self.engine.state != "no-bundle"
        a["analyze"].setEnabled(have and engine_ok and "analyze" not in self.jobs.values())
        a["auto_pick"].setEnabled(have and engine_ok and "auto_pick" not in self.jobs.values())
        self.analyze_button.setEnabled(a["analyze"].isEnabled())
        self.picks.auto_button.setEnabled(a["auto_pick"].isEnabled())
        self.picks.pick_button.setEnabled(have)

    # ---- closing --------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:
        work = [] if self.shut_down else self.busy()
        if work:
            answer = QMessageBox.question(
                self, "Work is running",
                f"Still running: {', '.join(work)}.\nStop it and quit? Your picks and boxes are saved.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No)
            if answer != QMessageBox.StandardButton.Yes:
                event.ignore()
                return
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop every worker, save the case, stop the engine process (safe to call twice)."""
        self.cancel_work()
        self.ready_timer.stop()
        self.runner.wait(5000)
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        self.engine.stop()
        self.jobs.clear()  # their process is gone: nothing is running any more
        self._pending_jobs.clear()
        self.shut_down = True

