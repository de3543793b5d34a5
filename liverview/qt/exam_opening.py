"""Opening exams in the main window: dialogs, recent list, drag and drop, the demo, loading in a worker,
restoring the case file, the phases dialog."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog

from liverview import RESEARCH_NOTICE
from liverview.qt import gc_pauses
from liverview.qt.cam_overlay import CamSource
from liverview.qt.case_saver import CaseSaver
from liverview.qt.paths import case_file
from liverview.qt.phase_dialog import PhaseDialog, rows_from_candidates
from liverview.qt.settings import add_recent_exam, clear_recent_exams, recent_exams
from liverview.qt.workers import Task
from liverview.study.case import Case, Study
from liverview.study.persist import CaseFileError, load_case
from liverview.study.phases import PHASES


class _Relay(QObject):
    """Carries the early Study from the loader thread to the GUI thread."""

    study = Signal(int, object)


def case_key(study: Study) -> str:
    """What names a study's case file: its StudyInstanceUID, else a hash of its path (exports)."""
    if study.study_uid:
        return study.study_uid
    return "path-" + hashlib.sha1(os.path.abspath(study.path or "").encode()).hexdigest()[:16]


class ExamOpening:
    """Everything from a path (or a drop, or the demo) to a shown study with its case restored."""

    def open_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an exam folder")
        if folder:
            self.open_path(folder)

    def open_file_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open a DICOMDIR or zip", "", "Exams (DICOMDIR *.zip *.dcm);;All files (*)")
        if path:
            self.open_path(path)

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

    def open_demo(self) -> None:
        from liverview.qt.demo import ensure_demo_exam

        task = Task(lambda progress, cancelled: ensure_demo_exam(progress, cancelled), "generating the demo exam")
        task.signals.progress.connect(lambda f, m: self._progress_owner == task and self._progress_set(f, m))
        task.signals.done.connect(lambda path: self.open_path(str(path)))
        task.signals.failed.connect(lambda msg: self.show_error(f"The demo exam could not be generated: {msg}"))
        task.signals.finished.connect(lambda: self._progress_owner == task and self._progress_done())
        self._progress_start(task, "generating the demo phantom exam (once)…")
        self.runner.start(task)

    def open_path(self, path: str, phases: dict[str, str] | None = None) -> None:
        """Load an exam (folder, DICOMDIR, zip) in a worker; the grid shows it as slices arrive."""
        if self.load_task is not None and self.load_task.running:
            self.load_task.cancel()
        self.close_exam()
        self.path = str(path)
        self.phase_override = phases
        self.load_token += 1
        token = self.load_token
        relay = self._relay

        def work(progress, cancelled):
            from liverview.io.loader import load_exam  # pydicom imports here, off the GUI thread

            gc_pauses.freeze()  # the freshly imported modules are long-lived
            with gc_pauses.paused():
                exam = load_exam(
                    path,
                    phases=phases,
                    progress=lambda done, total, msg: progress(done / max(total, 1), msg),
                    cancel=cancelled,
                    on_study=lambda study: relay.study.emit(token, study),
                )
                gc_pauses.freeze()  # the exam's headers live as long as it is open
                return exam

        task = Task(work, f"loading {Path(path).name}")
        task.signals.progress.connect(lambda f, m: self._progress_owner == task and self._progress_set(f, m))
        task.signals.done.connect(lambda exam: self._exam_loaded(token, exam))
        task.signals.failed.connect(lambda msg: self._load_failed(token, msg))
        task.signals.cancelled.connect(lambda: token == self.load_token and self.statusBar().showMessage("loading cancelled", 4000))
        task.signals.finished.connect(lambda: self._load_finished(token, task))
        self.load_task = task
        self.loading = True
        self._progress_start(task, f"opening {path}")
        self.ready_timer.start()
        self.runner.start(task)
        self._update_actions()

    def _load_finished(self, token: int, task: Task) -> None:
        if self._progress_owner == task:
            self._progress_done()
        if token == self.load_token:
            self.loading = False
            self.ready_timer.stop()
            self._refresh_ready()
        self._update_actions()

    def _load_failed(self, token: int, message: str) -> None:
        if token != self.load_token:
            return
        self.show_error(f"Could not open the exam: {message}")

    def _study_arrived(self, token: int, study: Study) -> None:
        if token != self.load_token:
            return
        self._show_study(study)

    def _show_study(self, study: Study) -> None:
        """Show a study (slices may still be decoding) with its case file restored."""
        self.study = study
        self.lesion_extent = None
        path = case_file(case_key(study))
        case = None
        self.case_restored = False
        if path.exists():
            try:
                case = load_case(path, study)
                self.case_restored = True
            except CaseFileError as exc:
                bad = path.with_name(path.stem + f".unreadable-{int(time.time())}.json")
                path.rename(bad)
                self.add_problem(f"{exc} (kept as {bad.name}; starting a new case)")
        if case is None:
            case = Case(study)
        self.case = case
        self.case_path = path
        self.saver = CaseSaver(case, path, self)
        self.saver.sigFailed.connect(self.show_error)
        case.events.connect(self._case_event)
        self._new_cam_source()
        self.grid.set_case(case, {p: s.description for p, s in study.sources.items()})
        self.picks.set_case(case)
        self.findings.set_findings(case.findings)
        self.cam_panel.set_available(self.cam.stages())
        title = study.patient_id or Path(study.path or self.path or "").name
        self.setWindowTitle(f"liverview — {title} — {RESEARCH_NOTICE}")
        if self.case_restored:
            self.statusBar().showMessage(f"restored your picks and boxes from {path}", 6000)
        self._update_actions()
        self.sigStudyShown.emit()

    def _exam_loaded(self, token: int, exam) -> None:
        if token != self.load_token:
            return
        self.exam = exam
        if self.study is not exam.study:
            self._show_study(exam.study)
        for p in exam.problems:
            self.add_problem(p)
        if exam.case_seed is not None and not self.case_restored and not self.case.boxes and not any(self.case.picks.values()):
            exam.case_seed.apply(self.case)
        recent = self.path  # QSettings writes with an fsync, which can stall the GUI on a slow disk
        self.runner.start(Task(lambda progress, cancelled: add_recent_exam(recent), "remembering the exam",
                               user_work=False))
        self._refresh_ready()
        self.picks.refresh()
        if self._restore_phase_override(exam):
            return
        self._ensure_shared()
        n = len(exam.candidates or [])
        if n > len(PHASES):
            self.add_problem(f"{n} candidate series: choose the four phases in Exam > Phases (Ctrl+Shift+P)")
            self.show_phase_dialog()
        self.statusBar().showMessage(f"loaded {self.path}", 5000)
        self.sigExamLoaded.emit()

    def _restore_phase_override(self, exam) -> bool:
        """Reload with the phase assignment the user made before (saved in the case file)."""
        if self.phase_override is not None or not self.case_restored or self.case_path is None:
            return False
        try:
            saved = json.loads(self.case_path.read_text(encoding="utf-8")).get("study") or {}
        except (OSError, ValueError):
            return False
        phases = {p: s.get("series_uid") for p, s in (saved.get("phases") or {}).items() if s.get("series_uid")}
        if not any(s.get("overridden") for s in (saved.get("phases") or {}).values()):
            return False
        current = {p: s.series_uid for p, s in exam.study.sources.items()}
        if phases == current:
            return False
        self.open_path(self.path, phases)
        self.add_problem("phase assignment restored from your case file (you had reassigned phases)")
        return True

    def _share_with_engine(self, token: int, study: Study) -> None:
        engine = self.engine
        task = Task(lambda progress, cancelled: engine.share_study(study), "sending the exam to the engine", user_work=False)
        task.signals.done.connect(lambda shared: self._shared(token, shared))
        task.signals.failed.connect(lambda msg: self.show_error(f"Could not hand the exam to the engine: {msg}"))
        self.runner.start(task)

    def _shared(self, token: int, shared) -> None:
        if token != self.load_token:
            for shm in shared[0]:
                shm.close()
                shm.unlink()
            return
        self.engine.send_study(token, shared)

    def close_exam(self) -> None:
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        if self.case is not None:
            self.case.events.disconnect(self._case_event)
        self.case = None
        self.study = None
        self.exam = None
        self.problems.clear()
        self.cam = CamSource(None)
        self.grid.cam_lookup = self.cam.lookup
        self.grid.set_case(None)
        self.picks.set_case(None)
        self.findings.set_findings(None)
        self.stop_cine()

    def show_phase_dialog(self) -> PhaseDialog | None:
        if self.exam is None:
            self.statusBar().showMessage("the exam is still loading" if self.loading else "open an exam first", 4000)
            return None
        rows = rows_from_candidates(self.exam.candidates)
        current = {p: s.series_uid for p, s in self.exam.study.sources.items()}
        dialog = PhaseDialog(rows, current, self)
        dialog.accepted.connect(lambda: self._phases_chosen(dialog.assignment(), current))
        dialog.finished.connect(lambda _result: self.activateWindow())  # keys go back to the viewer
        dialog.open()
        self.phase_dialog = dialog
        return dialog

    def _phases_chosen(self, assignment: dict[str, str], current: dict[str, str]) -> None:
        if assignment != current and self.path:
            self.open_path(self.path, assignment)

