"""ReadingSession: one reader's work on one exam at a time, with typed events, for the GUI and the command line."""

from __future__ import annotations

import dataclasses
import enum
import gc
import getpass
import logging
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from psygnal import Signal

from liverview.engine.compat import Allowances, check_case
from liverview.engine.errors import (
    AnalysisCancelled, AnalysisError, EngineError, GuessedPhasesError, one_line, IntensityError, LiverDoubtful, MissingPhasesError,
)
from liverview.session import box_edits
from liverview.session.case_files import restore_case, saved_study_block
from liverview.session.dispatch import CallQueue
from liverview.session.saver import CaseSaver
from liverview.session.view import ViewState
from liverview.study.case import MAX_PICKS, Box, Case, Study
from liverview.study.phases import PHASES

log = logging.getLogger(__name__)

JOB_LABELS = {"analyze": "analysis", "auto_pick": "auto-pick"}
# refusals a reader may lift by confirming (the CLI's --allow-missing, --assume-windows,
# --accept-doubtful-anatomy, --accept-guessed-phases); they come from the quick check or the engine
OVERRIDABLE = (MissingPhasesError, IntensityError, LiverDoubtful, GuessedPhasesError)


class JobState(str, enum.Enum):
    """Where an analysis or auto-pick stands; STALE: findings exist but the case changed since."""

    IDLE = "idle"
    WAITING = "waiting"  # queued until the engine and the exam are ready
    RUNNING = "running"
    DONE = "done"
    STALE = "stale"
    FAILED = "failed"


@dataclasses.dataclass
class _Job:
    kind: str
    allow: Allowances = Allowances()
    id: int | None = None  # the engine's job number once submitted


