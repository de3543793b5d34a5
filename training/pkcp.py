"""PKCP: which composites an exam contributes (K^P for minority classes, K depth-consistent otherwise).

A composite is referenced by (exam index, pick index per phase) and built on demand from the
cohort cache with the one composite builder in liverview.study.composite, so training sees
exactly what the engine sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from liverview.study.composite import build_composite, combinations, union_box
from liverview.study.phases import PHASES
from liverview.study.volume import WINDOWED

from training.cohort import K, Cohort
from training.tasks import MINORITY

# Expansion modes:
#   pkcp       minority classes: K^P cross-phase composites, majority classes: K depth-consistent
#   flat       every class K depth-consistent ("without class-rebalance"; also the test-set expansion)
#   all        every class K^P (the full PKCP pool, e.g. for exploring)
#   slices     no composites: every picked slice on its own (single-phase single-slice baseline)
EXPANSIONS = ("pkcp", "flat", "all", "slices")


@dataclass(frozen=True)
class CompositeRef:
    """One training/evaluation sample: exam index and, per phase P, A, V, D, the pick index used.

    For the `slices` expansion `only` names the single phase whose slice the sample is.
    """

    exam: int
    picks: tuple[int, int, int, int]
    only: str | None = None


def expand(
    cohort: Cohort,
    mode: str = "pkcp",
    exams: Sequence[int] | None = None,
    minority: Sequence[str] = MINORITY,
    phases: Sequence[str] = PHASES,
) -> list[CompositeRef]:
    """The composites each exam contributes under `mode` (see EXPANSIONS).

    `phases` limits which phases vary in the cross-phase combinations; phases left out
    keep pick 0 (they are zeroed when the composite is built), so a 3-phase PKCP gives
    K^3 composites per minority exam.
    """
    if mode not in EXPANSIONS:
        raise ValueError(f"unknown expansion {mode!r}: expected one of {', '.join(EXPANSIONS)}")
    out: list[CompositeRef] = []
    for i in range(len(cohort)) if exams is None else exams:
        if mode == "slices":
            for p in phases:
                c = PHASES.index(p)
                if cohort.present[i, c]:
                    out += [CompositeRef(i, tuple(k if q == p else 0 for q in PHASES), p) for k in range(K)]  # type: ignore[arg-type]
            continue
        cross = mode == "all" or (mode == "pkcp" and cohort.classes[i] in minority)
        for combo in combinations(K, "all" if cross else "depth", list(phases)):
            out.append(CompositeRef(i, tuple(combo.get(p, 0) for p in PHASES)))  # type: ignore[arg-type]
    return out


def composite(
    cohort: Cohort, ref: CompositeRef, phases: Sequence[str] = PHASES
) -> tuple[np.ndarray, tuple[float, float, float, float] | None, tuple[str, ...]]:
    """Build the (4, H, W) float32 composite of `ref`, its union box and the phases used.

    Phases not in `phases` (a phase ablation) or missing from the exam are zero channels.
    A `slices` sample puts its one slice into every channel, so a 4-channel model sees a
    plain single-slice image.
    """
    e = ref.exam
    if ref.only is not None:
        c = PHASES.index(ref.only)
        k = ref.picks[c]
        px = cohort.slices[e, c, k]
        image = np.repeat((px.astype(np.float32) / 255.0)[None], len(PHASES), axis=0)
        b = cohort.boxes[e, c, k]
        return image, (None if np.isnan(b).any() else tuple(float(v) for v in b)), (ref.only,)  # type: ignore[return-value]
    slices: dict[str, np.ndarray | None] = {}
    boxes = []
    for c, p in enumerate(PHASES):
        if p not in phases or not cohort.present[e, c]:
            slices[p] = None
            continue
        k = ref.picks[c]
        slices[p] = cohort.slices[e, c, k]
        b = cohort.boxes[e, c, k]
        if not np.isnan(b).any():
            boxes.append(tuple(float(v) for v in b))
    image, used = build_composite(slices, WINDOWED)
    return image, union_box(boxes), used


def counts_per_exam(refs: Sequence[CompositeRef]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in refs:
        out[r.exam] = out.get(r.exam, 0) + 1
    return out
