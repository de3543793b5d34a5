"""Findings fixtures: a synthetic four-phase case with a body the liver check accepts, and one real analysis of it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from liverview.study.case import Box, Case, Study

sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))
from bodies import make_volume  # noqa: E402  - a body the liver check accepts


def _make_case(user_box: bool = False) -> Case:
    hu = {"P": 55.0, "A": 70.0, "V": 110.0, "D": 90.0}
    study = Study(volumes={p: make_volume(phase_hu=v, seed=i) for i, (p, v) in enumerate(hu.items())},
                  study_uid="1.2.3", patient_id="TEST")
    case = Case(study)
    for p, vol in study.volumes.items():
        picks = [vol.position_of(k) for k in (4, 5, 6)]
        case.set_picks(p, picks)
        if user_box:
            for z in picks:
                case.add_box(Box(p, z, 35, 21, 53, 39, origin="user"))  # around the lesion
    return case


@pytest.fixture
def make_case():
    """Factory: make_case(user_box=False) -> a synthetic four-phase Case with three picks per phase."""
    return _make_case


@pytest.fixture(scope="session")
def analysed(tiny_bundle):
    """(case, Findings) of a real analysis with the tiny bundle; a user box on every pick."""
    import torch

    from liverview.engine.analyze import Engine

    torch.set_num_threads(1)
    case = _make_case(user_box=True)
    return case, Engine(tiny_bundle).analyze(case, apply=False)
