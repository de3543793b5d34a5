"""Tissue attenuation per contrast phase (the table in docs/method.md) and its per-case variation."""

from __future__ import annotations

import numpy as np

from liverview.study.phases import PHASES

# HU in phases P, A, V, D (docs/method.md, section 5).
TABLE: dict[str, tuple[float, float, float, float]] = {
    "fat": (-100, -100, -100, -100),
    "muscle": (50, 60, 65, 60),
    "liver": (55, 70, 110, 90),
    "aorta": (40, 300, 160, 110),
    "portal_vein": (40, 120, 170, 120),
    "spleen": (45, 120, 120, 100),
    "kidney_cortex": (35, 180, 170, 120),
    "bone": (500, 500, 500, 500),
}

# Tissues the table does not list, set to values of the same kinetics (not checked by tests).
EXTRA: dict[str, tuple[float, float, float, float]] = {
    "hepatic_vein": (40, 70, 150, 115),
    "ivc": (40, 90, 150, 115),
    "kidney_medulla": (30, 70, 150, 140),
    "bowel": (35, 55, 75, 65),
    "stomach_wall": (40, 85, 95, 80),
    "heart_blood": (40, 260, 155, 110),
    "myocardium": (45, 110, 95, 80),
    "skin": (30, 35, 40, 40),
}

VARIATION = 0.15  # every table value varies by at most +-15 % per case


def table_value(tissue: str, phase: str) -> float:
    row = TABLE.get(tissue) or EXTRA[tissue]
    return float(row[PHASES.index(phase)])


def draw_tissues(rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """Per-case HU of every tissue and phase: the table value times a factor in [0.85, 1.15].

    The factor is one per tissue (dose, cardiac output) times a small per-phase jitter, so
    the kinetics keep their order while each value varies by up to 15 %.
    """
    out: dict[str, dict[str, float]] = {}
    for name, row in {**TABLE, **EXTRA}.items():
        base = rng.uniform(1 - 0.7 * VARIATION, 1 + 0.7 * VARIATION)
        vals = {}
        for p, v in zip(PHASES, row):
            f = float(np.clip(base * rng.uniform(0.95, 1.05), 1 - VARIATION, 1 + VARIATION))
            vals[p] = float(v) * f
        out[name] = vals
    return out
