"""The messages between the viewer and the engine process: frozen dataclasses, pickled over pipes (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from liverview.engine.compat import Allowances

# ---- requests (viewer -> engine) ------------------------------------------------------------


@dataclass(frozen=True)
class LoadBundle:
    """Load the bundle in `folder` (None: the default bundle)."""

    folder: str | None


@dataclass(frozen=True)
class SetStudy:
    """Use this study from now on: `meta` (uids, path, sources) and one volume_spec per phase; token None and no specs: drop the study."""

    token: int | None
    meta: dict[str, Any]
    specs: list[dict[str, Any]]


@dataclass(frozen=True)
class Analyze:
    """Analyse `case` (Case.to_dict, without findings) on the current study."""

    job: int
    case: dict[str, Any]
    allow: Allowances = Allowances()


@dataclass(frozen=True)
class AutoPick:
    """Propose three slices per phase around the dominant lesion of the current study."""

    job: int


@dataclass(frozen=True)
class Cancel:
    """Stop `job` at its next step (it ends in JobCancelled)."""

    job: int


@dataclass(frozen=True)
class Stop:
    """End the engine process now."""


# ---- replies (engine -> viewer) --------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """torch and the engine modules are imported; the bundle comes next."""

    pid: int


@dataclass(frozen=True)
class BundleLoaded:
    """The bundle loaded and verified; `card` is Bundle.describe() plus load_seconds."""

    card: dict[str, Any]


@dataclass(frozen=True)
class BundleFailed:
    """The bundle in `target` could not be used; `message` is one line, `detail` the traceback."""

    target: str
    message: str
    detail: str


@dataclass(frozen=True)
class StudyReady:
    """The study sent with `token` is attached (or dropped, for token None)."""

    token: int | None


@dataclass(frozen=True)
class Progress:
    """A job reached `fraction` (0..1) doing `message`."""

    job: int
    fraction: float
    message: str


@dataclass(frozen=True)
class JobDone:
    """A job's result: service.analyze_payload or service.auto_pick_payload."""

    job: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class JobFailed:
    """A job failed; `error` names a class of liverview.engine.errors (see error_from_reply)."""

    job: int
    error: str
    message: str
    detail: str


@dataclass(frozen=True)
class JobCancelled:
    """A job stopped on request."""

    job: int


@dataclass(frozen=True)
class Fatal:
    """The engine process cannot work (torch or the engine did not import); it ends after this."""

    message: str
    detail: str


Request = LoadBundle | SetStudy | Analyze | AutoPick | Cancel | Stop
Reply = Started | BundleLoaded | BundleFailed | StudyReady | Progress | JobDone | JobFailed | JobCancelled | Fatal


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


def study_meta(study) -> dict[str, Any]:
    """The study's identity and phase sources, as SetStudy carries them."""
    return {
        "study_uid": study.study_uid,
        "patient_id": study.patient_id,
        "path": study.path,
        "sources": {p: dict(vars(s)) for p, s in study.sources.items()},
    }
