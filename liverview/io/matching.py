"""Match slices of different phases by patient position, and say when phases do not overlap."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liverview.study.case import Study
from liverview.study.phases import check_phase
from liverview.study.volume import Volume


@dataclass
class SliceMatch:
    """The slice of another phase nearest to a position: its index, position and distance."""

    index: int
    position: float
    distance_mm: float
    inside: bool  # the position lies within the other phase's slab (half a slice either side)


def _slab(vol: Volume) -> tuple[float, float]:
    pos = vol.positions
    half = (abs(float(pos[1] - pos[0])) / 2.0) if len(pos) > 1 else max(vol.spacing[0], 1e-6) / 2.0
    return float(pos.min()) - half, float(pos.max()) + half


def _point_at(vol: Volume, position: float) -> np.ndarray:
    """Patient-space centre of the slice plane of `vol` at `position` (mm along its normal)."""
    rows, cols = vol.shape[1], vol.shape[2]
    k = vol.index_at(position)
    centre = vol.to_patient((cols - 1) / 2.0, (rows - 1) / 2.0, k)
    n = vol.normal
    return centre + (position - float(centre @ n)) * n


def match_slice(study: Study, from_phase: str, position: float, to_phase: str) -> SliceMatch:
    """The slice of `to_phase` nearest (along its normal) to `position` in `from_phase`."""
    check_phase(from_phase)
    check_phase(to_phase)
    src = study.volumes.get(from_phase)
    dst = study.volumes.get(to_phase)
    if src is None or dst is None:
        missing = from_phase if src is None else to_phase
        raise KeyError(f"phase {missing} is not in this study (phases: {', '.join(study.phases) or 'none'})")
    target = float(_point_at(src, position) @ dst.normal)
    k = dst.index_at(target)
    found = dst.position_of(k)
    lo, hi = _slab(dst)
    return SliceMatch(index=k, position=found, distance_mm=abs(found - target), inside=lo <= target <= hi)


def match_position(study: Study, from_phase: str, position: float, to_phase: str) -> float:
    """Position (mm along `to_phase`'s normal) of its slice nearest to `position` in `from_phase`."""
    return match_slice(study, from_phase, position, to_phase).position


def overlap_problems(study: Study) -> list[str]:
    """One line per pair of phases whose slabs do not overlap, or overlap less than half the smaller."""
    out = []
    phases = study.phases
    ranges = {}
    for p in phases:
        vol = study.volumes[p]
        ref = study.volumes[phases[0]]
        # express every slab along the first phase's normal so the ranges compare
        n = ref.normal
        ends = [float(vol.to_patient((vol.shape[2] - 1) / 2.0, (vol.shape[1] - 1) / 2.0, k) @ n) for k in (0, vol.shape[0] - 1)]
        ranges[p] = (min(ends), max(ends))
    for i, a in enumerate(phases):
        for b in phases[i + 1 :]:
            lo = max(ranges[a][0], ranges[b][0])
            hi = min(ranges[a][1], ranges[b][1])
            la = ranges[a][1] - ranges[a][0]
            lb = ranges[b][1] - ranges[b][0]
            if hi < lo:
                out.append(
                    f"phases {a} and {b} do not overlap along the slice normal "
                    f"({a}: {ranges[a][0]:.1f} to {ranges[a][1]:.1f} mm, {b}: {ranges[b][0]:.1f} to {ranges[b][1]:.1f} mm)"
                )
            elif min(la, lb) > 0 and (hi - lo) < 0.5 * min(la, lb):
                out.append(f"phases {a} and {b} overlap only {hi - lo:.1f} mm along the slice normal")
    return out
