"""The viewer's side of the engine process: start it, share the exam, send jobs, turn replies into psygnal signals (no Qt, no torch)."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import weakref
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any, Callable

import numpy as np
from psygnal import Signal

from liverview.engine.compat import Allowances
from liverview.engine.errors import EngineDied, EngineError, error_from_reply
from liverview.engine.protocol import (
    Analyze,
    AutoPick,
    BundleFailed,
    BundleLoaded,
    Cancel,
    Fatal,
    JobCancelled,
    JobDone,
    JobFailed,
    LoadBundle,
    Progress,
    SetStudy,
    Started,
    Stop,
    StudyReady,
    study_meta,
    volume_spec,
)

log = logging.getLogger(__name__)

STATES = ("stopped", "starting", "loading", "ready", "no-bundle", "dead")


def _release_segments(shms: list[shared_memory.SharedMemory]) -> None:
    for shm in shms:
        try:
            shm.close()
        except BufferError:
            log.warning("shared memory %s still has views in the viewer", shm.name)
        try:
            shm.unlink()
        except FileNotFoundError:
            pass
    shms.clear()


class SharedStudy:
    """A study's volumes copied into shared memory segments this process owns, with what SetStudy needs.

    `release()` closes and unlinks the segments; it also runs when the object is collected
    and at interpreter exit, so no segment outlives the viewer.
    """

    def __init__(self, shms: list[shared_memory.SharedMemory], meta: dict[str, Any], specs: list[dict[str, Any]]) -> None:
        self.shms = shms
        self.meta = meta
        self.specs = specs
        self._finalizer = weakref.finalize(self, _release_segments, shms)

    @property
    def names(self) -> list[str]:
        return [shm.name for shm in self.shms]

    def arrays(self) -> dict[str, np.ndarray]:
        """Read-only views of the shared volumes by phase: the viewer can drop its own copies for them."""
        out = {}
        for shm, spec in zip(self.shms, self.specs):
            view = np.ndarray(tuple(spec["shape"]), dtype=np.dtype(spec["dtype"]), buffer=shm.buf)
            view.flags.writeable = False
            out[spec["phase"]] = view
        return out

    @property
    def released(self) -> bool:
        return not self._finalizer.alive

    def release(self) -> None:
        self._finalizer()


def _exit_description(code: int | None) -> str:
    if code is None:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class EngineClient:
    """One engine process per window: jobs are numbered, each ends in job_done, job_failed or job_cancelled.

    Every signal is emitted from the client's reader thread (or, for a job sent to a dead
    pipe, a short-lived thread of its own), never from the caller's: a GUI consumer must
    marshal them to its own thread (a queued Qt signal, call_soon_threadsafe, ...).

    States: "stopped", "starting" (importing torch), "loading" (bundle), "ready", "no-bundle"
    (see `bundle_error`), "dead" (the process ended; the next analyze, auto_pick or
    set_bundle restarts it and re-sends the bundle and the current study).
    """

    state_changed = Signal(str)
    bundle_changed = Signal(object)  # card dict, or None when loading failed (see bundle_error)
    study_ready = Signal(object)  # the token given to send_study
    job_progress = Signal(int, float, str)
    job_done = Signal(int, object)  # payload dict
    job_failed = Signal(int, object)  # an EngineError (EngineDied when the process ended)
    job_cancelled = Signal(int)

    def __init__(self, bundle_dir: str | None = None, threads: int = 0) -> None:
        self.bundle_dir = bundle_dir
        self.threads = threads
        self.state = "stopped"
        self.card: dict[str, Any] | None = None
        self.bundle_error = ""
        self.bundle_target = ""
        self.study_ready_token: object = None
        self.pid: int | None = None
        self.process = None  # subprocess.Popen, or multiprocessing.Process off POSIX
        self.jobs: dict[int, str] = {}
        self._lock = threading.RLock()
        self._requests: Connection | None = None
        self._reader: threading.Thread | None = None
        self._generation = 0  # which process a reader thread belongs to
        self._next_job = 1
        self._shared: SharedStudy | None = None
        self._study_token: object = None

    # ---- lifecycle ------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def busy(self) -> bool:
        return bool(self.jobs)

    def start(self) -> None:
        """Launch the engine process (no-op while one runs); it loads the bundle and gets the current study."""
        with self._lock:
            if self._alive():
                return
            self._close_pipes()
            self._generation += 1  # a reader still draining the old process stays silent
            orphans = list(self.jobs)
            self.jobs.clear()
            for job in orphans:
                self.job_failed.emit(
                    job, EngineDied("the engine process ended unexpectedly; it restarts on the next request")
                )
            self.card = None
            self.study_ready_token = None
            try:
                requests, replies = self._launch()
            except OSError as exc:
                self.bundle_error = f"the engine process could not start: {exc}"
                self._set_state("dead")
                return
            self._requests = requests
            self._reader = threading.Thread(
                target=self._read, args=(replies, self.process, self._generation), name="engine-replies", daemon=True
            )
            self._set_state("starting")
            self._reader.start()
            self._try_send(LoadBundle(self.bundle_dir))
            if self._shared is not None:
                self._try_send(SetStudy(self._study_token, self._shared.meta, self._shared.specs))

    def _launch(self) -> tuple[Connection, Connection]:
        """Start `python -m liverview.engine.service` with two pipes: (request writer, reply reader).

        A plain subprocess (not multiprocessing's spawn, which re-runs the parent's main
        script) so the engine starts the same way whatever launched the viewer.
        """
        if os.name != "posix":  # no fd passing: multiprocessing's spawn does the plumbing
            from liverview.engine.service import serve

            ctx = mp.get_context("spawn")
            req_r, req_w = ctx.Pipe(duplex=False)
            rep_r, rep_w = ctx.Pipe(duplex=False)
            self.process = ctx.Process(target=serve, args=(req_r, rep_w, self.threads), name="liverview-engine", daemon=True)
            self.process.start()
            req_r.close()
            rep_w.close()
            return req_w, rep_r
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        cmd = [sys.executable, "-m", "liverview.engine.service", str(req_r), str(rep_w), str(self.threads)]
        try:
            self.process = subprocess.Popen(cmd, pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL)
        except BaseException:
            os.close(req_w)
            os.close(rep_r)
            raise
        finally:
            os.close(req_r)
            os.close(rep_w)
        return Connection(req_w, readable=False), Connection(rep_r, writable=False)

    def _alive(self) -> bool:
        p = self.process
        if p is None:
            return False
        return p.is_alive() if isinstance(p, mp.process.BaseProcess) else p.poll() is None

    def _exit_code(self, proc, timeout: float = 2.0) -> int | None:
        if proc is None:
            return None
        if isinstance(proc, mp.process.BaseProcess):
            proc.join(timeout)
            return proc.exitcode
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def set_bundle(self, folder: str | None) -> None:
        """Load another bundle (None: the default); restarts a dead engine."""
        with self._lock:
            self.bundle_dir = folder
            self.card = None
            if not self._alive():
                self.start()
                return
            self._set_state("loading")
            if not self._try_send(LoadBundle(folder)):
                self.start()

    def stop(self, timeout: float = 3.0) -> None:
        """End the engine process and release the shared study; outstanding jobs end in job_cancelled. Idempotent."""
        with self._lock:
            self._generation += 1  # the reader's end-of-pipe that follows is expected now
            proc, self.process = self.process, None
            reader, self._reader = self._reader, None
            if proc is not None:
                self._try_send(Stop())
            self._set_state("stopped")
            jobs = list(self.jobs)
            self.jobs.clear()
        if proc is not None:
            if isinstance(proc, mp.process.BaseProcess):
                proc.join(timeout)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(2.0)
            else:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        with self._lock:
            self._close_pipes()
        if reader is not None and reader is not threading.current_thread():
            reader.join(timeout)
        self.release_study()
        for job in jobs:
            self.job_cancelled.emit(job)

    def _close_pipes(self) -> None:
        if self._requests is not None:
            try:
                self._requests.close()
            except OSError:
                pass
            self._requests = None

    # ---- the exam ---------------------------------------------------------------------------
    def share_study(self, study, progress: Callable[[float, str], None] | None = None) -> SharedStudy:
        """Copy the study's volumes into new shared memory (call from a worker thread: it copies every voxel)."""
        shms: list[shared_memory.SharedMemory] = []
        specs = []
        try:
            for phase, vol in study.volumes.items():
                shm = shared_memory.SharedMemory(create=True, size=max(1, vol.pixels.nbytes))
                shms.append(shm)
                view = np.ndarray(vol.pixels.shape, dtype=vol.pixels.dtype, buffer=shm.buf)
                for k in range(vol.pixels.shape[0]):  # slice by slice: no long hold of the interpreter
                    view[k] = vol.pixels[k]
                del view
                specs.append(volume_spec(phase, vol, shm.name))
                if progress is not None:
                    progress(len(shms) / len(study.volumes), "sending the exam to the engine")
        except BaseException:
            _release_segments(shms)
            raise
        return SharedStudy(shms, study_meta(study), specs)

    def send_study(self, token: object, shared: SharedStudy) -> None:
        """Make `shared` the engine's study (the previous one is released); study_ready(token) follows."""
        with self._lock:
            old, self._shared = self._shared, shared
            self._study_token = token
            self.study_ready_token = None
            if self._alive():
                self._try_send(SetStudy(token, shared.meta, shared.specs))
        if old is not None and old is not shared:
            old.release()

    def release_study(self) -> None:
        """Forget the current study: its segments are unlinked and the engine drops its views."""
        with self._lock:
            old, self._shared = self._shared, None
            self._study_token = None
            self.study_ready_token = None
            if old is not None and self._alive():
                self._try_send(SetStudy(None, {}, []))
        if old is not None:
            old.release()

    # ---- jobs -------------------------------------------------------------------------------
    def analyze(self, case_dict: dict[str, Any], allow: Allowances | None = None, **flags: bool) -> int:
        """Analyse a case (Case.to_dict()) on the current study; returns the job number."""
        data = dict(case_dict)
        data["findings"] = None  # the engine does not need the old findings; keeps the pipe light
        data["reads"] = []
        allow = allow or Allowances(**flags)
        return self._job("analyze", lambda job: Analyze(job, data, allow))

    def auto_pick(self) -> int:
        """Propose picks for the current study; returns the job number."""
        return self._job("auto_pick", AutoPick)

    def cancel(self, job: int) -> None:
        with self._lock:
            if job in self.jobs and self._alive():
                self._try_send(Cancel(job))

    def _job(self, kind: str, make: Callable[[int], Any]) -> int:
        with self._lock:
            if not self._alive():
                self.start()
            job = self._next_job
            self._next_job += 1
            self.jobs[job] = kind
            sent = self._try_send(make(job))
            generation = self._generation
        if not sent:
            # the reader may already have reported the end of this process: fail the job here
            threading.Thread(target=self._fail_if_pending, args=(job, generation), name="engine-job-failed", daemon=True).start()
        return job

    def _try_send(self, msg) -> bool:
        conn = self._requests
        if conn is None:
            return False
        try:
            conn.send(msg)
        except (OSError, ValueError, EOFError):
            return False
        return True

    def _fail_if_pending(self, job: int, generation: int) -> None:
        with self._lock:
            proc = self.process if generation == self._generation else None
        code = self._exit_code(proc, 1.0)
        self._fail_job(job, EngineDied(f"the engine process ended ({_exit_description(code)}); it restarts on the next request"))

    def _fail_job(self, job: int, error: EngineError) -> None:
        with self._lock:
            if self.jobs.pop(job, None) is None:
                return
        self.job_failed.emit(job, error)

    def _end_job(self, job: int) -> bool:
        with self._lock:
            return self.jobs.pop(job, None) is not None

    # ---- replies ------------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)

    def _read(self, conn: Connection, proc, generation: int) -> None:
        reason = ""
        try:
            while True:
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    break
                except Exception as exc:  # a reply that cannot be unpickled
                    reason = f"unreadable reply from the engine process: {exc}"
                    break
                if generation != self._generation:
                    return
                if isinstance(msg, Fatal):
                    reason = f"it could not start: {msg.message}"
                self._on_message(msg)
        finally:
            conn.close()
        if generation == self._generation:
            self._died(proc, generation, reason)

    def _died(self, proc, generation: int, reason: str) -> None:
        code = self._exit_code(proc)
        with self._lock:
            if generation != self._generation:
                return  # stopped or restarted meanwhile
            if proc is not None and code is None:  # it is alive but its pipe is not: end it
                proc.kill()
                code = self._exit_code(proc)
            self.process = None
            self._close_pipes()
            jobs = list(self.jobs)
            self.jobs.clear()
            self._set_state("dead")
        what = reason or _exit_description(code)
        log.error("engine process ended unexpectedly (%s)", what)
        for job in jobs:
            self.job_failed.emit(
                job, EngineDied(f"the engine process ended unexpectedly ({what}); it restarts on the next request")
            )

    def _on_message(self, msg) -> None:
        match msg:
            case Started(pid=pid):
                self.pid = pid
                with self._lock:
                    if self.state == "starting":
                        self._set_state("loading")
            case BundleLoaded(card=card):
                self.card = card
                self.bundle_error = ""
                self.bundle_target = ""
                self.bundle_changed.emit(card)  # before "ready": whoever sees ready can show the card
                self._set_state("ready")
            case BundleFailed(target=target, message=message, detail=detail):
                self.card = None
                self.bundle_target, self.bundle_error = target, message
                log.warning("model bundle not loaded: %s\n%s", message, detail)
                self._set_state("no-bundle")
                self.bundle_changed.emit(None)
            case StudyReady(token=token):
                if self._shared is not None and token == self._study_token:
                    self.study_ready_token = token
                    self.study_ready.emit(token)
            case Progress(job=job, fraction=fraction, message=message):
                if job in self.jobs:
                    self.job_progress.emit(job, fraction, message)
            case JobDone(job=job, payload=payload):
                if self._end_job(job):
                    self.job_done.emit(job, payload)
            case JobFailed(job=job, error=error, message=message, detail=detail):
                log.error("engine job %s failed: %s\n%s", job, message, detail)
                if self._end_job(job):
                    self.job_failed.emit(job, error_from_reply(error, message))
            case JobCancelled(job=job):
                if self._end_job(job):
                    self.job_cancelled.emit(job)
            case Fatal(message=message, detail=detail):
                log.error("engine process cannot start: %s\n%s", message, detail)
                self.bundle_error = f"the engine could not start: {message}"
            case _:
                log.error("engine process: unknown reply %r", msg)
