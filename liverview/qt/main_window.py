"""The main window: the four-phase grid, picks, analysis and problems docks, bound to a ReadingSession."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QDialog, QFileDialog, QMainWindow, QMessageBox, QTextBrowser, QVBoxLayout

from liverview import RESEARCH_NOTICE
from liverview.engine.client import EngineClient
from liverview.engine.errors import GuessedPhasesError, IntensityError, LiverDoubtful, MissingPhasesError
from liverview.qt import gc_pauses, keyboard, window_parts
from liverview.qt.cam_overlay import CamSource
from liverview.qt.paths import data_dir
from liverview.qt.phase_dialog import PhaseDialog, rows_from_candidates
from liverview.qt.phase_grid import PRESETS
from liverview.qt.settings import add_recent_exam, clear_recent_exams, recent_exams, settings, stored_bundle
from liverview.qt.workers import Task, TaskRunner
from liverview.session import ReadingSession
from liverview.study.case import MAX_PICKS, Study
from liverview.study.phases import PHASES

log = logging.getLogger(__name__)


# refusals the reader may lift by confirming: (error, the question asked, the Allowances field it sets),
# the viewer's way to liverview analyze's --allow-missing, --assume-windows, --accept-* flags
_OVERRIDES = (
    (MissingPhasesError, "Analyse with the phases there are? The result will say which are missing.", "allow_missing"),
    (IntensityError, "These images are 8-bit exports without their window. Analyse them as exported with the model "
                     "bundle's windows (the result will say so)?", "assume_windows"),
    (GuessedPhasesError, "Check the phases in Exam > Phases (Ctrl+Shift+P). Analyse with the guessed phases as they "
                         "are (the result will say they were guessed)?", "accept_guessed_phases"),
    (LiverDoubtful, "The picked slices may not show a liver. Analyse them all the same (the result will carry this "
                    "warning)?", "allow_doubtful"),
)


class QtPoster(QObject):
    """Runs calls posted from any thread on the GUI thread, always after the current event (queued)."""

    _call = Signal(object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._call.connect(self._run, Qt.ConnectionType.QueuedConnection)

    def post(self, fn, *args) -> None:
        self._call.emit(fn, args)

    @staticmethod
    def _run(fn, args) -> None:
        try:
            fn(*args)
        except Exception:  # a failing call must not stop the others
            log.exception("posted call %r failed", fn)


class MainWindow(QMainWindow):
    """The viewer: widgets bound to one ReadingSession (`self.session`), which holds the exam,
    the case, the jobs and the rules; this class turns keys and clicks into session calls and
    session events into what the widgets show."""

    sigStudyShown = Signal()  # the grid shows a new exam (its slices may still be decoding)
    sigExamLoaded = Signal()  # every slice decoded, problems listed
    sigEngineStudyReady = Signal()  # the engine process has the exam
    sigEngineState = Signal(str)
    sigAnalysisDone = Signal()
    sigAutoPickDone = Signal()
    sigJobFailed = Signal(str)
    sigJobCancelled = Signal(str)
    sigRecentSaved = Signal(str)  # the recent-exams list was written (from a worker)
    sigStale = Signal(bool)

    def __init__(self, bundle_dir: str | None = None, engine_threads: int = 0, engine: EngineClient | None = None) -> None:
        super().__init__()
        self.setWindowTitle(f"liverview — {RESEARCH_NOTICE}")
        self.resize(1500, 950)
        self.setAcceptDrops(True)
        self.runner = TaskRunner(self)
        self.poster = QtPoster(self)
        self.engine = engine or EngineClient(bundle_dir or stored_bundle(), engine_threads)
        self.session = ReadingSession(self.engine, case_dir=data_dir() / "cases", post=self.poster.post)
        self.user = self.session.user
        self.cam = CamSource(None)
        self.preload_task: Task | None = None
        self.phase_dialog: PhaseDialog | None = None
        self._progress_owner: str | None = None
        self._progress_message = ""
        self.shut_down = False

        from liverview.qt.phase_grid import PhaseGrid

        self.grid = PhaseGrid()
        self.grid.cam_lookup = self.cam.lookup
        self.setCentralWidget(self.grid)
        self.grid.sigHover.connect(self._hover)
        self.grid.sigBoxDrawn.connect(self._box_drawn)
        self.grid.sigBoxChanged.connect(self._box_changed)
        self.grid.sigBoxSelected.connect(self._box_selected)
        self.grid.sigMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.grid.sigActiveChanged.connect(self._active_changed)
        self.grid.sigWindowChanged.connect(self._sync_window_widgets)

        window_parts.build_docks(self)
        window_parts.build_status(self)
        window_parts.build_actions(self)
        window_parts.build_menus_and_toolbar(self)
        self.ready_timer = QTimer(self)
        self.ready_timer.setInterval(120)
        self.ready_timer.timeout.connect(self.grid.refresh_ready)
        self.cine_timer = QTimer(self)
        self.cine_timer.setInterval(100)
        self.cine_timer.timeout.connect(self._cine_step)
        self._bind_session()
        self._update_actions()
        gc_pauses.freeze()  # Qt, pyqtgraph and the widgets live as long as the window

    # ---- what the session holds, as the window's tests and tools read it ------------------------
    study = property(lambda self: self.session.study)
    case = property(lambda self: self.session.case)
    exam = property(lambda self: self.session.exam)
    path = property(lambda self: self.session.path)
    loading = property(lambda self: self.session.loading)
    case_path = property(lambda self: self.session.case_path)
    saver = property(lambda self: self.session.saver)
    last_error = property(lambda self: self.session.last_error)
    lesion_extent = property(lambda self: self.session.lesion_extent)
    case_restored = property(lambda self: self.session.case_restored)

    # ---- session events -> widgets --------------------------------------------------------------
    def _bind_session(self) -> None:
        s = self.session
        s.opening.connect(self._opening)
        s.study_shown.connect(self._study_shown)
        s.exam_loaded.connect(self._exam_loaded)
        s.closed.connect(self._closed)
        s.case_edited.connect(self._case_edited)
        s.findings_changed.connect(self._findings_changed)
        s.stale_changed.connect(self._stale_changed)
        s.job_changed.connect(lambda kind, state: self._update_actions())
        s.job_done.connect(self._job_done)
        s.job_failed.connect(self._job_failed)
        s.job_cancelled.connect(self._job_cancelled)
        s.progress.connect(self._progress)
        s.progress_done.connect(self._progress_done)
        s.problem.connect(lambda text: self.problems.addItem(text))
        s.status.connect(lambda m, ms: self.statusBar().showMessage(m, ms))
        s.error.connect(self._error_box)
        s.engine_state.connect(self._engine_state)
        s.bundle_changed.connect(self._engine_bundle)
        s.engine_study_ready.connect(self.sigEngineStudyReady.emit)
        s.phases_to_choose.connect(lambda candidates: self.show_phase_dialog())
        s.open_cancelled.connect(self._update_actions)
        s.open_failed.connect(lambda m: self._update_actions())
        view = s.view
        view.events.layout.connect(self._layout_changed)
        view.events.cam_stage.connect(lambda v: (self.cam.set_stage(v), self.grid.refresh()))
        view.events.cam_opacity.connect(lambda v: (self.cam.set_opacity(v), self.grid.refresh()))
        view.events.cam_cmap.connect(lambda v: (self.cam.set_cmap(v), self.grid.refresh()))
        view.events.cam_visible.connect(self.grid.set_cam_visible)
        view.events.active_phase.connect(lambda p: self.grid.active != p and self.grid.set_active(p))
        view.events.preset.connect(lambda name: self.grid.preset != name and self.grid.set_preset(name))
        view.events.link_windows.connect(self._link_changed)
        self.cam_panel.sigVisible.connect(lambda on: setattr(view, "cam_visible", bool(on)))
        self.cam_panel.sigOpacity.connect(lambda v: setattr(view, "cam_opacity", float(v)))
        self.cam_panel.sigStage.connect(lambda v: setattr(view, "cam_stage", str(v)))
        self.cam_panel.sigCmap.connect(lambda v: setattr(view, "cam_cmap", str(v)))
        view.cam_opacity = self.cam_panel.opacity.value() / 100.0
        view.cam_cmap = self.cam_panel.cmap.currentText()
        view.cam_stage = self.cam_panel.current_stage()

    def _opening(self, path: str) -> None:
        self.ready_timer.start()
        self._update_actions()

    def _study_shown(self, study: Study) -> None:
        case = self.session.case
        self._new_cam_source()
        self.grid.set_case(case, {p: src.description + (f"  (phase guessed, confidence {src.confidence:.2f}: "
                                                        "check Exam > Phases)" if src.guessed else "")
                                  for p, src in study.sources.items()})
        self.picks.set_case(case)
        self.findings.set_findings(case.findings)
        self._stale_changed(self.session.findings_stale)
        self.cam_panel.set_available(self.cam.stages())
        title = study.patient_id or Path(study.path or self.session.path or "").name
        self.setWindowTitle(f"liverview — {title} — {RESEARCH_NOTICE}")
        self._update_actions()
        self.sigStudyShown.emit()

    def _exam_loaded(self, exam) -> None:
        self.ready_timer.stop()
        self.grid.refresh_ready()
        self.picks.refresh()
        recent = self.session.path  # QSettings writes with an fsync, which can stall the GUI on a slow disk
        task = Task(lambda progress, cancelled: add_recent_exam(recent), "remembering the exam", user_work=False)
        task.signals.done.connect(lambda _items: self.sigRecentSaved.emit(recent))
        self.runner.start(task)
        self._update_actions()
        self.sigExamLoaded.emit()

    def _closed(self) -> None:
        self.ready_timer.stop()
        self.problems.clear()
        self.cam = CamSource(None)
        self.grid.cam_lookup = self.cam.lookup
        self.grid.set_case(None)
        self.picks.set_case(None)
        self.findings.set_findings(None)
        self.stop_cine()
        self._update_actions()

    def _case_edited(self, kind: str) -> None:
        case = self.session.case
        if case is None:
            return
        if kind in ("picks", "boxes", "restored"):
            if self.grid.selected_box and not any(b.id == self.grid.selected_box for b in case.boxes):
                self.grid.selected_box = None
            self.grid.refresh()
            self.picks.refresh()
        self._update_actions()

    def _findings_changed(self, findings) -> None:
        self._new_cam_source()
        self.findings.set_findings(findings)
        self.findings.set_stale(self.session.findings_stale)
        self.cam_panel.set_available(self.cam.stages())
        self.grid.refresh()
        gc_pauses.freeze()  # the findings stay while the exam is open

    def _stale_changed(self, stale: bool) -> None:
        self.findings.set_stale(stale)
        self.grid.cam_lookup = None if stale else self.cam.lookup
        if stale:
            self.cam_panel.status.setText("CAM hidden: the findings are out of date. Run the analysis again.")
        else:
            self.cam_panel.set_available(self.cam.stages())
        self.grid.refresh()
        self.sigStale.emit(bool(stale))

    def _new_cam_source(self) -> None:
        """CAMs of the case's findings, looked up by slice of each phase."""
        views = self.grid.views

        def slice_index(phase: str, position: float) -> int | None:
            view = views.get(phase)
            return view.index_for(position) if view is not None and view.volume is not None else None

        case = self.session.case
        view = self.session.view
        self.cam = CamSource(case.findings if case is not None else None, view.cam_stage, view.cam_cmap, slice_index,
                             view.cam_opacity)
        self.grid.cam_lookup = None if self.session.findings_stale else self.cam.lookup

    def _job_done(self, kind: str, payload) -> None:
        self._update_actions()
        if kind == "analyze":
            self.sigAnalysisDone.emit()
        else:
            case = self.session.case
            self.picks.set_case(case, self.session.lesion_extent)
            ps = case.picks
            first = next((ps[p][len(ps[p]) // 2] for p in (self.grid.active, *PHASES) if ps.get(p)), None)
            if first is not None:
                self.grid.set_position(first)
            self.sigAutoPickDone.emit()

    def _job_failed(self, kind: str, message: str, exc) -> None:
        self._update_actions()
        refused = kind == "analyze" and message.startswith("Analysis refused")
        if refused and not self.findings.findings:
            self.findings.empty.setText(f"Not analysed. {message}")  # where the result would be
        if refused:
            override = next(((question, allowance) for cls, question, allowance in _OVERRIDES if isinstance(exc, cls)), None)
            if override is None:
                self._error_box(message)
            else:
                question, allowance = override
                self._offer_override(message, question, **{allowance: True})
        self.sigJobFailed.emit(message)

    def _offer_override(self, message: str, question: str, **override: bool) -> None:
        """A refusal `liverview analyze` lifts with a flag: here the reader confirms instead, and the analysis runs."""
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, "liverview", f"{message}\n\n{question}",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setDefaultButton(QMessageBox.StandardButton.No)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda result: result == QMessageBox.StandardButton.Yes
                             and self.session.retry_analysis(**override))
        box.open()
        self.partial_dialog = box

    def _job_cancelled(self, kind: str) -> None:
        self._update_actions()
        self.sigJobCancelled.emit(kind)

    def _engine_state(self, state: str) -> None:
        engine = self.engine
        text = {
            "starting": "engine: starting (loading torch in the background)…",
            "loading": "engine: loading the model bundle…",
            "ready": "engine: ready",
            "no-bundle": f"engine: no model bundle — {engine.bundle_error}. "
                         "Choose a bundle folder in Analysis > Choose model bundle folder.",
            "dead": f"engine: stopped ({engine.bundle_error or 'process ended'}); it restarts on the next request",
            "stopped": "engine: stopped",
        }.get(state, f"engine: {state}")
        self.engine_label.setText(text)
        self._update_actions()
        self.sigEngineState.emit(state)

    def _engine_bundle(self, card) -> None:
        if card is not None:
            self.findings.set_bundle_card(card)
            case = self.session.case
            if case is not None and case.findings:
                self.findings.set_findings(case.findings)
                self.findings.set_stale(self.session.findings_stale)

    # ---- progress and messages ------------------------------------------------------------------
    def _progress(self, owner: str, fraction: float, message: str) -> None:
        if self._progress_owner != owner:
            self._progress_owner = owner
            self._progress_message = message
            self.progress.setValue(0)
            self.progress.show()
            self.cancel_button.show()
            self.statusBar().showMessage(message)
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        if message:
            self.progress.setFormat(message[:60] + " %p%")

    def _progress_done(self, owner: str) -> None:
        if self._progress_owner != owner:
            return
        self._progress_owner = None
        self.progress.hide()
        self.cancel_button.hide()
        if self.statusBar().currentMessage() == self._progress_message:
            self.statusBar().clearMessage()  # only our own "working…" line, not a later message

    def _error_box(self, message: str, details: list[str] | None = None) -> None:
        """Tell the user (message box, status bar); every reason behind it under Show Details; never blocks a worker."""
        self.statusBar().showMessage(message, 10000)
        box = QMessageBox(QMessageBox.Icon.Warning, "liverview", message, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setInformativeText(f"{len(details)} reason{'s' if len(details) != 1 else ''}: see Show Details.")
            box.setDetailedText("\n".join(details))
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.error_dialog = box

    def show_error(self, message: str) -> None:
        self.session.tell_error(message)

    def add_problem(self, text: str) -> None:
        self.session.add_problem(text)

    def problem_lines(self) -> list[str]:
        return [self.problems.item(i).text() for i in range(self.problems.count())]

    def _hover(self, info: dict | None) -> None:
        if info is None:
            self.readout.setText("")
            return
        x, y, z = info["lps"]
        value = f"{info['value']:.0f} {info['unit']}".strip() if info["value"] == info["value"] else "loading"
        self.readout.setText(
            f"{info['phase']}  slice {info['slice'] + 1}  col {info['col']} row {info['row']}   {value}   "
            f"LPS ({x:.1f}, {y:.1f}, {z:.1f}) mm")

    def _update_actions(self) -> None:
        s = self.session
        case = s.case
        have = case is not None
        a = self.actions
        a["undo"].setEnabled(have and case.can_undo)
        a["redo"].setEnabled(have and case.can_redo)
        for key in ("pick", "pick_all", "delete_box", "copy_box", "accept_box", "accept_all", "draw_box"):
            a[key].setEnabled(have)
        engine_ok = self.engine.state != "no-bundle"
        busy = {j.kind for j in s.pending} | set(s.jobs)
        a["analyze"].setEnabled(have and engine_ok and "analyze" not in busy)
        a["auto_pick"].setEnabled(have and engine_ok and "auto_pick" not in busy)
        self.analyze_button.setEnabled(a["analyze"].isEnabled())
        self.picks.auto_button.setEnabled(a["auto_pick"].isEnabled())
        self.picks.pick_button.setEnabled(have)

    # ---- opening ------------------------------------------------------------------------------
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
            import liverview.io.export  # noqa: F401 - what opening an exam imports
            import liverview.io.kinetics  # noqa: F401
            import liverview.io.loader  # noqa: F401

            gc_pauses.freeze()
            return True

        self.preload_task = self.runner.start(Task(work, "loading the DICOM reader", user_work=False))

    def open_path(self, path: str, phases: dict[str, str] | None = None) -> None:
        """Load an exam (folder, DICOMDIR, zip) in a worker; the grid shows it as slices arrive."""
        self.session.open(path, phases)

    def _show_study(self, study: Study) -> None:
        self.session.show_study(study)

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an exam folder")
        if folder:
            self.open_path(folder)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a DICOMDIR or zip", "", "Exams (DICOMDIR *.zip *.dcm);;All files (*)")
        if path:
            self.open_path(path)

    def open_demo(self) -> None:
        from liverview.qt.demo import ensure_demo_exam

        task = Task(lambda progress, cancelled: ensure_demo_exam(progress, cancelled), "generating the demo exam")
        task.signals.progress.connect(lambda f, m: self._progress("demo", f, m))
        task.signals.done.connect(lambda path: self.open_path(str(path)))
        task.signals.failed.connect(lambda msg: self.show_error(f"The demo exam could not be generated: {msg}"))
        task.signals.finished.connect(lambda: self._progress_done("demo"))
        self._progress("demo", 0.0, "generating the demo phantom exam (once)…")
        self.runner.start(task)

    def _fill_recent(self) -> None:
        self.recent_menu.clear()
        items = recent_exams()
        for path in items:
            act = self.recent_menu.addAction(path)
            act.triggered.connect(lambda _=False, p=path: self.open_path(p))
        if items:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear the list", clear_recent_exams)
        else:
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_path(paths[0])

    def show_phase_dialog(self) -> PhaseDialog | None:
        exam = self.session.exam
        if exam is None:
            self.statusBar().showMessage("the exam is still loading" if self.session.loading else "open an exam first", 4000)
            return None
        rows = rows_from_candidates(exam.candidates)
        current = {p: s.series_uid for p, s in exam.study.sources.items()}
        dialog = PhaseDialog(rows, current, self)
        dialog.accepted.connect(lambda: self.session.reassign_phases(dialog.assignment()))
        dialog.finished.connect(lambda _result: self.activateWindow())  # keys go back to the viewer
        dialog.open()
        self.phase_dialog = dialog
        return dialog

    # ---- the engine ---------------------------------------------------------------------------
    def start_engine(self) -> None:
        """Start the engine process (torch + bundle load in the background)."""
        self.session.start_engine()

    def choose_bundle_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a model bundle folder (with manifest.json)")
        if folder:
            self.set_bundle(folder)

    def set_bundle(self, folder: str) -> None:
        s = settings()
        s.setValue("engine/bundle", folder)
        s.sync()
        self.session.set_bundle(folder)

    def auto_pick(self) -> None:
        self.session.request_auto_pick()

    def run_analysis(self) -> None:
        self.session.request_analysis()

    def cancel_work(self) -> None:
        self.session.cancel()
        self.runner.cancel_all()
        self.stop_cine()

    def busy(self) -> list[str]:
        return list(self.runner.busy()) + self.session.busy()

    # ---- editing --------------------------------------------------------------------------------
    def _active_position(self) -> tuple[str, float] | None:
        v = self.grid.views[self.grid.active]
        if self.session.case is None or v.volume is None or v.position is None:
            return None
        return v.phase, v.position

    def toggle_pick(self) -> None:
        at = self._active_position()
        if at is not None:
            self.session.toggle_pick(*at)

    def pick_all(self) -> None:
        if self.session.case is None or self.grid.position is None:
            return
        positions = {}
        for p in PHASES:
            v = self.grid.views[p]
            if v.volume is not None:
                positions[p] = float(v.positions[v.index_for(self.grid.position)])
        self.session.pick_positions(positions)

    def _box_drawn(self, phase: str, position: float, rect: tuple) -> None:
        box = self.session.draw_box(phase, position, rect)
        if box is not None:
            self.grid.select_box(box.id)

    def _box_changed(self, box_id: str, rect: tuple) -> None:
        if self.session.move_box(box_id, rect) is not None:
            self.grid.select_box(box_id)

    def _box_selected(self, box_id: str) -> None:
        self.grid.select_box(box_id)
        box = self._selected()
        if box is not None and box.origin == "ai" and not box.accepted:
            score = f" (score {box.score:.2f})" if box.score is not None else ""
            self.statusBar().showMessage(f"AI box{score}: Enter accepts it, dragging makes it yours, Delete removes it", 6000)

    def _selected(self):
        case = self.session.case
        if case is None or not self.grid.selected_box:
            return None
        try:
            return case.box(self.grid.selected_box)
        except KeyError:
            return None

    def delete_box(self) -> None:
        box = self._selected()
        if box is None:
            self.statusBar().showMessage("click a box to select it first", 3000)
            return
        self.session.delete_box(box.id)
        self.grid.select_box(None)

    def copy_box(self) -> None:
        box = self._selected()
        if box is None:
            self.statusBar().showMessage("click a box to select it first", 3000)
            return
        self.session.copy_box(box.id)

    def accept_box(self) -> None:
        box = self._selected()
        if box is None or box.origin != "ai":
            self.statusBar().showMessage("select an AI box (dashed) to accept it", 3000)
            return
        self.session.accept_box(box.id)

    def accept_all(self) -> None:
        self.session.accept_all()

    def undo(self) -> None:
        self.session.undo()

    def redo(self) -> None:
        self.session.redo()

    def jump_to(self, phase: str, position: float) -> None:
        self.grid.set_active(phase)
        self.grid.set_position(position)

    # ---- view ------------------------------------------------------------------------------------
    def set_layout(self, mode: str) -> None:
        self.session.view.layout = mode
        self._layout_changed(mode)

    def _layout_changed(self, mode: str) -> None:
        if self.grid.layout_mode != mode:
            self.grid.set_layout(mode)
        self.layout_actions[mode].setChecked(True)
        if self.layout_combo.currentText() != mode:
            self.layout_combo.setCurrentText(mode)

    def set_preset(self, name: str) -> None:
        self.grid.set_preset(name)
        self.session.view.preset = name

    def _link_windows(self, on: bool) -> None:
        self.session.view.link_windows = bool(on)

    def _link_changed(self, on: bool) -> None:
        self.grid.link_windows = on
        self.statusBar().showMessage("windows linked across phases" if on else
                                     "windows per phase: presets and right-drag change the active phase only", 4000)

    def _active_changed(self, phase: str) -> None:
        self.session.view.active_phase = phase
        self.statusBar().showMessage(f"active phase: {phase}", 2000)

    def _sync_window_widgets(self) -> None:
        name = self.grid.preset if self.grid.preset in PRESETS else "custom"
        self.session.view.windows = {p: (v.win_level, v.win_width) for p, v in self.grid.views.items()}
        if self.preset_combo.currentText() != name:
            self.preset_combo.blockSignals(True)
            self.preset_combo.setCurrentText(name)
            self.preset_combo.blockSignals(False)

    def _next_phase(self) -> None:
        loaded = [p for p in PHASES if self.grid.views[p].volume is not None] or list(PHASES)
        i = loaded.index(self.grid.active) if self.grid.active in loaded else -1
        self.grid.set_active(loaded[(i + 1) % len(loaded)])

    def toggle_cine(self) -> None:
        if self.cine_timer.isActive():
            self.stop_cine()
        elif self.session.case is not None:
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

    # ---- help ------------------------------------------------------------------------------------
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

    # ---- closing ---------------------------------------------------------------------------------
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
        if self.shut_down:
            return
        self.cancel_work()
        self.ready_timer.stop()
        self.runner.wait(5000)
        self.session.shutdown()
        self.shut_down = True


def report_startup(window: MainWindow, launched: float, mode: str) -> None:
    """LIVERVIEW_REPORT_STARTUP=analyze: print when the engine is ready and when the first result shows, then quit."""
    from PySide6.QtWidgets import QApplication

    def since() -> str:
        return f"{time.perf_counter() - launched:.3f}"

    def ready(state: str) -> None:
        if state == "ready" and not getattr(window, "_reported_ready", False):
            window._reported_ready = True
            print(f"liverview-engine-ready {since()}", flush=True)

    def exam_ready() -> None:
        case = window.session.case
        if case is not None and all(len(case.picks.get(p, [])) == MAX_PICKS for p in case.study.phases):
            window.run_analysis()
        else:
            window.auto_pick()

    def done() -> None:
        print(f"liverview-first-result {since()}", flush=True)
        QTimer.singleShot(0, QApplication.quit)

    window.sigEngineState.connect(ready)
    window.sigEngineStudyReady.connect(exam_ready)
    window.sigAutoPickDone.connect(window.run_analysis)
    window.sigAnalysisDone.connect(done)
    window.sigJobFailed.connect(lambda m: (print(f"liverview-failed {m}", flush=True), QApplication.quit()))
