"""Synthetic abdomens for tests: air, fat, a liver on the patient's right and a round lesion, in HU with LPS geometry."""

from __future__ import annotations

import numpy as np

from liverview.study.volume import Volume


def make_volume(n=12, h=64, w=80, z0=0.0, dz=2.5, spacing=3.0, lesion_hu=40.0, phase_hu=110.0, seed=0):
    """A child's abdomen (air, fat, a liver on the patient's right, image left) with a round hypodense lesion in
    slices 4..8, HU, LPS geometry; 3 mm pixels make it body-sized, so the liver check sees a liver."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    px = np.full((n, h, w), -1000.0, dtype=np.float32)
    px[:, ((yy - h / 2) / (h / 2 - 2)) ** 2 + ((xx - w / 2) / (w / 2 - 2)) ** 2 <= 1] = -100.0
    px[:, ((yy - h * 0.45) / (h * 0.36)) ** 2 + ((xx - w * 0.4) / (w * 0.34)) ** 2 <= 1] = phase_hu
    disc = (yy - 30) ** 2 + (xx - 44) ** 2 <= 9**2
    for k in range(4, 9):
        px[k][disc] = lesion_hu
    px += rng.normal(0, 8, px.shape).astype(np.float32)
    affine = np.eye(4)
    affine[0, 0] = spacing
    affine[1, 1] = spacing
    affine[2, 2] = dz
    affine[:3, 3] = (-20.0, -30.0, z0)
    return Volume(px, affine)
