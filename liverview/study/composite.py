"""The one composite builder: 4-channel (P, A, V, D) windowed slices, PKCP combinations, union boxes."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
from scipy import ndimage

from liverview.study.phases import PHASES, WINDOWS
from liverview.study.volume import HU, WINDOWED

Rect = tuple[float, float, float, float]


def to_unit(
    pixels: np.ndarray,
    phase: str,
    intensity: str = HU,
    export_window: tuple[float, float] | None = None,
    windows: Mapping[str, tuple[float, float]] = WINDOWS,
) -> np.ndarray:
    """Window a slice with the phase's window (WINDOWS) and scale it to [0, 1] (float32).

    HU pixels are windowed directly. Windowed 8-bit exports are already windowed: they are
    scaled by 1/255, and when the export's own window is known and differs from the model's,
    mapped back to HU first so the model sees the window it was trained with.
    """
    level, width = windows[phase]
    px = np.asarray(pixels, dtype=np.float32)
    if intensity == WINDOWED:
        if export_window is None or tuple(export_window) == (level, width):
            return np.clip(px / 255.0, 0.0, 1.0)
        el, ew = export_window
        px = (el - ew / 2.0) + px / 255.0 * ew  # approximate HU
    elif intensity != HU:
        raise ValueError(f"unknown intensity {intensity!r}")
    lo = level - width / 2.0
    return np.clip((px - lo) / width, 0.0, 1.0)


@dataclass
class Composite:
    """One 4-channel composite and where it came from.

    `picks` gives, per phase, the index of the pick (0..K-1) used; `positions` the slice
    positions; `box` the union of the lesion boxes of its slices (pixel coordinates of the
    composite grid) or None when no slice has a box; `scale` per phase the (sx, sy) factor
    from that phase's pixel grid to the composite grid (1, 1 unless matrices differ).
    """

    image: np.ndarray
    phases_used: tuple[str, ...]
    picks: dict[str, int] = field(default_factory=dict)
    positions: dict[str, float] = field(default_factory=dict)
    box: Rect | None = None
    scale: dict[str, tuple[float, float]] = field(default_factory=dict)


def _resize(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if img.shape == shape:
        return img
    zoom = (shape[0] / img.shape[0], shape[1] / img.shape[1])
    out = ndimage.zoom(img, zoom, order=1, mode="nearest")
    return out[: shape[0], : shape[1]]


def build_composite(
    slices: Mapping[str, np.ndarray | None],
    intensity: str = HU,
    export_windows: Mapping[str, tuple[float, float] | None] | None = None,
    windows: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Stack one slice per phase into a float32 (4, H, W) array in [0, 1], channels P, A, V, D.

    A missing phase (None or absent) becomes an all-zero channel and is left out of the
    returned `phases_used`. Slices whose matrix differs from the first present phase are
    resampled onto its grid.
    """
    windows = WINDOWS if windows is None else windows
    present = [p for p in PHASES if slices.get(p) is not None]
    if not present:
        raise ValueError("a composite needs at least one phase slice")
    ref_shape = tuple(np.asarray(slices[present[0]]).shape)
    if len(ref_shape) != 2:
        raise ValueError(f"composite slices must be 2-D, phase {present[0]} has shape {ref_shape}")
    out = np.zeros((len(PHASES), *ref_shape), dtype=np.float32)
    for c, phase in enumerate(PHASES):
        px = slices.get(phase)
        if px is None:
            continue
        ew = (export_windows or {}).get(phase)
        out[c] = _resize(to_unit(px, phase, intensity, ew, windows), ref_shape)  # type: ignore[arg-type]
    return out, tuple(present)


def combinations(k: int = 3, mode: str = "depth", phases: Sequence[str] = PHASES) -> list[dict[str, int]]:
    """Pick-index combinations: "depth" gives the K depth-consistent ones (slice k of every
    phase), "all" the K^P cross-phase ones (PKCP for minority classes)."""
    if mode == "depth":
        return [{p: i for p in phases} for i in range(k)]
    if mode == "all":
        return [dict(zip(phases, combo)) for combo in itertools.product(range(k), repeat=len(phases))]
    raise ValueError(f"unknown combination mode {mode!r}: expected 'depth' or 'all'")


def union_box(boxes: Iterable[Rect | None]) -> Rect | None:
    """Smallest rectangle enclosing every given box (x0, y0, x1, y1); None when none is given."""
    rects = [b for b in boxes if b is not None]
    if not rects:
        return None
    arr = np.asarray(rects, dtype=np.float64)
    return (float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()), float(arr[:, 3].max()))


def case_composites(case, mode: str = "depth", k: int | None = None,
                    windows: dict[str, tuple[float, float]] | None = None) -> list[Composite]:
    """Composites of a Case from its picks; boxes are the readers' boxes (user, else accepted AI).

    Phases without a volume or without picks are left out (zero channel); K is the smallest
    number of picks among the phases used. `windows` (phase -> level, width) replaces the
    phases' WINDOWS for HU volumes, e.g. the windows a model bundle was trained with.
    """
    study = case.study
    if study is None:
        raise ValueError("case has no study loaded")
    phases = [p for p in study.phases if case.picks.get(p)]
    if not phases:
        raise ValueError("no phase has picked slices")
    k = k or min(len(case.picks[p]) for p in phases)
    intensity = study.intensity
    if intensity == "mixed":
        raise ValueError("phases mix HU volumes and windowed exports; load them the same way")
    ref_shape = study.volumes[phases[0]].pixels.shape[1:]
    out = []
    for combo in combinations(k, mode, phases):
        slices, positions, boxes, scale = {}, {}, [], {}
        for p in phases:
            vol = study.volumes[p]
            pos = case.picks[p][combo[p]]
            slices[p] = vol.slice_at(pos)
            positions[p] = pos
            sy = ref_shape[0] / vol.pixels.shape[1]
            sx = ref_shape[1] / vol.pixels.shape[2]
            scale[p] = (sx, sy)
            b = case.reader_box(p, vol.position_of(vol.index_at(pos)))
            if b is not None:
                boxes.append((b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy))
        image, used = build_composite(
            slices, intensity, {p: study.volumes[p].window for p in phases}, windows
        )
        out.append(Composite(image, used, dict(combo), positions, union_box(boxes), scale))
    return out
