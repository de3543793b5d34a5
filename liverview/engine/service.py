"""The engine process: loads torch and the bundle, attaches the viewer's study, runs analysis and auto-pick jobs.

It runs apart from the viewer so importing torch and running the networks never holds the
GUI's interpreter lock. Requests and replies are the dataclasses of protocol.py over two
pipes; the study's volumes are read-only views on the viewer's shared memory. No Qt here,
and no torch until the process has started (`python -m liverview.engine.service`).
"""

from __future__ import annotations

import gc
import logging
import os
import queue
import sys
import threading
import traceback
from dataclasses import asdict
from multiprocessing import shared_memory
from typing import Any, Callable

import numpy as np

from liverview.engine.compat import Allowances
from liverview.engine.errors import AnalysisCancelled, AnalysisError, BundleError, EngineError, error_name, one_line
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
)

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


# ---- the jobs, shared with LocalEngine ----------------------------------------------------------
def analyze_payload(
    engine,
    study,
    case_dict: dict[str, Any],
    allow: Allowances | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> dict[str, Any]:
    """Analyse the case `case_dict` describes on `study`: {"findings": ..., "ai_boxes": [...]}."""
    from liverview.engine.detection import ai_boxes
    from liverview.study.case import Case

    if study is None:
        raise AnalysisError("no exam has been sent to the engine yet")
    case = Case.from_dict(case_dict, study=study)
    allow = allow or Allowances()
    findings = engine.analyze(case, progress=progress, cancel=cancel, assume_windows=allow.assume_windows,
                              **allow.rules())
    boxes = [asdict(b) for b in ai_boxes(case, findings.composites)]
    return {"findings": findings.to_dict(), "ai_boxes": boxes}


def auto_pick_payload(engine, study, progress: ProgressFn | None = None, cancel: CancelFn | None = None) -> dict[str, Any]:
    """Three slices per phase around the dominant lesion: {"picks": ..., "extent": [lo, hi], "reference": phase}."""
    if study is None:
        raise AnalysisError("no exam has been sent to the engine yet")
    if progress is not None:
        progress(0.0, "scanning the liver for the lesion")
    picks = engine.auto_pick(study, cancel=cancel, progress=progress)
    return {"picks": picks.picks, "extent": list(picks.extent), "reference": picks.reference}


def bundle_card(engine) -> dict[str, Any]:
    """What BundleLoaded carries: the bundle's description and how long it took to load."""
    card = engine.describe()
    card["load_seconds"] = round(engine.load_seconds, 3)
    return card


# ---- shared memory ----------------------------------------------------------------------------
def attach(name: str) -> shared_memory.SharedMemory:
    """Attach to the viewer's shared memory without adopting it.

    Before Python 3.13 attaching registers the segment with this process's resource tracker,
    which would unlink it when the engine ends while the viewer still owns it.
    """
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    shm = shared_memory.SharedMemory(name=name)
    try:
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 - see docstring
    except Exception:
        pass
    return shm


def study_from_specs(meta: dict[str, Any], specs: list[dict[str, Any]]):
    """(Study on read-only views of the named segments, the attached segments); (None, []) without specs."""
    from liverview.study.case import PhaseSource, Study
    from liverview.study.volume import Volume

    if not specs:
        return None, []
    shms: list[shared_memory.SharedMemory] = []
    volumes = {}
    try:
        for spec in specs:
            shm = attach(spec["shm"])
            shms.append(shm)
            pixels = np.ndarray(tuple(spec["shape"]), dtype=np.dtype(spec["dtype"]), buffer=shm.buf)
            pixels.flags.writeable = False
            volumes[spec["phase"]] = Volume(
                pixels=pixels,
                affine=np.asarray(spec["affine"], dtype=np.float64),
                intensity=spec["intensity"],
                window=tuple(spec["window"]) if spec["window"] else None,
                series_uid=spec["series_uid"],
                description=spec["description"],
            )
    except BaseException:
        volumes.clear()
        close_segments(shms)
        raise
    study = Study(
        volumes=volumes,
        sources={p: PhaseSource(**s) for p, s in meta.get("sources", {}).items()},
        study_uid=meta.get("study_uid", ""),
        patient_id=meta.get("patient_id", ""),
        path=meta.get("path", ""),
    )
    return study, shms


def close_segments(shms: list[shared_memory.SharedMemory]) -> None:
    """Unmap attached segments (the viewer owns and unlinks them)."""
    gc.collect()  # views from the last job may sit in reference cycles
    for shm in shms:
        try:
            shm.close()
        except BufferError:
            # a view is still alive somewhere; SharedMemory.__del__ unmaps it once that goes
            log.warning("shared memory %s still has views; unmapped when they go", shm.name)
    shms.clear()


# ---- the server -------------------------------------------------------------------------------
class Server:
    """One engine process's loop: requests from a reader thread to an inbox, jobs one at a time."""

    def __init__(self, requests, replies, threads: int = 0) -> None:
        self.requests = requests
        self.replies = replies
        self.threads = threads
        self.inbox: queue.Queue = queue.Queue()
        self.cancelled: set[int] = set()
        self.send_lock = threading.Lock()
        self.engine = None
        self.study = None
        self.study_error = ""
        self.shms: list[shared_memory.SharedMemory] = []

    def send(self, msg) -> None:
        with self.send_lock:
            self.replies.send(msg)

    def read_requests(self) -> None:
        while True:
            try:
                msg = self.requests.recv()
            except (EOFError, OSError):
                msg = Stop()  # the viewer has gone
            if isinstance(msg, Stop):
                # nothing here needs saving: leave at once, even in the middle of importing torch or a job
                os._exit(0)
            if isinstance(msg, Cancel):
                self.cancelled.add(msg.job)
            else:
                self.inbox.put(msg)

    def progress_for(self, job: int) -> ProgressFn:
        return lambda fraction, message: self.send(Progress(job, float(fraction), str(message)))

    def cancel_for(self, job: int) -> CancelFn:
        return lambda: job in self.cancelled

    def load_bundle(self, folder: str | None) -> None:
        from liverview.engine.analyze import Engine, default_bundle_dir

        target = folder or str(default_bundle_dir())
        self.engine = None
        gc.collect()  # the old bundle's networks go before the new ones load
        try:
            self.engine = Engine(folder)
        except Exception as exc:
            self.send(BundleFailed(target, one_line(exc), traceback.format_exc()))
            return
        self.send(BundleLoaded(bundle_card(self.engine)))

    def set_study(self, msg: SetStudy) -> None:
        self.study = None
        close_segments(self.shms)
        try:
            self.study, self.shms = study_from_specs(msg.meta, msg.specs)
        except Exception as exc:
            # no StudyReady: the viewer keeps waiting for this exam; its jobs say why
            self.study_error = f"the exam could not be attached to the engine: {one_line(exc)}"
            log.error("%s\n%s", self.study_error, traceback.format_exc())
            return
        self.study_error = ""
        self.send(StudyReady(msg.token))

    def run_job(self, msg: Analyze | AutoPick) -> None:
        job = msg.job
        try:
            if job in self.cancelled:
                raise AnalysisCancelled("cancelled before it started")
            if self.engine is None:
                raise BundleError("no model bundle is loaded")
            if self.study is None and self.study_error:
                raise AnalysisError(self.study_error)
            progress, cancel = self.progress_for(job), self.cancel_for(job)
            if isinstance(msg, Analyze):
                payload = analyze_payload(self.engine, self.study, msg.case, msg.allow, progress, cancel)
            else:
                payload = auto_pick_payload(self.engine, self.study, progress, cancel)
        except AnalysisCancelled:
            self.send(JobCancelled(job))
        except Exception as exc:
            if job in self.cancelled:
                self.send(JobCancelled(job))
            else:
                self.send(JobFailed(job, error_name(exc), one_line(exc), traceback.format_exc()))
        else:
            self.send(JobDone(job, payload))
        finally:
            self.cancelled.discard(job)

    def run(self) -> None:
        threading.Thread(target=self.read_requests, name="engine-requests", daemon=True).start()
        try:
            import torch

            if self.threads:
                torch.set_num_threads(self.threads)
            import liverview.engine.analyze  # noqa: F401 - the slow import, done once up front
        except Exception as exc:
            self.send(Fatal(one_line(exc), traceback.format_exc()))
            return
        self.send(Started(os.getpid()))
        while True:
            msg = self.inbox.get()
            match msg:
                case LoadBundle(folder=folder):
                    self.load_bundle(folder)
                case SetStudy():
                    self.set_study(msg)
                case Analyze() | AutoPick():
                    self.run_job(msg)
                case _:
                    log.error("engine process: unknown request %r", msg)


def serve(requests, replies, threads: int = 0) -> None:
    """Entry point of the engine process (also the multiprocessing target off POSIX)."""
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if hasattr(os, "nice"):
        try:
            os.nice(5)  # the radiologist's window comes first when the CPU is short
        except OSError:
            pass
    Server(requests, replies, threads).run()


def main(argv: list[str] | None = None) -> None:
    """`python -m liverview.engine.service REQUEST_FD REPLY_FD [THREADS]` (started by EngineClient)."""
    from multiprocessing.connection import Connection

    args = list(sys.argv[1:] if argv is None else argv)
    requests = Connection(int(args[0]), writable=False)
    replies = Connection(int(args[1]), readable=False)
    serve(requests, replies, int(args[2]) if len(args) > 2 else 0)


if __name__ == "__main__":
    main()
