"""The GUI side of the engine process: start it in the background, send exams and jobs, turn replies into signals."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import subprocess
import sys
import threading
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal

from liverview.qt.engine_process import serve, volume_spec
from liverview.study.case import Case, Study

log = logging.getLogger(__name__)


class _ReplyReader(QThread):
    """Blocks on the reply pipe (off the GUI thread) and hands every message to the GUI as a signal."""

    message = Signal(object)

    def __init__(self, conn) -> None:
        super().__init__()
        self.conn = conn

    def run(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                self.message.emit(("died",))
                return
            except Exception as exc:  # a reply that cannot be unpickled
                self.message.emit(("died", f"unreadable reply from the engine process: {exc}"))
                return
            self.message.emit(msg)


class EngineClient(QObject):
    """One engine process per window. Jobs are numbered; each ends in result, error or cancelled.

    States: "stopped", "starting" (importing torch), "loading" (bundle), "ready",
    "no-bundle" (the bundle could not be loaded: see `bundle_error`), "dead".
    """

    sigState = Signal(str)
    sigBundle = Signal(object)  # card dict, or None when it failed (see bundle_error)
    sigProgress = Signal(int, float, str)
    sigResult = Signal(int, object)
    sigError = Signal(int, str)
    sigCancelled = Signal(int)
    sigStudyReady = Signal(object)  # token

    def __init__(self, bundle_dir: str | None = None, threads: int = 0, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bundle_dir = bundle_dir
        self.threads = threads
        self.state = "stopped"
        self.card: dict[str, Any] | None = None
        self.bundle_error = ""
        self.bundle_target = ""
        self.process = None  # subprocess.Popen, or multiprocessing.Process off POSIX
        self._requests = None
        self._reader: _ReplyReader | None = None
        self._next_job = 1
        self.jobs: dict[int, str] = {}
        self._shms: list[shared_memory.SharedMemory] = []
        self._study_token: object = None
        self.study_ready_token: object = None
        self._send_lock = threading.Lock()

    # ---- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._alive():
            return
        self._requests, reader = self._launch()
        self._reader = _ReplyReader(reader)
        self._reader.message.connect(self._on_message)
        self._reader.start()
        self._set_state("starting")
        self._send("bundle", self.bundle_dir)
        if self._study_token is not None and self._study_msg is not None:
            self._send(*self._study_msg)

    def _launch(self):
        """Start `python -m liverview.qt.engine_process` with two pipes; (request writer, reply reader).

        A plain subprocess (not multiprocessing's spawn, which re-runs the parent's main
        script) so the engine starts the same way whatever launched the viewer.
        """
        if os.name != "posix":  # no fd passing: multiprocessing's spawn does the plumbing
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
        cmd = [sys.executable, "-m", "liverview.qt.engine_process", str(req_r), str(rep_w), str(self.threads)]
        try:
            self.process = subprocess.Popen(cmd, pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL)
        finally:
            os.close(req_r)
            os.close(rep_w)
        return Connection(req_w, readable=False), Connection(rep_r, writable=False)

    def _alive(self) -> bool:
        p = self.process
        if p is None:
            return False
        return p.is_alive() if isinstance(p, mp.process.BaseProcess) else p.poll() is None

    def set_bundle(self, folder: str | None) -> None:
        self.bundle_dir = folder
        self.card = None
        if not self._alive():
            self.start()
        else:
            self._set_state("loading")
            self._send("bundle", folder)

    def stop(self, timeout: float = 3.0) -> None:
        self._set_state("stopped")  # the reader's "died" that follows is expected now
        proc = self.process
        if proc is not None:
            try:
                self._send("stop")
            except Exception:
                pass
            if isinstance(proc, mp.process.BaseProcess):
                proc.join(timeout)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(2.0)
            else:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.terminate()
                    try:
                        proc.wait(2.0)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
            self.process = None
        if self._requests is not None:
            self._requests.close()
            self._requests = None
        if self._reader is not None:
            self._reader.wait(3000)
            self._reader = None
        self._release_shms()

    def busy(self) -> bool:
        return bool(self.jobs)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    # ---- exam -----------------------------------------------------------------------------
    _study_msg: tuple | None = None

    def share_study(self, study: Study, progress=None) -> tuple:
        """Copy the volumes into shared memory (call from a worker thread); returns the message to send."""
        shms, specs = [], []
        for phase, vol in study.volumes.items():
            shm = shared_memory.SharedMemory(create=True, size=max(1, vol.pixels.nbytes))
            view = np.ndarray(vol.pixels.shape, dtype=vol.pixels.dtype, buffer=shm.buf)
            for k in range(vol.pixels.shape[0]):  # slice by slice: no long hold of the interpreter
                view[k] = vol.pixels[k]
            del view
            shms.append(shm)
            specs.append(volume_spec(phase, vol, shm.name))
            if progress is not None:
                progress(len(shms) / len(study.volumes), "sending the exam to the engine")
        meta = {
            "study_uid": study.study_uid,
            "patient_id": study.patient_id,
            "path": study.path,
            "sources": {p: dict(vars(s)) for p, s in study.sources.items()},
        }
        return shms, meta, specs

    def send_study(self, token: object, shared: tuple) -> None:
        """Hand a shared study (from share_study) to the engine process (GUI thread)."""
        shms, meta, specs = shared
        self._release_shms()
        self._shms = shms
        self._study_token = token
        meta = dict(meta, token=token)
        self._study_msg = ("study", meta, specs)
        self.study_ready_token = None
        if self._alive():
            self._send(*self._study_msg)

    def _release_shms(self) -> None:
        for shm in self._shms:
            try:
                shm.close()
                shm.unlink()
            except FileNotFoundError:
                pass
        self._shms = []

    # ---- jobs -----------------------------------------------------------------------------
    def analyze(self, case: Case) -> int:
        data = case.to_dict()
        data["findings"] = None  # the engine does not need the old findings; keeps the pipe light
        data["reads"] = []
        return self._job("analyze", data)

    def auto_pick(self) -> int:
        return self._job("auto_pick")

    def cancel(self, job: int) -> None:
        if job in self.jobs and self._alive():
            self._send("cancel", job)

    def _job(self, kind: str, *payload) -> int:
        if not self._alive():
            self.start()
        job = self._next_job
        self._next_job += 1
        self.jobs[job] = kind
        self._send(kind, job, *payload)
        return job

    def _send(self, *msg) -> None:
        with self._send_lock:
            self._requests.send(msg)

    # ---- replies --------------------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.sigState.emit(state)

    def _on_message(self, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            if self.state == "starting":
                self._set_state("loading")
        elif kind == "bundle_ok":
            self.card = msg[1]
            self.bundle_error = ""
            self._set_state("ready")
            self.sigBundle.emit(self.card)
        elif kind == "bundle_error":
            self.card = None
            self.bundle_target, self.bundle_error = msg[1], msg[2]
            log.warning("model bundle not loaded: %s\n%s", msg[2], msg[3])
            self._set_state("no-bundle")
            self.sigBundle.emit(None)
        elif kind == "study_ok":
            self.study_ready_token = msg[1]
            self.sigStudyReady.emit(msg[1])
        elif kind == "progress":
            self.sigProgress.emit(msg[1], msg[2], msg[3])
        elif kind == "result":
            self.jobs.pop(msg[1], None)
            self.sigResult.emit(msg[1], msg[2])
        elif kind == "error":
            self.jobs.pop(msg[1], None)
            log.error("engine job %s failed: %s\n%s", msg[1], msg[2], msg[3])
            self.sigError.emit(msg[1], msg[2])
        elif kind == "cancelled":
            self.jobs.pop(msg[1], None)
            self.sigCancelled.emit(msg[1])
        elif kind in ("failed", "fatal"):
            log.error("engine process: %s\n%s", msg[-2], msg[-1])
            if kind == "fatal":
                self.bundle_error = msg[1]
                self._set_state("dead")
                self._fail_jobs(f"the engine could not start: {msg[1]}")
        elif kind == "died":
            detail = msg[1] if len(msg) > 1 else "the engine process ended"
            if self.state != "stopped":
                log.error("engine process ended unexpectedly: %s", detail)
                self.process = None
                self._set_state("dead")
                self._fail_jobs(f"{detail}; it will be restarted on the next request")

    def _fail_jobs(self, message: str) -> None:
        for job in list(self.jobs):
            self.jobs.pop(job, None)
            self.sigError.emit(job, message)
