"""LocalEngine: EngineClient's signals and job API with the Engine in this process, on one worker thread (CLI, tests)."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import traceback
from typing import Any

from psygnal import Signal

from liverview.engine.compat import Allowances
from liverview.engine.errors import AnalysisCancelled, BundleError, EngineError, error_from_reply, error_name, one_line
from liverview.engine.service import analyze_payload, auto_pick_payload, bundle_card

log = logging.getLogger(__name__)


class LocalEngine:
    """The engine in this process: the same signals and payloads as EngineClient, no shared memory.

    Jobs run one at a time on a worker thread and their signals are emitted from it; start()
    loads the bundle in the caller's thread (state "ready", or "no-bundle" with bundle_error).
    """

    state_changed = Signal(str)
    bundle_changed = Signal(object)
    study_ready = Signal(object)
    job_progress = Signal(int, float, str)
    job_done = Signal(int, object)
    job_failed = Signal(int, object)
    job_cancelled = Signal(int)

    def __init__(self, bundle_dir: str | None = None, engine=None) -> None:
        self.bundle_dir = bundle_dir
        self.engine = engine
        self.state = "stopped"
        self.card: dict[str, Any] | None = None
        self.bundle_error = ""
        self.study = None
        self.study_ready_token: object = None
        self.jobs: dict[int, str] = {}
        self._cancelled: set[int] = set()
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()
        self._inbox: queue.Queue = queue.Queue()
        self._worker: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def busy(self) -> bool:
        return bool(self.jobs)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def start(self) -> None:
        """Load the bundle (unless an Engine was given) and start the worker thread."""
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="local-engine", daemon=True)
            self._worker.start()
        if self.engine is None:
            self._set_state("loading")
            self._load(self.bundle_dir)
        elif self.card is None or self.state != "ready":  # a given Engine, or a restart after stop()
            self.card = bundle_card(self.engine)
            self.bundle_changed.emit(self.card)  # before "ready", as the service client does
            self._set_state("ready")

    def _load(self, folder: str | None) -> None:
        from liverview.engine.analyze import Engine

        self.engine = None
        try:
            self.engine = Engine(folder)
        except Exception as exc:
            self.card = None
            self.bundle_error = one_line(exc)
            log.warning("model bundle not loaded: %s", self.bundle_error)
            self._set_state("no-bundle")
            self.bundle_changed.emit(None)
            return
        self.card = bundle_card(self.engine)
        self.bundle_error = ""
        self.bundle_changed.emit(self.card)
        self._set_state("ready")

    def set_bundle(self, folder: str | None) -> None:
        """Load another bundle now (in the caller's thread)."""
        self.bundle_dir = folder
        self.engine = None
        self.card = None
        self._set_state("loading")
        self._load(folder)

    def stop(self, timeout: float = 3.0) -> None:
        """Cancel what is queued or running and end the worker thread. Idempotent."""
        with self._lock:
            self._cancelled.update(self.jobs)
        worker, self._worker = self._worker, None
        if worker is not None:
            self._inbox.put(None)
            worker.join(timeout)
        self.study = None
        self._set_state("stopped")

    def send_study(self, token: object, study) -> None:
        """Use `study` (a reference: nothing is copied) for the following jobs."""
        self.study = study
        self.study_ready_token = token
        self.study_ready.emit(token)

    def release_study(self) -> None:
        self.study = None
        self.study_ready_token = None

    def analyze(self, case_dict: dict[str, Any], allow: Allowances | None = None, **flags: bool) -> int:
        """Analyse a case (Case.to_dict()) on the current study; returns the job number."""
        return self._job("analyze", (dict(case_dict), allow or Allowances(**flags)))

    def auto_pick(self) -> int:
        return self._job("auto_pick", ())

    def cancel(self, job: int) -> None:
        with self._lock:
            if job in self.jobs:
                self._cancelled.add(job)

    def _job(self, kind: str, args: tuple) -> int:
        if self._worker is None:
            self.start()
        with self._lock:
            job = next(self._numbers)
            self.jobs[job] = kind
        self._inbox.put((job, kind, self.study, args))
        return job

    def _work(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                break
            job, kind, study, args = item
            self._run(job, kind, study, args)
        with self._lock:
            left = list(self.jobs)
            self.jobs.clear()
        for job in left:
            self.job_cancelled.emit(job)

    def _run(self, job: int, kind: str, study, args: tuple) -> None:
        def progress(fraction: float, message: str) -> None:
            self.job_progress.emit(job, float(fraction), str(message))

        def cancel() -> bool:
            return job in self._cancelled

        try:
            if cancel():
                raise AnalysisCancelled("cancelled before it started")
            if self.engine is None:
                raise BundleError(self.bundle_error or "no model bundle is loaded")
            if kind == "analyze":
                payload = analyze_payload(self.engine, study, *args, progress=progress, cancel=cancel)
            else:
                payload = auto_pick_payload(self.engine, study, progress=progress, cancel=cancel)
        except Exception as exc:
            with self._lock:
                self.jobs.pop(job, None)
                cancelled = job in self._cancelled or isinstance(exc, AnalysisCancelled)
                self._cancelled.discard(job)
            if cancelled:
                self.job_cancelled.emit(job)
                return
            if not isinstance(exc, EngineError):
                log.error("engine job %s failed\n%s", job, traceback.format_exc())
                error = error_from_reply(error_name(exc), one_line(exc))
                error.__cause__ = exc
                exc = error
            self.job_failed.emit(job, exc)
            return
        with self._lock:
            self.jobs.pop(job, None)
            self._cancelled.discard(job)
        self.job_done.emit(job, payload)
