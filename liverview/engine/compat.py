"""Checks before analysis: are the phases there and matched in z, and can the pixels become what the bundle wants?"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from liverview.engine.errors import (
    AnalysisError,
    EvidenceError,
    GuessedPhasesError,
    IntensityError,
    MissingPhasesError,
    NoPicksError,
    PhaseMatchError,
)
from liverview.engine.evidence import check_evidence, guessed_phases, undecoded_phases
from liverview.engine.liver_check import check_liver
from liverview.study.case import Case, Study
from liverview.study.phases import PHASE_NAMES, PHASES, WINDOWS

__all__ = [
    "AnalysisError",
    "IntensityError",
    "MissingPhasesError",
    "PhaseMatchError",
    "check_case",
    "intensity_check",
    "missing_phases",
    "phase_match_problems",
    "pick_problems",
]


def missing_phases(study: Study) -> list[str]:
    return [p for p in PHASES if p not in study.volumes]


def _z_range(vol, normal: np.ndarray) -> tuple[float, float]:
    """Extent of a volume's slice origins along `normal`, padded by half a slice."""
    k = np.array([0, vol.pixels.shape[0] - 1], dtype=np.float64)
    origins = vol.affine[:3, 3][None] + k[:, None] * vol.affine[:3, 2][None]
    z = origins @ normal
    half = abs(float(vol.affine[:3, 2] @ normal)) / 2.0
    return float(z.min() - half), float(z.max() + half)


def phase_match_problems(study: Study) -> list[str]:
    """One line per phase whose slices share no z range with the reference phase (V, else the first)."""
    phases = study.phases
    if len(phases) < 2:
        return []
    ref = "V" if "V" in phases else phases[0]
    normal = study.volumes[ref].normal
    r0, r1 = _z_range(study.volumes[ref], normal)
    out = []
    for p in phases:
        if p == ref:
            continue
        vol = study.volumes[p]
        if abs(float(vol.normal @ normal)) < 0.99:
            out.append(f"phase {p}: slices are not parallel to phase {ref}'s; phases cannot be matched by position")
            continue
        z0, z1 = _z_range(vol, normal)
        if z1 < r0 or z0 > r1:
            out.append(
                f"phase {p}: z {z0:.1f}..{z1:.1f} mm does not overlap phase {ref} ({r0:.1f}..{r1:.1f} mm); "
                "phases cannot be matched by position"
            )
    return out


def pick_problems(case: Case) -> list[str]:
    """Picks that lie outside their phase's volume."""
    out = []
    for p in case.study.phases if case.study else []:
        vol = case.study.volumes[p]
        pos = vol.positions
        step = abs(float(pos[1] - pos[0])) if len(pos) > 1 else 1.0
        lo, hi = float(pos.min()) - step / 2, float(pos.max()) + step / 2
        for z in case.picks.get(p, []):
            if not lo <= z <= hi:
                out.append(f"phase {p}: pick at {z:.2f} mm is outside the volume ({lo:.2f}..{hi:.2f} mm)")
    return out


@dataclass(frozen=True)
class Allowances:
    """What a reader accepted for one analysis: the command line's flags, the viewer's confirmations."""

    allow_missing: bool = False  # missing phases become zero channels
    assume_windows: bool = False  # windowed exports without their window taken as made with the bundle's windows
    allow_doubtful: bool = False  # anatomy that may not show a liver
    accept_guessed_phases: bool = False  # phases assigned on too little evidence

    def rules(self) -> dict[str, bool]:
        """The keyword arguments of check_case."""
        return {"allow_missing": self.allow_missing, "allow_doubtful": self.allow_doubtful,
                "accept_guessed_phases": self.accept_guessed_phases}


def check_case(
    case: Case, allow_missing: bool = False, allow_doubtful: bool = False, accept_guessed_phases: bool = False,
    pixels: bool = True,
) -> list[str]:
    """Raise the AnalysisError that says why the case may not be analysed; return the warnings it goes on with.

    The one rule set (without the bundle: see intensity_check) shared by the engine, the CLI
    and the viewer. Guessed phases (GuessedPhasesError) and doubtful anatomy (LiverDoubtful)
    pass when allowed; slices without an image (EvidenceError) and slices without a liver
    (NotLiverError) never do. `pixels=False` leaves out the checks that read the picked
    slices' pixels (evidence, liver): the viewer's quick check on its own thread; the engine
    always runs them all.
    """
    study = case.study
    if study is None or not study.volumes:
        raise AnalysisError("case has no images loaded")
    missing = missing_phases(study)
    if missing and not allow_missing:
        names = ", ".join(f"{p} ({PHASE_NAMES[p]})" for p in missing)
        raise MissingPhasesError(
            f"missing phase(s) {names}; analyse with {', '.join(study.phases)} only after allowing "
            "missing phases (they become zero channels)"
        )
    problems = phase_match_problems(study)
    if problems:
        raise PhaseMatchError(problems[0])
    warnings = []
    problems = undecoded_phases(case)
    if problems:
        raise EvidenceError(problems[0])
    guessed = guessed_phases(study)
    if guessed:
        if not accept_guessed_phases:
            raise GuessedPhasesError(
                f"{guessed[0]}{f' (and {len(guessed) - 1} more)' if len(guessed) > 1 else ''}; "
                "confirm the phases, or accept the guessed ones"
            )
        warnings.extend(guessed)
    problems = pick_problems(case)
    if problems:
        raise AnalysisError(problems[0])
    if not any(case.picks.get(p) for p in study.phases):
        raise NoPicksError("no slices picked: pick three slices per phase or use automatic picking")
    if not pixels:
        return warnings
    check_evidence(case)
    report = check_liver(case, allow_doubtful)
    if report is not None:
        warnings.extend(report.notes)
        if report.outcome != "liver":
            warnings.append(f"anatomy accepted as liver though doubtful: {report.reason}")
    return warnings


def intensity_check(study: Study, manifest: Mapping[str, Any], assume_windows: bool = False) -> list[str]:
    """What converts the study's pixels to the bundle's input, one note per phase that needs it.

    Raises IntensityError when the pixels cannot be converted: windowed exports without their
    window while the bundle wants HU (unless `assume_windows`: they are then taken as exported
    with the bundle's windows).
    """
    wants = manifest.get("intensity", "HU")
    windows = {p: tuple(float(v) for v in manifest.get("windows", {}).get(p, WINDOWS[p])) for p in PHASES}
    notes = []
    for p in study.phases:
        vol = study.volumes[p]
        level, width = windows[p]
        if vol.intensity == "HU":
            if wants == "windowed":
                notes.append(
                    f"phase {p}: HU pixels windowed at level {level:g} / width {width:g} to match the bundle's windowed exports"
                )
            continue
        if vol.window is None:
            if assume_windows:
                notes.append(f"phase {p}: windowed export without window metadata taken as level {level:g} / width {width:g}")
                continue
            if wants == "HU":
                raise IntensityError(
                    f"phase {p}: windowed export (8-bit) without window metadata but the bundle wants HU; "
                    "export HU DICOM, or pass --assume-windows to take the bundle's windows"
                )
            notes.append(f"phase {p}: windowed export without window metadata taken as exported with the bundle's windows")
            continue
        if tuple(float(v) for v in vol.window) != (level, width):
            el, ew = vol.window
            notes.append(
                f"phase {p}: windowed export (level {el:g} / width {ew:g}) mapped back to HU and re-windowed at "
                f"{level:g} / {width:g}; values outside the export window are lost"
            )
    return notes
