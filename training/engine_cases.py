"""A cohort exam as a liverview Case (its 12 picked slices as three-slice windowed volumes), for the engine."""

from __future__ import annotations

import numpy as np

from liverview.study.case import Case, PhaseSource, Study
from liverview.study.phases import PHASES, WINDOWS
from liverview.study.volume import WINDOWED, Volume

from training.cohort import K, Cohort

SLICE_MM = 5.0
# cohort caches keep the windowed pixels, not the geometry: the slices are given the field of view of
# a school-age phantom child, so the engine's anatomy checks see body-sized images
FOV_MM = 280.0


def exam_case(cohort: Cohort, i: int) -> Case:
    """Case whose phases are the exam's picked slices (8-bit, windowed with the phases' WINDOWS) and
    whose picks are all three slices; no boxes, so the engine detects them itself."""
    volumes, sources = {}, {}
    for c, p in enumerate(PHASES):
        if not cohort.present[i, c]:
            continue
        affine = np.eye(4)
        affine[0, 0] = affine[1, 1] = FOV_MM / max(cohort.slices.shape[-2:])
        affine[2, 2] = SLICE_MM
        volumes[p] = Volume(cohort.slices[i, c].astype(np.float32), affine, WINDOWED, tuple(WINDOWS[p]),
                            series_uid=f"{cohort.patient_ids[i]}.{p}", description=f"phase {p} picks")
        sources[p] = PhaseSource(f"{cohort.patient_ids[i]}.{p}", f"phase {p}", ["training cohort cache"], 1.0)
    study = Study(volumes, sources, study_uid=cohort.patient_ids[i], patient_id=cohort.patient_ids[i])
    case = Case(study, case_id=cohort.patient_ids[i])
    for p, vol in volumes.items():
        case.set_picks(p, [vol.position_of(k) for k in range(K)])
    return case
