"""Evidence before a diagnosis: every slice the analysis would use must hold a decoded image of the patient."""

from __future__ import annotations

import numpy as np

from liverview.engine.errors import EvidenceError
from liverview.study.case import Case
from liverview.study.phases import PHASE_NAMES, WINDOWS
from liverview.study.volume import HU, Volume

MIN_STD_HU = 5.0  # CT noise alone is 5-30 HU; a slice flatter than this holds no image
MIN_STD_GREY = 2.0  # the same for windowed 8-bit exports, in grey levels
MIN_BODY_FRACTION = 0.03  # under 3 % of the slice above the air threshold: outside the patient
BODY_FLOOR_HU = -400.0


def window_of(vol: Volume, phase: str) -> tuple[tuple[float, float], bool]:
    """((level, width), known) for a windowed export: its own window, else the phase's default (not known)."""
    if vol.window is not None:
        return (float(vol.window[0]), float(vol.window[1])), True
    return WINDOWS.get(phase, (40.0, 400.0)), False


def slice_hu(vol: Volume, phase: str, index: int) -> tuple[np.ndarray, float]:
    """(the slice in HU, the HU below which a pixel is air); windowed exports are mapped back through their window.

    An export clips everything below its window to 0, so its air threshold is just above the
    window's lower edge (fat at -100 HU stays body in the usual abdominal windows).
    """
    px = np.asarray(vol.pixels[index], dtype=np.float32)
    if vol.intensity == HU:
        return px, BODY_FLOOR_HU
    (level, width), _ = window_of(vol, phase)
    lo = level - width / 2.0
    return lo + px / 255.0 * width, max(BODY_FLOOR_HU, lo + 0.05 * width)


def slice_problem(vol: Volume, phase: str, index: int) -> str | None:
    """Why slice `index` of the phase's volume cannot be used, in one line naming phase and position, or None."""
    where = f"phase {phase} ({PHASE_NAMES.get(phase, phase)}): slice at {vol.position_of(index):.1f} mm (index {index})"
    if vol.ready is not None and not bool(vol.ready[index]):
        return f"{where} was not decoded; nothing to analyse there"
    raw = np.asarray(vol.pixels[index], dtype=np.float32)
    std = float(raw.std())
    if vol.intensity == HU and std < MIN_STD_HU:
        return f"{where} is constant ({float(raw.mean()):.0f} HU, sd {std:.1f} HU < {MIN_STD_HU:g}); no image there"
    if vol.intensity != HU and std < MIN_STD_GREY:
        return f"{where} is constant (grey {float(raw.mean()):.0f}, sd {std:.1f} < {MIN_STD_GREY:g} levels); no image there"
    hu, floor = slice_hu(vol, phase, index)
    body = float(np.count_nonzero(hu > floor)) / hu.size
    if body < MIN_BODY_FRACTION:
        return f"{where} is air ({body:.1%} of it above {floor:.0f} HU): outside the patient"
    return None


def undecoded_phases(case: Case) -> list[str]:
    """One line per phase of which not a single slice was decoded."""
    out = []
    study = case.study
    for p in study.phases if study else []:
        vol = study.volumes[p]
        if vol.ready is not None and len(vol.ready) and not bool(np.any(vol.ready)):
            out.append(f"phase {p} ({PHASE_NAMES[p]}): none of its {len(vol.ready)} slices could be decoded; nothing to analyse")
    return out


def picked_slices(case: Case) -> list[tuple[str, Volume, int]]:
    """(phase, volume, slice index) of every pick, in phase order."""
    study = case.study
    out = []
    for p in study.phases if study else []:
        vol = study.volumes[p]
        for z in case.picks.get(p, []):
            out.append((p, vol, vol.index_at(z)))
    return out


def check_evidence(case: Case) -> None:
    """Raise EvidenceError naming the first phase without any decoded slice, or the first unusable picked slice."""
    problems = undecoded_phases(case)
    if problems:
        raise EvidenceError(problems[0])
    for phase, vol, k in picked_slices(case):
        problem = slice_problem(vol, phase, k)
        if problem:
            raise EvidenceError(problem)




def guessed_phases(study) -> list[str]:
    """One line per phase assigned on too little evidence (PhaseSource.guessed), naming its confidence."""
    out = []
    for p in study.phases:
        src = study.sources.get(p)
        if src is not None and src.guessed:
            out.append(
                f"phase {p} ({PHASE_NAMES[p]}) is a guess: series '{src.description}' assigned with confidence "
                f"{src.confidence:.2f}"
            )
    return out
