"""Shared fixtures for the training tests: a tiny hand-made cohort (no phantom needed)."""

from __future__ import annotations

import numpy as np
import pytest

from training.cohort import Cohort


def make_cohort(classes: list[str], matrix: int = 32, seed: int = 0, prefix: str = "T") -> Cohort:
    """Cohort of random slices; exam i's lesion box on phase c, pick k is shifted by (c + k) pixels."""
    rng = np.random.default_rng(seed)
    n = len(classes)
    slices = rng.integers(0, 256, size=(n, 4, 3, matrix, matrix), dtype=np.uint8)
    boxes = np.zeros((n, 4, 3, 4), dtype=np.float32)
    for c in range(4):
        for k in range(3):
            boxes[:, c, k] = (8 + c + k, 10 - k, 16 + c, 20 + k)
    return Cohort(
        [f"{prefix}{i:03d}" for i in range(n)],
        list(classes),
        ["" for _ in classes],
        slices,
        boxes,
        np.ones((n, 4), dtype=bool),
    )


@pytest.fixture
def tiny_cohort() -> Cohort:
    return make_cohort(["HH", "OBHT", "HB", "OMHT", "HH", "HB"])


@pytest.fixture
def cohort_factory():
    return make_cohort
