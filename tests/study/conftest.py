"""Small synthetic studies for the data-model tests."""

import numpy as np
import pytest

from liverview.study.case import Case, Study
from liverview.study.volume import Volume


def make_volume(n=10, rows=32, cols=40, z0=-50.0, dz=2.5, value=0.0, seed=0):
    rng = np.random.default_rng(seed)
    px = (value + rng.normal(0, 1, (n, rows, cols))).astype(np.float32)
    affine = np.diag([0.7, 0.7, dz, 1.0])
    affine[:3, 3] = (-10.0, -20.0, z0)
    return Volume(px, affine, series_uid=f"1.2.{seed}")


@pytest.fixture
def study():
    values = {"P": 40.0, "A": 100.0, "V": 150.0, "D": 120.0}
    # Phases have different slice counts and origins: they are matched by position.
    return Study(
        volumes={
            p: make_volume(n=10 + i, z0=-50.0 - 2.5 * i, value=v, seed=i)
            for i, (p, v) in enumerate(values.items())
        },
        study_uid="1.2.3",
    )


@pytest.fixture
def case(study):
    return Case(study)
