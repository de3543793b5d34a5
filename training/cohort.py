"""A cohort materialised once: the 12 picked slices of every exam, windowed to uint8, with boxes and labels.

Everything downstream (PKCP composites, detector datasets, classifier crops, evaluation)
reads this cache instead of the DICOM files, so a cohort is decoded exactly once.
Arrays: `slices` uint8 [N, 4 phases, K picks, H, W] holding the slice windowed per phase (liverview.study.phases.WINDOWS)
scaled to 0..255 (what `liverview.study.composite.to_unit` gives, times 255, like the
paper's 8-bit exports); `boxes` float32 [N, 4, K, 4] (x0, y0, x1, y1 in pixels of the
cached grid, NaN where a slice has no box); `present` bool [N, 4] (phase available).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from liverview.study.atomic import write_bytes_atomic, write_json_atomic
from liverview.study.composite import to_unit
from liverview.study.phases import PHASES
from liverview.study.volume import HU

from training.tasks import CLASSES, check_class

K = 3  # picks per phase (docs/method.md, section 1)
FORMAT = "liverview.training.cohort"
FORMAT_VERSION = 1


class CohortError(ValueError):
    """A cohort that cannot be built or read; the message names the file, patient or field."""


@dataclass
class ExamSlices:
    """One exam's picked slices, already windowed, before it joins a cohort."""

    patient_id: str
    cls: str
    slices: np.ndarray  # uint8 [4, K, H, W]
    boxes: np.ndarray  # float32 [4, K, 4], NaN = no box
    present: np.ndarray  # bool [4]
    member: str = ""
    info: dict = field(default_factory=dict)


@dataclass
class Cohort:
    """Stacked exams; index i is one patient (one exam)."""

    patient_ids: list[str]
    classes: list[str]
    members: list[str]
    slices: np.ndarray
    boxes: np.ndarray
    present: np.ndarray
    info: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.patient_ids)
        for name, arr in (("classes", self.classes), ("members", self.members)):
            if len(arr) != n:
                raise CohortError(f"cohort field {name} has {len(arr)} entries for {n} patients")
        if self.slices.shape[:3] != (n, len(PHASES), K) or self.slices.dtype != np.uint8:
            raise CohortError(f"cohort slices must be uint8 [N, 4, {K}, H, W], got {self.slices.dtype} {self.slices.shape}")
        if self.boxes.shape != (n, len(PHASES), K, 4):
            raise CohortError(f"cohort boxes must be [N, 4, {K}, 4], got {self.boxes.shape}")
        if self.present.shape != (n, len(PHASES)):
            raise CohortError(f"cohort present must be [N, 4], got {self.present.shape}")
        dup = _first_duplicate(self.patient_ids)
        if dup is not None:
            raise CohortError(f"patient {dup!r} appears twice in one cohort")
        try:
            self.classes = [check_class(c, f"patient {pid}") for pid, c in zip(self.patient_ids, self.classes)]
        except ValueError as exc:
            raise CohortError(str(exc)) from None
        if not self.info:
            self.info = [{} for _ in range(n)]

    def __len__(self) -> int:
        return len(self.patient_ids)

    @property
    def matrix(self) -> tuple[int, int]:
        return tuple(self.slices.shape[3:])  # type: ignore[return-value]

    def index(self, patient_id: str) -> int:
        try:
            return self.patient_ids.index(patient_id)
        except ValueError:
            raise CohortError(f"patient {patient_id!r} is not in this cohort") from None

    def subset(self, patient_ids: list[str]) -> "Cohort":
        idx = [self.index(p) for p in patient_ids]
        return Cohort(
            [self.patient_ids[i] for i in idx],
            [self.classes[i] for i in idx],
            [self.members[i] for i in idx],
            self.slices[idx],
            self.boxes[idx],
            self.present[idx],
            [self.info[i] for i in idx],
            dict(self.meta),
        )

    def counts(self) -> dict[str, int]:
        return {c: self.classes.count(c) for c in CLASSES}

    def digest(self) -> str:
        """sha256 (16 hex) of everything a model trained on this cohort sees: IDs, classes, pixels, boxes."""
        h = hashlib.sha256()
        for part in (self.patient_ids, self.classes):
            h.update("\x1f".join(part).encode())
        for arr in (self.slices, self.boxes, self.present):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def fingerprints(self) -> list[str]:
        """Content hash per exam: catches the same images under two patient IDs."""
        return [hashlib.sha1(self.slices[i].tobytes()).hexdigest()[:16] for i in range(len(self))]


def _first_duplicate(items: list[str]) -> str | None:
    seen: set[str] = set()
    for x in items:
        if x in seen:
            return x
        seen.add(x)
    return None


