"""Is this a liver CT? Body region and liver presence on the picked slices, from the pixels, with the measurements shown.

Each picked slice is measured (io/kinetics.py: body outline, air inside the body, bone,
the largest thick soft-tissue region on the patient's right) and read as:

- liver: a region of at least 8 % of the body on the patient's right (half of it right of
  the midline) at the liver HU of the slice's phase, lungs under 25 % and bone under 10 %
  of the body;
- doubtful: a liver-like region, but at the wrong HU for the phase, too small (3-8 %),
  too central, or beside large lungs (the dome at heart level) or much bone;
- no liver: no such region, or much bone without a liver at liver HU (head, neck, pelvis), or
  lungs filling the body (chest, heart), or a body too small for an abdomen.

The exam passes when at least half of the picked slices show a liver, is refused when none
shows even a doubtful one, and is doubtful otherwise. Unenhanced liver and muscle share
their HU, so at pre-contrast the bone and lung rules carry more of the decision.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from liverview.engine.errors import LiverDoubtful, NotLiverError
from liverview.engine.evidence import picked_slices, slice_hu, window_of
from liverview.study.case import Case
from liverview.study.phases import PHASE_NAMES
from liverview.study.volume import HU

if TYPE_CHECKING:
    from liverview.io.kinetics import SliceAnatomy

LIVER, DOUBTFUL, NO_LIVER = "liver", "doubtful", "no liver"
# liver parenchyma HU per phase, wide: children, adults, fatty livers and doses differ
LIVER_HU = {"P": (40.0, 85.0), "A": (45.0, 140.0), "V": (70.0, 180.0), "D": (60.0, 160.0)}
LIVER_FRACTION = 0.08
DOUBTFUL_FRACTION = 0.03
RIGHT_SHARE = 0.5  # a child's liver reaches well past the midline
LUNG_FRACTION = 0.25
BONE_FRACTION = 0.10
MIN_BODY_CM2 = 30.0


@dataclass
class SliceReading:
    """One picked slice: what it showed and how it reads."""

    phase: str
    index: int
    position: float
    outcome: str
    reason: str
    anatomy: SliceAnatomy

    def line(self) -> str:
        m = self.anatomy
        hu = f", {m.liver_hu:.0f} HU" if m.liver_hu is not None else ""
        return (
            f"phase {self.phase} slice at {self.position:.1f} mm: {self.outcome} ({self.reason}; body {m.body_cm2:.0f} cm2, "
            f"lungs {m.lung_fraction:.0%}, bone {m.bone_fraction:.0%}, liver-like region {m.liver_cm2:.0f} cm2 = "
            f"{m.liver_fraction:.0%} of the body{hu}, {m.liver_right_share:.0%} right of the midline)"
        )


@dataclass
class LiverReport:
    """The exam's outcome (liver, doubtful, no liver), why, and every slice's reading."""

    outcome: str
    reason: str
    slices: list[SliceReading] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"anatomy: {self.outcome}: {self.reason}"] + [s.line() for s in self.slices] + self.notes


def read_slice(m: SliceAnatomy, phase: str) -> tuple[str, str]:
    """(outcome, reason) for one measured slice of `phase`."""
    if not m.has_body:
        return NO_LIVER, "no body on the slice"
    if m.body_cm2 < MIN_BODY_CM2:
        return NO_LIVER, f"body of {m.body_cm2:.0f} cm2 is too small for an abdomen"
    lo, hi = LIVER_HU[phase]
    hu_ok = m.liver_hu is not None and lo <= m.liver_hu <= hi
    lungs = m.lung_fraction >= LUNG_FRACTION
    bones = m.bone_fraction >= BONE_FRACTION
    big = m.liver_fraction >= LIVER_FRACTION and m.liver_right_share >= RIGHT_SHARE
    some = m.liver_fraction >= DOUBTFUL_FRACTION
    if bones and not (big and hu_ok):
        return NO_LIVER, f"bone is {m.bone_fraction:.0%} of the body and no liver beside it: head, neck or pelvis level"
    if lungs and not big:
        return NO_LIVER, f"lungs fill {m.lung_fraction:.0%} of the body: chest or heart level"
    if not some:
        return NO_LIVER, "no liver-sized soft-tissue region on the patient's right"
    if big and hu_ok and not lungs and not bones:
        return LIVER, f"liver-like region at {m.liver_hu:.0f} HU, in the {PHASE_NAMES[phase]} range {lo:g}-{hi:g}"
    why = []
    if not hu_ok:
        why.append(f"its {m.liver_hu:.0f} HU is outside the {PHASE_NAMES[phase]} liver range {lo:g}-{hi:g}")
    if m.liver_fraction < LIVER_FRACTION:
        why.append(f"it is only {m.liver_fraction:.0%} of the body")
    if m.liver_right_share < RIGHT_SHARE:
        why.append(f"only {m.liver_right_share:.0%} of it lies right of the midline")
    if lungs:
        why.append(f"lungs fill {m.lung_fraction:.0%} of the body")
    if bones:
        why.append(f"bone is {m.bone_fraction:.0%} of the body")
    return DOUBTFUL, "liver-like region, but " + "; ".join(why)


def liver_report(case: Case) -> LiverReport | None:
    """Read every picked slice; None when nothing is picked."""
    # imported here: liverview.io brings pydicom and the loader, which the engine's start-up need not wait for
    from liverview.io.kinetics import analyse_slice
    picks = picked_slices(case)
    if not picks:
        return None
    readings = []
    notes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for phase, vol, k in picks:
            hu, floor = slice_hu(vol, phase, k)
            if vol.intensity != HU:
                (level, width), known = window_of(vol, phase)
                if not known:
                    note = f"phase {phase}: windowed export without its window: HU read as window {level:g}/{width:g}"
                    if note not in notes:
                        notes.append(note)
            m = analyse_slice(hu, vol.affine, body_floor=floor, vessels=False)
            outcome, reason = read_slice(m, phase)
            readings.append(SliceReading(phase, k, vol.position_of(k), outcome, reason, m))
    n_liver = sum(r.outcome == LIVER for r in readings)
    if 2 * n_liver >= len(readings):
        return LiverReport(LIVER, f"{n_liver} of {len(readings)} picked slices show a liver", readings, notes)
    if all(r.outcome == NO_LIVER for r in readings):
        first = readings[0]
        return LiverReport(
            NO_LIVER, f"no picked slice shows a liver (phase {first.phase} at {first.position:.1f} mm: {first.reason})", readings, notes
        )
    doubt = next(r for r in readings if r.outcome != LIVER)
    return LiverReport(
        DOUBTFUL,
        f"only {n_liver} of {len(readings)} picked slices show a liver (phase {doubt.phase} at {doubt.position:.1f} mm: {doubt.reason})",
        readings,
        notes,
    )


def check_liver(case: Case, allow_doubtful: bool = False) -> LiverReport | None:
    """Raise NotLiverError, or LiverDoubtful unless `allow_doubtful`; return the report otherwise."""
    report = liver_report(case)
    if report is None:
        return None
    if report.outcome == NO_LIVER:
        raise NotLiverError(f"not a liver CT: {report.reason}")
    if report.outcome == DOUBTFUL and not allow_doubtful:
        raise LiverDoubtful(
            f"liver not certain: {report.reason}; analyse only after confirming the slices show the liver"
        )
    return report
