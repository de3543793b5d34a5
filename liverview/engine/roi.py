"""The classifier input: mask a composite outside its lesion box (+ margin), crop a square around it, resize.

Engine and training both call `classifier_input`, so a model sees at run time exactly what
it saw in training.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from liverview.findings.cam import RoiSquare

Rect = tuple[float, float, float, float]


def expand_box(box: Rect, margin: float, shape: tuple[int, int] | None = None) -> Rect:
    """Grow a box by `margin` x its width (left and right) and x its height (top and bottom),
    clipped to an image of `shape` (H, W) when given."""
    x0, y0, x1, y1 = (float(v) for v in box)
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    x0, y0, x1, y1 = x0 - mx, y0 - my, x1 + mx, y1 + my
    if shape is not None:
        h, w = shape
        x0, x1 = max(0.0, x0), min(float(w), x1)
        y0, y1 = max(0.0, y0), min(float(h), y1)
    return (x0, y0, x1, y1)


def mask_outside_box(image: np.ndarray, box: Rect | None, margin: float) -> np.ndarray:
    """A copy of a (C, H, W) image with every pixel outside box + margin set to zero.

    Pixel (col c, row r) covers [c, c+1) x [r, r+1); a pixel is kept when its centre lies
    inside the expanded box. `box` None keeps the whole image.
    """
    image = np.asarray(image)
    if box is None:
        return image.copy()
    h, w = image.shape[-2:]
    x0, y0, x1, y1 = expand_box(box, margin, (h, w))
    cols = np.arange(w) + 0.5
    rows = np.arange(h) + 0.5
    keep = ((rows >= y0) & (rows <= y1))[:, None] & ((cols >= x0) & (cols <= x1))[None, :]
    return np.where(keep[None], image, np.zeros((), dtype=image.dtype))


def roi_square(box: Rect | None, margin: float, shape: tuple[int, int], size: int) -> RoiSquare:
    """The square centred on box + margin (its longer side); the whole image (padded square) for None."""
    h, w = shape
    if box is None:
        x0, y0, x1, y1 = 0.0, 0.0, float(w), float(h)
    else:
        x0, y0, x1, y1 = expand_box(box, margin, (h, w))
    side = int(np.ceil(max(x1 - x0, y1 - y0, 1.0)))  # whole pixels, so the crop is exact
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return RoiSquare(float(np.floor(cx - side / 2.0)), float(np.floor(cy - side / 2.0)), float(side), int(size))


def crop_resize(image: np.ndarray, square: RoiSquare) -> torch.Tensor:
    """Crop `square` out of a (C, H, W) image (zero outside the image) and resize it to
    (C, size, size) with bilinear, antialiased interpolation."""
    image = np.asarray(image, dtype=np.float32)
    c, h, w = image.shape
    x0, y0, side = int(square.x0), int(square.y0), int(square.side)
    x1, y1 = x0 + side, y0 + side
    out = np.zeros((c, y1 - y0, x1 - x0), dtype=np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[:, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
    t = torch.from_numpy(out)[None]
    if t.shape[-2:] != (square.size, square.size):
        t = F.interpolate(t, size=(square.size, square.size), mode="bilinear", align_corners=False, antialias=True)
    return t[0]


def normalise(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel of a (..., C, H, W) tensor."""
    m = torch.as_tensor(mean, dtype=x.dtype).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype).view(-1, 1, 1)
    return (x - m) / s


def classifier_input(
    image: np.ndarray,
    box: Rect | None,
    margin: float,
    size: int,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[torch.Tensor, RoiSquare]:
    """Mask outside box + margin, crop the square around it, resize to `size`, normalise.

    Returns the (C, size, size) float32 tensor and the square it came from (to map CAMs back).
    With mean/std None the tensor stays in [0, 1].
    """
    image = np.asarray(image, dtype=np.float32)
    square = roi_square(box, margin, image.shape[-2:], size)
    x = crop_resize(mask_outside_box(image, box, margin), square)
    if mean is not None and std is not None:
        x = normalise(x, mean, std)
    return x, square