class ReadingSession:
    """Opening an exam (on a worker thread, with progress and cancel), its Case and save policy, the
    analysis and auto-pick jobs and their states, and the view state.

    Every rule about what may be analysed is applied here (through the engine's `check_case`)
    or in the engine itself, so the viewer and `liverview analyze` cannot disagree. All state
    changes happen on the session's thread: worker threads and the engine hand their results
    over through `post` (a CallQueue by default; the Qt layer posts onto the GUI thread).
    Events are psygnal signals; they fire on the session's thread.
    """

    opening = Signal(str)  # path
    study_shown = Signal(object)  # Study; its slices may still be decoding
    exam_loaded = Signal(object)  # ExamLoad: every slice decoded, problems listed
    open_failed = Signal(str)
    open_cancelled = Signal()
    closed = Signal()
    case_edited = Signal(str)  # picks, boxes, restored, findings, reads
    findings_changed = Signal(object)  # the findings dict, or None
    stale_changed = Signal(bool)
    job_changed = Signal(str, str)  # kind, JobState value
    job_done = Signal(str, object)  # kind, payload
    job_failed = Signal(str, str, object)  # kind, one-line message, the exception
    job_cancelled = Signal(str)
    progress = Signal(str, float, str)  # owner ("open", "engine-wait", "analyze", "auto_pick"), fraction, message
    progress_done = Signal(str)
    problem = Signal(str)
    status = Signal(str, int)  # message, milliseconds to show it
    error = Signal(str, object)  # tell the user now (a dialog in the GUI): the line, and every reason behind it
    engine_state = Signal(str)
    bundle_changed = Signal(object)  # the bundle card, or None
    engine_study_ready = Signal()
    phases_to_choose = Signal(object)  # the candidate series, when there are more than four
    saved = Signal(str)

    def __init__(self, engine=None, case_dir: str | os.PathLike | None = None, user: str | None = None,
                 post: Callable[..., None] | None = None, loader: Callable[..., Any] | None = None) -> None:
        self._queue = CallQueue() if post is None else None
        self.post = post or self._queue.post
        self.engine = engine
        self.case_dir = Path(case_dir) if case_dir is not None else None
        self.user = user or _user_name()
        self._loader = loader
        self.view = ViewState()

        self.path: str | None = None
        self.phase_override: dict[str, str] | None = None
        self.exam = None
        self.study: Study | None = None
        self.case: Case | None = None
        self.case_path: Path | None = None
        self.case_restored = False
        self.saver: CaseSaver | None = None
        self.loading = False
        self.load_token = 0
        self._load_cancel: threading.Event | None = None
        self.problems: list[str] = []
        self.last_error = ""
        self.failure_details: list[str] = []  # every reason behind the last failed open
        self._refused_allow = Allowances()
        self.lesion_extent: tuple[float, float] | None = None
        self.jobs: dict[str, _Job] = {}  # kind -> running job
        self.pending: list[_Job] = []
        self.states: dict[str, JobState] = {"analyze": JobState.IDLE, "auto_pick": JobState.IDLE}
        self._stale = False
        self._shared_token: int | None = None
        self.shut_down = False
        if engine is not None:
            self._connect_engine(engine)

    # ---- the session's own loop (without Qt) -------------------------------------------------
    def process_events(self, timeout: float = 0.0) -> int:
        if self._queue is None:
            raise RuntimeError("this session posts onto another loop; run that loop instead")
        return self._queue.process(timeout)

    def run_until(self, done: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Run the session's loop until `done()` holds (tests and the command line)."""
        if self._queue is None:
            raise RuntimeError("this session posts onto another loop; run that loop instead")
        return self._queue.run_until(done, timeout)

    # ---- messages ------------------------------------------------------------------------------
    def add_problem(self, text: str) -> None:
        self.problems.append(text)
        self.problem.emit(text)

    def tell_error(self, message: str, details: list[str] | tuple[str, ...] = ()) -> None:
        log.error("%s", message)
        self.last_error = message
        self.add_problem(message)
        self.error.emit(message, list(details))

    # ---- opening -------------------------------------------------------------------------------
    def open(self, path: str | os.PathLike, phases: dict[str, str] | None = None) -> None:
        """Load an exam (folder, DICOMDIR, zip, export) on a worker thread; events tell how it goes."""
        self.cancel_load()
        self.close()
        self.path = str(path)
        self.phase_override = phases
        self.load_token += 1
        token = self.load_token
        cancel = threading.Event()
        self._load_cancel = cancel
        self.loading = True
        self.opening.emit(self.path)
        self.progress.emit("open", 0.0, f"opening {self.path}")
        post = self.post
        loader = self._loader
        last = [0.0]

        def progress(done: int, total: int, message: str) -> None:
            # one update per 50 ms: the loader reports every slice, and each report repaints a progress bar
            now = time.monotonic()
            if done >= total or now - last[0] >= 0.05:
                last[0] = now
                post(self._load_progress, token, done / max(total, 1), message)

        def work() -> None:
            try:
                if loader is None:
                    from liverview.io.loader import load_exam  # pydicom imports here, off the session's thread
                else:
                    load_exam = loader
                exam = load_exam(
                    path, phases=phases,
                    progress=progress,
                    cancel=cancel,
                    on_study=lambda study: post(self._study_arrived, token, study),
                )
            except BaseException as exc:  # noqa: BLE001 - every outcome reaches the session
                if cancel.is_set() or type(exc).__name__ == "LoadCancelled":
                    post(self._load_cancelled, token)
                else:
                    log.error("opening %s failed:\n%s", path, traceback.format_exc())
                    post(self._load_failed, token, one_line(exc), list(getattr(exc, "details", None) or []))
                return
            if cancel.is_set():
                post(self._load_cancelled, token)
            else:
                post(self._exam_loaded, token, exam)

        threading.Thread(target=work, name="exam-loader", daemon=True).start()

    def cancel_load(self) -> None:
        if self._load_cancel is not None and self.loading:
            self._load_cancel.set()

    def _load_progress(self, token: int, fraction: float, message: str) -> None:
        if token == self.load_token and self.loading:
            self.progress.emit("open", fraction, message)

    def _load_ended(self) -> None:
        self.loading = False
        self._load_cancel = None
        self.progress_done.emit("open")

    def _load_cancelled(self, token: int) -> None:
        if token != self.load_token:
            return
        self._load_ended()
        self.close()
        self.status.emit("loading cancelled", 4000)
        self.open_cancelled.emit()

    def _load_failed(self, token: int, message: str, details: list[str] | None = None) -> None:
        if token != self.load_token:
            return
        self._load_ended()
        self.close()
        self.failure_details = list(details or [])
        self.tell_error(f"Could not open the exam: {message}", self.failure_details)
        self.open_failed.emit(message)

    def _study_arrived(self, token: int, study: Study) -> None:
        if token == self.load_token and self.study is None:
            self._show_study(study)

    def show_study(self, study: Study) -> None:
        """Show a study that is already in memory (tests, a study built by other code)."""
        self.close()
        self.load_token += 1
        self._show_study(study)

    def _show_study(self, study: Study) -> None:
        self.study = study
        self.lesion_extent = None
        case, self.case_path, notes = restore_case(self.case_dir, study)
        self.case_restored = bool(case is not None)
        for note in notes:
            self.add_problem(note)
        self.case = case if case is not None else Case(study)
        self._check_saved_findings()
        self._attach_case()
        self.study_shown.emit(study)
        if self.case_restored:
            self.status.emit(f"restored your picks and boxes from {self.case_path}", 6000)
        if self._stale:
            self.add_problem("the saved findings are out of date: the picks, boxes or phases changed since; "
                             "run the analysis again")

    def _check_saved_findings(self) -> None:
        """Saved findings the contract cannot read are dropped (said once); never shown half-read."""
        from liverview.findings.model import Findings

        if self.case.findings is None:
            return
        try:
            Findings.from_dict(self.case.findings)
        except Exception as exc:  # noqa: BLE001 - any malformed document: the reader's picks and boxes stay
            self.case.findings = None
            self.add_problem(f"the saved findings in {self.case_path} could not be read ({one_line(exc)}); "
                             "they were left out: run the analysis again")

    def use_case(self, case: Case) -> None:
        """Put another case on the open study (the command line's picks file, a fresh case for auto-pick)."""
        if self.study is None:
            raise ValueError("no exam is open")
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        if self.case is not None:
            self.case.events.disconnect(self._case_event)
        case.study = self.study
        self.case = case
        self._attach_case()
        self.case_edited.emit("restored")

    def _attach_case(self) -> None:
        """Save `self.case` after every edit, follow its events, and settle its analysis state."""
        if self.case_path is not None:
            self.saver = CaseSaver(self.case, self.case_path, self.post,
                                   on_failed=lambda m: self.post(self.tell_error, m),
                                   on_saved=lambda p: self.post(self.saved.emit, p))
        self.case.events.connect(self._case_event)
        self._stale = self._findings_stale()
        self._set_state("analyze", self._settled_analysis_state())

    def _exam_loaded(self, token: int, exam) -> None:
        if token != self.load_token:
            return
        self._load_ended()
        self.exam = exam
        if self.study is not exam.study:
            self.study = None
            self._show_study(exam.study)
        for p in exam.problems:
            self.add_problem(p)
        case = self.case
        if exam.case_seed is not None and not self.case_restored and not case.boxes and not any(case.picks.values()):
            exam.case_seed.apply(case)
        from liverview.io.export import changed_labelme_phases, labelme_change_message  # loaded by the load already

        changed = changed_labelme_phases(saved_study_block(self.case_path), exam.study) if (
            exam.case_seed is not None and self.case_restored) else []
        if changed:  # the images are the same (the case key says so) but the LabelMe files are not: theirs win
            before = exam.case_seed.replace_labelme_boxes(case, changed)
            self.add_problem(labelme_change_message(changed, before, exam.case_seed))
        if self._restore_phase_override():
            return
        self._share_with_engine()
        n = len(exam.candidates or [])
        if n > len(PHASES):
            self.add_problem(f"{n} candidate series: choose the four phases in Exam > Phases (Ctrl+Shift+P)")
            self.phases_to_choose.emit(exam.candidates)
        self.status.emit(f"loaded {self.path}", 5000)
        self.exam_loaded.emit(exam)

    def _restore_phase_override(self) -> bool:
        """Reload with the phase assignment the reader made before (kept in the case's study block)."""
        if self.phase_override is not None or not self.case_restored or self.case is None:
            return False
        phases_block = saved_study_block(self.case_path).get("phases") or {}
        if not isinstance(phases_block, dict):
            return False
        if not any(isinstance(s, dict) and s.get("overridden") for s in phases_block.values()):
            return False
        wanted = {p: s.get("series_uid") for p, s in phases_block.items() if isinstance(s, dict) and s.get("series_uid")}
        current = {p: s.series_uid for p, s in self.exam.study.sources.items()}
        if wanted == current:
            return False
        path = self.path
        self.open(path, wanted)
        self.add_problem("phase assignment restored from your case file (you had reassigned phases)")
        return True

    def reassign_phases(self, assignment: dict[str, str]) -> bool:
        """Reload the exam with another series for some phases; False when nothing changes."""
        if self.exam is None or self.path is None:
            return False
        current = {p: s.series_uid for p, s in self.exam.study.sources.items()}
        if assignment == current:
            return False
        self.open(self.path, assignment)
        return True

    def close(self) -> None:
        """Close the open exam: save, cancel its jobs, free its volumes and shared memory."""
        had = self.study is not None or self.case is not None
        for kind in list(self.jobs):
            job = self.jobs.pop(kind)
            if job.id is not None and self.engine is not None:
                self.engine.cancel(job.id)
        if self.pending:
            self.pending.clear()
            self.progress_done.emit("engine-wait")
        if self.saver is not None:
            self.saver.close()
            self.saver = None
        if self.case is not None:
            self.case.events.disconnect(self._case_event)
        self.case = None
        self.study = None
        self.exam = None
        self.case_path = None
        self.case_restored = False
        self.lesion_extent = None
        self.problems = []
        self.last_error = ""
        self._stale = False
        self._shared_token = None
        for kind in self.states:
            self.states[kind] = JobState.IDLE
        if had:
            self.closed.emit()  # the views let go of the study first
            gc.collect()  # volumes sit in reference cycles with their views: free them now
        if self.engine is not None and hasattr(self.engine, "release_study"):
            self.engine.release_study()  # after the views: the viewer may read the shared copy

    # ---- the engine ------------------------------------------------------------------------
    def _connect_engine(self, engine) -> None:
        post = self.post
        engine.state_changed.connect(lambda s: post(self._engine_state, s))
        engine.bundle_changed.connect(lambda card: post(self._engine_bundle, card))
        engine.study_ready.connect(lambda token: post(self._engine_study_ready, token))
        engine.job_progress.connect(lambda job, f, m: post(self._job_progress, job, f, m))
        engine.job_done.connect(lambda job, payload: post(self._job_done, job, payload))
        engine.job_failed.connect(lambda job, exc: post(self._job_failed, job, exc))
        engine.job_cancelled.connect(lambda job: post(self._job_cancelled, job))
        if engine.state != "stopped":  # started before the session (the viewer starts it first thing)
            post(self._engine_state, engine.state)
            if engine.card is not None:
                post(self._engine_bundle, engine.card)

    def start_engine(self) -> None:
        """Start the engine (torch and the bundle load in the background) and hand it the exam."""
        if self.engine is None:
            return
        self.engine.start()
        self._share_with_engine()

    def set_bundle(self, folder: str) -> None:
        if self.engine is not None:
            self.engine.set_bundle(folder)

    def _engine_state(self, state: str) -> None:
        if state == "ready":
            self._run_pending()
        if state == "no-bundle":
            self.add_problem(f"model bundle: {self.engine.bundle_error}")
            for job in self.pending:
                self._set_state(job.kind, JobState.FAILED)
            if self.pending:
                self.pending.clear()
                self.progress_done.emit("engine-wait")
        self.engine_state.emit(state)

    def _engine_bundle(self, card) -> None:
        self.bundle_changed.emit(card)
        if card is not None:
            self._run_pending()

    def _share_with_engine(self) -> None:
        """Hand the loaded exam to the engine (shared memory, copied on a worker thread)."""
        engine = self.engine
        if engine is None or self.exam is None or self._shared_token == self.load_token:
            return
        if getattr(engine, "state", "stopped") == "stopped":
            return
        token = self.load_token
        self._shared_token = token
        study = self.exam.study
        if not hasattr(engine, "share_study"):  # an in-process engine reads the study directly
            engine.send_study(token, study)
            return
        post = self.post

        def work() -> None:
            try:
                shared = engine.share_study(study)
            except Exception as exc:  # noqa: BLE001
                log.error("sharing the exam with the engine failed:\n%s", traceback.format_exc())
                post(self.tell_error, f"Could not hand the exam to the engine: {one_line(exc)}")
                return
            post(self._shared, token, shared)

        threading.Thread(target=work, name="share-exam", daemon=True).start()

    def _shared(self, token: int, shared) -> None:
        if token != self.load_token or self.shut_down or self.exam is None:
            shared.release()
            return
        self._adopt(shared)
        self.engine.send_study(token, shared)

    def _adopt(self, shared) -> None:
        """Read the volumes from the shared copy the engine reads too, and let the private copy go:
        one copy of the exam in memory, not two."""
        for phase, view in shared.arrays().items():
            vol = self.exam.study.volumes.get(phase)
            if vol is not None and vol.pixels.shape == view.shape and vol.pixels.dtype == view.dtype:
                vol.pixels = view

    def _engine_study_ready(self, token) -> None:
        if token == self.load_token:
            self.engine_study_ready.emit()
            self._run_pending()

    def engine_can_run(self) -> bool:
        e = self.engine
        return e is not None and e.ready and e.study_ready_token == self.load_token and self.case is not None

    # ---- jobs -----------------------------------------------------------------------------------
    def request_auto_pick(self) -> bool:
        return self._request(_Job("auto_pick"))

    def request_analysis(self, allow: Allowances | None = None, **flags: bool) -> bool:
        """Queue an analysis of the case as it is, with what the reader allows (Allowances, or its
        fields as keywords); refused (job_failed, and False) when the rules say no."""
        return self._request(_Job("analyze", allow or Allowances(**flags)))

    def analysis_refusal(self, allow: Allowances | None = None, **flags: bool) -> EngineError | None:
        """Why the case may not be analysed as it is (the engine's own rules), or None. The checks that
        read the picked slices' pixels run in the engine, off this thread; it refuses the same way."""
        if self.case is None:
            return None
        allow = allow or Allowances(**flags)
        try:
            check_case(self.case, pixels=False, **allow.rules())
        except EngineError as exc:
            return exc
        return None

    def _request(self, job: _Job) -> bool:
        label = JOB_LABELS[job.kind]
        if self.case is None:
            self.status.emit("open an exam first", 4000)
            return False
        if self.engine is None:
            self.tell_error(f"No model engine: {label} is not available in this session.")
            return False
        if self.engine.state == "no-bundle":
            self.tell_error(f"No model bundle is loaded ({self.engine.bundle_error}). "
                            "Choose one in Analysis > Choose model bundle folder.")
            return False
        if job.kind in self.jobs or any(p.kind == job.kind for p in self.pending):
            self.status.emit(f"{label} is already running", 3000)
            return False
        if job.kind == "analyze":
            refusal = self.analysis_refusal(job.allow)
            if refusal is not None:
                self._refuse(refusal, job)
                return False
        if not self.engine_can_run():
            self.pending.append(job)
            self._set_state(job.kind, JobState.WAITING)
            if self.engine.state in ("stopped", "dead"):
                self.engine.start()
            self._share_with_engine()
            self.progress.emit("engine-wait", 0.0, "waiting for the engine and the exam…")
            return True
        self._submit(job)
        return True

    def retry_analysis(self, **override: bool) -> bool:
        """Ask again for the analysis that was last refused, with what the reader now allows
        (allow_missing=True, assume_windows=True): the viewer's way to the CLI's flags."""
        return self.request_analysis(dataclasses.replace(self._refused_allow, **override))

    def _refuse(self, refusal: EngineError, job: _Job | None = None) -> None:
        """An analysis the rules do not allow: said once, in the words `liverview analyze` uses."""
        if job is not None:
            self._refused_allow = job.allow
        message = f"Analysis refused: {one_line(refusal)}"
        log.warning("%s", message)
        self.last_error = message
        self.add_problem(message)
        self._set_state("analyze", JobState.FAILED if self.case.findings is None else self._settled_analysis_state())
        self.job_failed.emit("analyze", message, refusal)

    def _run_pending(self) -> None:
        if not self.engine_can_run() or not self.pending:
            return
        pending, self.pending = self.pending, []
        self.progress_done.emit("engine-wait")
        for job in pending:
            self._submit(job)

    def _submit(self, job: _Job) -> None:
        if job.kind == "analyze":
            refusal = self.analysis_refusal(job.allow)  # the case may have changed while it waited
            if refusal is not None:
                self._refuse(refusal, job)
                return
            warnings = self.case.pick_warnings()
            if warnings:
                self.status.emit("analysing with: " + "; ".join(warnings), 6000)
            data = self.case.to_dict()
            data["findings"] = None  # the engine does not need the old findings; keeps the pipe light
            data["reads"] = []
            job.id = self.engine.analyze(data, job.allow)
        else:
            job.id = self.engine.auto_pick()
        self.jobs[job.kind] = job
        self._set_state(job.kind, JobState.RUNNING)
        self.progress.emit(job.kind, 0.0, f"{JOB_LABELS[job.kind]}: starting")

    def _job_of(self, job_id: int) -> _Job | None:
        for kind, job in self.jobs.items():
            if job.id == job_id:
                return self.jobs.pop(kind)
        return None

    def _job_progress(self, job_id: int, fraction: float, message: str) -> None:
        for job in self.jobs.values():
            if job.id == job_id:
                self.progress.emit(job.kind, fraction, message)

    def _job_done(self, job_id: int, payload: dict) -> None:
        job = self._job_of(job_id)
        if job is None or self.case is None:
            return
        self.progress_done.emit(job.kind)
        if job.kind == "analyze":
            boxes = [Box(**b) for b in payload.get("ai_boxes", [])]
            self.case.replace_boxes("ai", boxes)
            self.case.set_findings(payload["findings"])
            exam = payload["findings"]["exam"]
            self.status.emit(f"analysis done: {exam['final_class']} (p malignant {exam['p_malignant']:.2f})", 8000)
        else:
            picks = {p: list(v)[:MAX_PICKS] for p, v in payload["picks"].items() if self.case.volume(p) is not None}
            self.case.set_all_picks(picks)
            self.lesion_extent = tuple(payload["extent"])
            lo, hi = self.lesion_extent
            self.status.emit(f"auto-pick: lesion found at {lo:.0f}…{hi:.0f} mm; three slices picked per phase", 8000)
        self._set_state(job.kind, self._settled_analysis_state() if job.kind == "analyze" else JobState.DONE)
        self.job_done.emit(job.kind, payload)

    def _job_failed(self, job_id: int, exc) -> None:
        job = self._job_of(job_id)
        if job is None:
            return
        self.progress_done.emit(job.kind)
        if isinstance(exc, AnalysisCancelled):
            self._job_cancelled_now(job)
            return
        if job.kind == "analyze" and isinstance(exc, AnalysisError):
            self._refuse(exc, job)  # the engine's rules on the pixels: a refusal, in the CLI's words
            return
        what = {"analyze": "Analysis", "auto_pick": "Auto-pick"}[job.kind]
        message = f"{what} failed: {one_line(exc)}"
        self._set_state(job.kind, JobState.FAILED)
        self.tell_error(message)
        self.job_failed.emit(job.kind, message, exc)

    def _job_cancelled(self, job_id: int) -> None:
        job = self._job_of(job_id)
        if job is not None:
            self.progress_done.emit(job.kind)
            self._job_cancelled_now(job)

    def _job_cancelled_now(self, job: _Job) -> None:
        self._set_state(job.kind, self._settled_analysis_state() if job.kind == "analyze" else JobState.IDLE)
        self.status.emit("cancelled", 4000)
        self.job_cancelled.emit(job.kind)

    def cancel(self) -> None:
        """Cancel what runs: the load, the jobs, the requests waiting for the engine."""
        self.cancel_load()
        for job in list(self.jobs.values()):
            if job.id is not None and self.engine is not None:
                self.engine.cancel(job.id)
        if self.pending:
            for job in self.pending:
                self._set_state(job.kind, self._settled_analysis_state() if job.kind == "analyze" else JobState.IDLE)
            self.pending.clear()
            self.progress_done.emit("engine-wait")

    def busy(self) -> list[str]:
        """What the user started that still runs (asked about before quitting)."""
        work = [f"loading {Path(self.path).name}"] if self.loading and self.path else []
        work += [JOB_LABELS[k] for k in self.jobs]
        work += [f"{JOB_LABELS[j.kind]} (waiting for the engine)" for j in self.pending]
        return work

    def _set_state(self, kind: str, state: JobState) -> None:
        if self.states.get(kind) != state:
            self.states[kind] = state
            self.job_changed.emit(kind, state.value)

    @property
    def analysis_state(self) -> JobState:
        return self.states["analyze"]

    # ---- findings and staleness -----------------------------------------------------------------
    def _findings_stale(self) -> bool:
        return bool(self.case is not None and self.case.findings is not None and self.case.findings_stale)

    @property
    def findings_stale(self) -> bool:
        return self._stale

    def _settled_analysis_state(self) -> JobState:
        if self.case is None or self.case.findings is None:
            return JobState.IDLE
        return JobState.STALE if self._stale else JobState.DONE

    def _case_event(self, kind: str, payload: dict) -> None:
        stale = self._findings_stale()
        if kind == "findings":
            self.findings_changed.emit(self.case.findings)
        self.case_edited.emit(kind)
        if stale != self._stale:
            self._stale = stale
            self.stale_changed.emit(stale)
        if "analyze" not in self.jobs and not any(j.kind == "analyze" for j in self.pending):
            self._set_state("analyze", self._settled_analysis_state())

    # ---- edits (each one undo step, saved by the CaseSaver) -------------------------------------
    def toggle_pick(self, phase: str, position: float) -> bool:
        """Pick the slice, or unpick it when it is picked; False when the phase already has three."""
        if self.case is None:
            return False
        if self.case.is_picked(phase, position):
            return self.case.remove_pick(phase, position)
        if not self.case.add_pick(phase, position):
            self.status.emit(f"phase {phase} already has {MAX_PICKS} picks: unpick one first", 5000)
            return False
        return True

    def pick_positions(self, positions: dict[str, float]) -> None:
        """Pick one slice in each of several phases (the slice each phase shows)."""
        if self.case is None:
            return
        for phase, pos in positions.items():
            if not self.case.is_picked(phase, pos) and not self.case.add_pick(phase, pos):
                self.status.emit(f"phase {phase} already has {MAX_PICKS} picks", 4000)

    def set_all_picks(self, picks: dict[str, list[float]]) -> None:
        if self.case is not None:
            self.case.set_all_picks(picks)

    def draw_box(self, phase: str, position: float, rect: tuple[float, float, float, float]) -> Box | None:
        if self.case is None:
            return None
        return self.case.add_box(Box(phase, position, *rect, origin="user", author=self.user))

    def move_box(self, box_id: str, rect: tuple[float, float, float, float]) -> Box | None:
        """Move or resize a box; a reader who moves an AI box stands behind it, so it becomes theirs."""
        if self.case is None:
            return None
        try:
            box = self.case.box(box_id)
        except KeyError:
            return None
        x0, y0, x1, y1 = rect
        if box.origin == "ai":
            return self.case.update_box(box_id, x0=x0, y0=y0, x1=x1, y1=y1, origin="user", accepted=True, author=self.user)
        return self.case.update_box(box_id, x0=x0, y0=y0, x1=x1, y1=y1)

    def delete_box(self, box_id: str) -> bool:
        if self.case is None:
            return False
        try:
            self.case.remove_box(box_id)
        except KeyError:
            return False
        return True

    def copy_box(self, box_id: str) -> list[Box]:
        """Copy a box to the matching slices of the other phases."""
        if self.case is None:
            return []
        new = box_edits.copy_to_other_phases(self.case, box_id, self.user)
        self.status.emit(
            f"copied the box to {', '.join(f'{b.phase} ({b.position:.1f} mm)' for b in new) or 'no other phase'}", 5000)
        return new

    def accept_box(self, box_id: str) -> bool:
        if self.case is None:
            return False
        try:
            box = self.case.box(box_id)
        except KeyError:
            return False
        if box.origin != "ai":
            self.status.emit("select an AI box (dashed) to accept it", 3000)
            return False
        self.case.update_box(box_id, accepted=True)
        return True

    def accept_all(self) -> int:
        if self.case is None:
            return 0
        n = box_edits.accept_all_ai(self.case)
        self.status.emit(f"accepted {n} AI boxes", 3000)
        return n

    def undo(self) -> bool:
        if self.case is None or not self.case.undo():
            self.status.emit("nothing to undo", 2000)
            return False
        return True

    def redo(self) -> bool:
        if self.case is None or not self.case.redo():
            self.status.emit("nothing to redo", 2000)
            return False
        return True

    # ---- ending ------------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every edit so far is on disk."""
        return self.saver.flush(timeout) if self.saver is not None else True

    def shutdown(self) -> None:
        """Cancel everything, save the case, stop the engine (safe to call twice)."""
        if self.shut_down:
            return
        self.cancel()
        self.close()
        if self.engine is not None:
            self.engine.stop()
        self.jobs.clear()
        self.pending.clear()
        self.shut_down = True


def _user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no login name (containers): a neutral author
        return "reader"
