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


def make_lesion_cohort(n: int, matrix: int = 64, seed: int = 0, prefix: str = "L") -> Cohort:
    """Exams with one bright square lesion per slice whose brightness depends on the class:
    enough signal for a few training steps to move, no phantom needed."""
    rng = np.random.default_rng(seed)
    classes = (["HH", "OBHT", "HB", "OMHT"] * n)[:n]
    level = {"HH": 100, "OBHT": 140, "HB": 180, "OMHT": 230}
    slices = (rng.random((n, 4, 3, matrix, matrix)) * 60).astype(np.uint8)
    boxes = np.zeros((n, 4, 3, 4), dtype=np.float32)
    for i, c in enumerate(classes):
        x, y = rng.integers(matrix // 8, matrix // 2, 2)
        s = int(rng.integers(matrix // 6, matrix // 3))
        slices[i, :, :, y : y + s, x : x + s] = level[c]
        boxes[i] = (x, y, x + s, y + s)
    return Cohort([f"{prefix}{i:03d}" for i in range(n)], classes, ["" for _ in classes], slices, boxes,
                  np.ones((n, 4), dtype=bool))


@pytest.fixture(scope="session")
def lesion_cohort_factory():
    return make_lesion_cohort
