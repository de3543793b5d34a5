"""The "traditional" augmentation arm: random flip, rotation and scaling of a (C, H, W) image."""

from __future__ import annotations

import cv2
import numpy as np

ARMS = ("none", "traditional", "pkcp-mixup")


def check_arm(name: str) -> str:
    if name not in ARMS:
        raise ValueError(f"unknown augmentation {name!r}: expected one of {', '.join(ARMS)}")
    return name


def traditional(
    image: np.ndarray,
    rng: np.random.Generator,
    flip_p: float = 0.5,
    degrees: float = 15.0,
    scale: tuple[float, float] = (0.9, 1.1),
) -> np.ndarray:
    """Flip left-right with probability `flip_p`, rotate by U(-degrees, degrees), scale by U(scale).

    Works on any channel count (channels are warped one by one when more than 4); the
    border is zero, like the masked background of an ROI crop.
    """
    c, h, w = image.shape
    out = image[:, :, ::-1] if rng.random() < flip_p else image
    angle = float(rng.uniform(-degrees, degrees))
    s = float(rng.uniform(*scale))
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, s)
    hwc = np.ascontiguousarray(np.moveaxis(out, 0, -1), dtype=np.float32)
    if c <= 4:
        warped = cv2.warpAffine(hwc, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0.0, 0.0, 0.0, 0.0))
        warped = warped.reshape(h, w, c)
    else:
        warped = np.stack(
            [cv2.warpAffine(hwc[..., i], m, (w, h), flags=cv2.INTER_LINEAR, borderValue=0.0) for i in range(c)], -1
        )
    return np.ascontiguousarray(np.moveaxis(warped, -1, 0), dtype=np.float32)
