"""Automatic slice picking: detect through the liver range of one phase, find the dominant lesion's
z-extent, and propose three slices per phase (upper, middle, lower third) matched by position."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from liverview.engine.errors import AnalysisCancelled, AnalysisError, AutoPickError  # noqa: F401 - AnalysisError: old import path
from liverview.study.case import Case, Study
from liverview.study.composite import build_composite, to_unit
from liverview.study.phases import PHASES

# Typical liver attenuation per phase (the phantom's tissue table, docs/method.md) and the band around it counted as liver.
LIVER_HU = {"P": 55.0, "A": 70.0, "V": 110.0, "D": 90.0}
LIVER_BAND_HU = 45.0
MIN_LIVER_FRACTION = 0.02  # of the slice's pixels, for a slice to count as inside the liver range


@dataclass
class SliceDetection:
    """The detector's boxes on the composite built at one reference-phase slice."""

    index: int  # slice index in the reference phase
    position: float
    boxes: np.ndarray  # (n, 5): x0, y0, x1, y1, score in reference-phase pixels


@dataclass
class AutoPicks:
    reference: str
    extent: tuple[float, float]  # dominant lesion's z range (mm along the reference normal)
    picks: dict[str, list[float]]  # phase -> three slice positions, ascending
    detections: list[SliceDetection] = field(default_factory=list)
    scanned: tuple[int, int] = (0, 0)  # first and last reference slice scanned
    lesion_slices: list[int] = field(default_factory=list)

    def apply(self, case: Case) -> None:
        case.set_all_picks(self.picks)


def liver_range(study: Study, phase: str, windows) -> tuple[int, int]:
    """First and last slice with a liver-like share of pixels; the whole volume when none has."""
    vol = study.volumes[phase]
    level, width = windows[phase]
    lo = (LIVER_HU[phase] - LIVER_BAND_HU - (level - width / 2)) / width
    hi = (LIVER_HU[phase] + LIVER_BAND_HU - (level - width / 2)) / width
    unit = to_unit(vol.pixels, phase, vol.intensity, vol.window, windows)
    frac = ((unit >= lo) & (unit <= hi)).mean(axis=(1, 2))
    inside = np.flatnonzero(frac >= max(MIN_LIVER_FRACTION, 0.25 * float(frac.max())))
    if inside.size == 0:
        return 0, vol.pixels.shape[0] - 1
    return int(inside[0]), int(inside[-1])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def dominant_run(dets: list[SliceDetection], min_iou: float = 0.1) -> list[int]:
    """Indices (into `dets`) of the chain of consecutive scanned slices whose top boxes overlap,
    with the largest summed score."""
    best: list[int] = []
    best_score = 0.0
    run: list[int] = []
    score = 0.0
    for i, d in enumerate(dets):
        if len(d.boxes) and run and _iou(dets[run[-1]].boxes[0], d.boxes[0]) >= min_iou:
            run.append(i)
            score += float(d.boxes[0, 4])
        elif len(d.boxes):
            run, score = [i], float(d.boxes[0, 4])
        else:
            run, score = [], 0.0
        if score > best_score:
            best, best_score = list(run), score
    return best


def _three(vol, targets: list[float]) -> list[float]:
    """Three distinct slices of `vol` nearest to the target positions (ascending)."""
    pos = vol.positions
    n = len(pos)
    idx = sorted(int(np.argmin(np.abs(pos - t))) for t in targets)
    if n >= 3:
        idx[1] = min(max(idx[1], 1), n - 2)
        idx[0] = min(idx[0], idx[1] - 1)
        idx[2] = max(idx[2], idx[1] + 1)
    return [float(pos[k]) for k in sorted(set(idx))]


def auto_pick(
    study: Study,
    detector,
    det_entry: dict,
    windows,
    reference: str = "V",
    max_slices: int = 48,
    batch: int = 16,
    cancel: Callable[[], bool] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> AutoPicks:
    """Propose three picks per phase around the dominant lesion found on `reference` (V, else the first phase)."""
    from liverview.engine.detection import run_detector

    phases = study.phases
    if not phases:
        raise AutoPickError("no phase volumes to pick slices from")
    ref = reference if reference in phases else phases[0]
    rvol = study.volumes[ref]
    first, last = liver_range(study, ref, windows)
    indices = np.unique(np.linspace(first, last, num=min(max_slices, last - first + 1)).round().astype(int))
    dets: list[SliceDetection] = []
    for start in range(0, len(indices), batch):
        if cancel is not None and cancel():
            raise AnalysisCancelled("automatic picking cancelled")
        if progress is not None:
            progress(start / len(indices), f"scanning phase {ref} slices {first}..{last} for the lesion")
        chunk = indices[start : start + batch]
        images = []
        for k in chunk:
            z = rvol.position_of(int(k))
            slices = {}
            for p in phases:
                vol = study.volumes[p]
                j = vol.index_at(z)
                tol = max(abs(vol.spacing[0]), abs(rvol.spacing[0]))
                if abs(vol.position_of(j) - z) <= tol:
                    slices[p] = vol.pixels[j]
            image, _ = build_composite(slices, study.intensity, {p: study.volumes[p].window for p in phases}, windows)
            images.append(image)
        found = run_detector(detector, det_entry, images, max_det=3)
        # composites are built on the first present phase's grid: bring boxes to the reference grid
        grid = study.volumes[phases[0]].pixels.shape[1:]
        sy, sx = rvol.pixels.shape[1] / grid[0], rvol.pixels.shape[2] / grid[1]
        for k, f in zip(chunk, found):
            f = f.copy()
            f[:, [0, 2]] *= sx
            f[:, [1, 3]] *= sy
            dets.append(SliceDetection(int(k), rvol.position_of(int(k)), f))
    run = dominant_run(dets)
    if not run:
        raise AutoPickError(
            f"no lesion detected on phase {ref} slices {first}..{last}; pick the slices by hand"
        )
    z0, z1 = dets[run[0]].position, dets[run[-1]].position
    step = abs(float(np.median(np.diff([d.position for d in dets])))) if len(dets) > 1 else 0.0
    lo, hi = min(z0, z1) - step / 2, max(z0, z1) + step / 2
    targets = [lo + (i + 0.5) * (hi - lo) / 3.0 for i in range(3)]
    picks = {p: _three(study.volumes[p], targets) for p in PHASES if p in study.volumes}
    if progress is not None:
        progress(1.0, f"lesion found on {len(run)} scanned slices of phase {ref}")
    return AutoPicks(ref, (lo, hi), picks, dets, (first, last), [dets[i].index for i in run])
