"""The engine's own process: loads torch, ultralytics and the bundle, and runs analysis and auto-pick.

It lives in a separate process (multiprocessing "spawn") so importing torch and running the
networks never holds the GUI process's interpreter lock: the window stays responsive. This
module imports no Qt. Volumes arrive through shared memory, requests and replies through
pipes as plain Python data.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import traceback
from dataclasses import asdict
from multiprocessing import shared_memory
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


def volume_spec(phase: str, vol, shm_name: str) -> dict[str, Any]:
    """What the engine process needs to rebuild a Volume on a shared-memory buffer."""
    return {
        "phase": phase,
        "shm": shm_name,
        "shape": list(vol.pixels.shape),
        "dtype": str(vol.pixels.dtype),
        "affine": np.asarray(vol.affine).tolist(),
        "intensity": vol.intensity,
        "window": list(vol.window) if vol.window is not None else None,
        "series_uid": vol.series_uid,
        "description": vol.description,
    }


class _Server:
    def __init__(self, requests, replies, threads: int = 0) -> None:
        self.threads = threads
        self.requests = requests
        self.replies = replies
        self.inbox: queue.Queue = queue.Queue()
        self.cancelled: set[int] = set()
        self.lock = threading.Lock()
        self.engine = None
        self.study = None
        self.shms: list[shared_memory.SharedMemory] = []

    def send(self, *msg) -> None:
        with self.lock:
            self.replies.send(msg)

    def read_requests(self) -> None:
        while True:
            try:
                msg = self.requests.recv()
            except (EOFError, OSError):
                msg = ("stop",)  # the viewer has gone
            if msg[0] == "stop":
                # nothing here needs saving: leave at once, even in the middle of importing torch
                os._exit(0)
            if msg[0] == "cancel":
                self.cancelled.add(int(msg[1]))
            else:
                self.inbox.put(msg)

    # ---- requests -----------------------------------------------------------------------
    def load_bundle(self, folder: str | None) -> None:
        from liverview.engine.analyze import Engine, default_bundle_dir

        target = folder or str(default_bundle_dir())
        try:
            self.engine = Engine(folder)
        except Exception as exc:
            self.engine = None
            self.send("bundle_error", target, _one_line(exc), traceback.format_exc())
            return
        card = self.engine.describe()
        card["load_seconds"] = round(self.engine.load_seconds, 3)
        self.send("bundle_ok", card)

    def set_study(self, meta: dict[str, Any], specs: list[dict[str, Any]]) -> None:
        from liverview.study.case import PhaseSource, Study
        from liverview.study.volume import Volume

        for shm in self.shms:
            shm.close()
        self.shms = []
        volumes = {}
        for spec in specs:
            shm = _attach(spec["shm"])
            self.shms.append(shm)
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
        self.study = Study(
            volumes=volumes,
            sources={p: PhaseSource(**s) for p, s in meta.get("sources", {}).items()},
            study_uid=meta.get("study_uid", ""),
            patient_id=meta.get("patient_id", ""),
            path=meta.get("path", ""),
        )
        self.send("study_ok", meta.get("token"))

    def _case(self, case_dict: dict[str, Any]):
        from liverview.study.case import Case

        if self.study is None:
            raise RuntimeError("no exam has been sent to the engine process yet")
        return Case.from_dict(case_dict, study=self.study)

    def analyze(self, job: int, case_dict: dict[str, Any]) -> None:
        from liverview.engine.detection import ai_boxes

        case = self._case(case_dict)
        findings = self.engine.analyze(
            case,
            progress=lambda f, m: self.send("progress", job, float(f), str(m)),
            cancel=lambda: job in self.cancelled,
        )
        boxes = [asdict(b) for b in ai_boxes(case, findings.composites)]
        self.send("result", job, {"findings": findings.to_dict(), "ai_boxes": boxes})

    def auto_pick(self, job: int) -> None:
        if self.study is None:
            raise RuntimeError("no exam has been sent to the engine process yet")
        self.send("progress", job, 0.0, "scanning the liver for the lesion")
        picks = self.engine.auto_pick(
            self.study,
            cancel=lambda: job in self.cancelled,
            progress=lambda f, m: self.send("progress", job, float(f), str(m)),
        )
        self.send("result", job, {"picks": picks.picks, "extent": list(picks.extent), "reference": picks.reference})

    def run(self) -> None:
        threading.Thread(target=self.read_requests, name="engine-requests", daemon=True).start()
        try:
            import torch

            if self.threads:
                torch.set_num_threads(self.threads)
            import liverview.engine.analyze  # noqa: F401 - the slow import, done once up front
        except Exception as exc:
            self.send("fatal", _one_line(exc), traceback.format_exc())
            return
        self.send("ready", os.getpid())
        while True:
            msg = self.inbox.get()
            kind = msg[0]
            if kind == "stop":
                break
            job = msg[1] if kind in ("analyze", "auto_pick") else None
            try:
                if kind == "bundle":
                    self.load_bundle(msg[1])
                elif kind == "study":
                    self.set_study(msg[1], msg[2])
                elif job is not None and job in self.cancelled:
                    self.send("cancelled", job)
                elif job is not None and self.engine is None:
                    self.send("error", job, "no model bundle is loaded", "")
                elif kind == "analyze":
                    self.analyze(job, msg[2])
                elif kind == "auto_pick":
                    self.auto_pick(job)
            except Exception as exc:
                if job is not None and (job in self.cancelled or type(exc).__name__ == "AnalysisCancelled"):
                    self.send("cancelled", job)
                elif job is not None:
                    self.send("error", job, _one_line(exc), traceback.format_exc())
                else:
                    self.send("failed", kind, _one_line(exc), traceback.format_exc())
        for shm in self.shms:
            shm.close()


def _attach(name: str) -> shared_memory.SharedMemory:
    """Attach to the GUI's shared memory without adopting it: before Python 3.13 attaching
    registers the segment with this process's resource tracker, which would unlink it when
    the engine process ends while the GUI still owns it."""
    shm = shared_memory.SharedMemory(name=name)
    try:
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")  # noqa: SLF001 - see docstring
    except Exception:
        pass
    return shm


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    msg = lines[0] if lines else ""
    if msg and type(exc).__module__.startswith("liverview"):
        return msg
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def serve(requests, replies, threads: int = 0) -> None:
    """Entry point of the engine process."""
    if threads:
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if hasattr(os, "nice"):
        try:
            os.nice(5)  # the radiologist's window comes first when the CPU is short
        except OSError:
            pass
    _Server(requests, replies, threads).run()


def main(argv: list[str] | None = None) -> None:
    """`python -m liverview.qt.engine_process REQUEST_FD REPLY_FD [THREADS]` (started by EngineClient)."""
    import sys
    from multiprocessing.connection import Connection

    args = list(sys.argv[1:] if argv is None else argv)
    requests = Connection(int(args[0]), writable=False)
    replies = Connection(int(args[1]), readable=False)
    serve(requests, replies, int(args[2]) if len(args) > 2 else 0)


if __name__ == "__main__":
    main()