def window_slice(pixels: np.ndarray, phase: str, intensity: str = HU, export_window=None) -> np.ndarray:
    """The window of `phase` (liverview.study.phases.WINDOWS) applied to one slice, as uint8 0..255 (the composite builder's to_unit)."""
    return np.rint(to_unit(pixels, phase, intensity, export_window) * 255.0).astype(np.uint8)


def resample(img: np.ndarray, matrix: tuple[int, int]) -> np.ndarray:
    if img.shape == tuple(matrix):
        return img
    interp = cv2.INTER_AREA if img.shape[0] > matrix[0] else cv2.INTER_LINEAR
    return cv2.resize(img, (matrix[1], matrix[0]), interpolation=interp)


def stack(exams: list[ExamSlices], meta: dict | None = None) -> Cohort:
    """Join exams into a cohort; every exam must already be on the same grid."""
    if not exams:
        raise CohortError("a cohort needs at least one exam")
    shapes = {e.slices.shape for e in exams}
    if len(shapes) != 1:
        raise CohortError(f"exams have different slice grids {sorted(shapes)}; resample them to one matrix")
    return Cohort(
        [e.patient_id for e in exams],
        [e.cls for e in exams],
        [e.member for e in exams],
        np.stack([e.slices for e in exams]),
        np.stack([e.boxes for e in exams]).astype(np.float32),
        np.stack([e.present for e in exams]).astype(bool),
        [e.info for e in exams],
        dict(meta or {}),
    )


def concat(cohorts: Sequence[Cohort], meta: dict | None = None) -> Cohort:
    """One cohort holding the patients of several, in order (e.g. a development cohort plus a supplement);
    a patient ID in two of them is an error."""
    if not cohorts:
        raise CohortError("concat needs at least one cohort")
    grids = {c.matrix for c in cohorts}
    if len(grids) != 1:
        raise CohortError(f"cohorts have different slice grids {sorted(grids)}; resample them to one matrix")
    return Cohort(
        [p for c in cohorts for p in c.patient_ids],
        [x for c in cohorts for x in c.classes],
        [m for c in cohorts for m in c.members],
        np.concatenate([c.slices for c in cohorts]),
        np.concatenate([c.boxes for c in cohorts]),
        np.concatenate([c.present for c in cohorts]),
        [i for c in cohorts for i in c.info],
        dict(meta if meta is not None else cohorts[0].meta),
    )


def save_cohort(cohort: Cohort, path: str | os.PathLike) -> Path:
    """Write the cohort as `path` (.npz, arrays only, no pickle) plus `path`.json (labels and provenance)."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    buf = io.BytesIO()
    np.savez(
        buf,
        slices=cohort.slices,
        boxes=cohort.boxes,
        present=cohort.present,
        patient_ids=np.asarray(cohort.patient_ids, dtype=str),
    )
    write_bytes_atomic(path, buf.getvalue())
    write_json_atomic(
        path.with_suffix(".json"),
        {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "patients": len(cohort),
            "matrix": list(cohort.matrix),
            "counts": cohort.counts(),
            "meta": cohort.meta,
            "exams": [
                {"patient_id": p, "class": c, "member": m, "info": i}
                for p, c, m, i in zip(cohort.patient_ids, cohort.classes, cohort.members, cohort.info)
            ],
        },
    )
    return path


def load_cohort(path: str | os.PathLike) -> Cohort:
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    side = path.with_suffix(".json")
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CohortError(f"{side}: cohort description missing (build the cohort with `python -m training cohort`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CohortError(f"{side}: not readable ({exc})") from None
    if doc.get("format") != FORMAT:
        raise CohortError(f"{side}: not a training cohort file (format field is {doc.get('format')!r})")
    if doc.get("format_version", 0) > FORMAT_VERSION:
        raise CohortError(f"{side}: format_version {doc.get('format_version')} is newer than this code reads")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("slices", "boxes", "present", "patient_ids")}
    except FileNotFoundError:
        raise CohortError(f"{path}: no such cohort file") from None
    except (OSError, ValueError, KeyError) as exc:
        raise CohortError(f"{path}: not a readable cohort array file ({exc})") from None
    exams = doc.get("exams") or []
    ids = [str(x) for x in arrays["patient_ids"]]
    if [e.get("patient_id") for e in exams] != ids:
        raise CohortError(f"{side}: patient list does not match {path.name}")
    try:
        return Cohort(
            ids,
            [e["class"] for e in exams],
            [e.get("member", "") for e in exams],
            arrays["slices"],
            arrays["boxes"],
            arrays["present"],
            [e.get("info", {}) for e in exams],
            doc.get("meta", {}),
        )
    except KeyError as exc:
        raise CohortError(f"{side}: exam entry without field {exc}") from None
