"""Grad-CAM maps in findings: the ROI square they live on, the 8-bit codec, and numpy bilinear resampling onto composite and phase grids."""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

ENCODING = "uint8/255,zlib,base64"


@dataclass(frozen=True)
class RoiSquare:
    """The whole-pixel square (composite pixel coordinates; x0/y0 may be negative) resized to the input."""

    x0: float
    y0: float
    side: float
    size: int  # classifier input size in pixels

    def to_input(self, x: float, y: float) -> tuple[float, float]:
        k = self.size / self.side
        return ((x - self.x0) * k, (y - self.y0) * k)

    def to_composite(self, u: float, v: float) -> tuple[float, float]:
        k = self.side / self.size
        return (self.x0 + u * k, self.y0 + v * k)

    def as_list(self) -> list[float]:
        return [round(self.x0, 3), round(self.y0, 3), round(self.side, 3)]


def encode_map(a: np.ndarray) -> dict[str, Any]:
    """A [0, 1] map as {shape, encoding, data}: 8-bit values, zlib-compressed, base64 text."""
    q = np.clip(np.rint(np.asarray(a, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return {
        "shape": list(q.shape),
        "encoding": ENCODING,
        "data": base64.b64encode(zlib.compress(q.tobytes(), 6)).decode("ascii"),
    }


def decode_map(d: dict[str, Any]) -> np.ndarray:
    """The map of an encoded CAM as float32 in [0, 1]."""
    if d.get("encoding") != ENCODING:
        raise ValueError(f"unknown CAM encoding {d.get('encoding')!r}")
    raw = zlib.decompress(base64.b64decode(d["data"]))
    return np.frombuffer(raw, dtype=np.uint8).reshape(d["shape"]).astype(np.float32) / 255.0


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # half-pixel centres, source index clamped at 0: torch's bilinear with align_corners=False
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1.0)
    i0 = np.floor(x).astype(np.intp)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (x - i0).astype(np.float32)


def resize(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D map to (rows, cols), pixel edges aligned (no antialiasing)."""
    a = np.asarray(a, dtype=np.float32)
    h, w = (int(v) for v in shape)
    i0, i1, f = _axis(a.shape[0], h)
    rows = a[i0] * (1.0 - f)[:, None] + a[i1] * f[:, None]
    j0, j1, g = _axis(a.shape[1], w)
    return rows[:, j0] * (1.0 - g)[None, :] + rows[:, j1] * g[None, :]


def square_to_grid(cam: np.ndarray, square: RoiSquare, shape: tuple[int, int]) -> np.ndarray:
    """Place a CAM computed on the ROI square back onto an (H, W) composite grid (zero elsewhere)."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.float32)
    side = int(square.side)
    x0, y0 = int(square.x0), int(square.y0)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return out
    up = np.asarray(cam, dtype=np.float32)
    if up.shape != (side, side):
        up = resize(up, (side, side))
    out[sy0:sy1, sx0:sx1] = up[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return out


def grid_to_phase(grid_map: np.ndarray, phase_shape: tuple[int, int]) -> np.ndarray:
    """Resample a composite-grid map onto a phase's pixel grid (pixel edges aligned)."""
    if tuple(grid_map.shape) == tuple(phase_shape):
        return grid_map
    return resize(grid_map, tuple(phase_shape))


def cam_for_phase(findings: dict[str, Any], composite: int, stage: str, phase: str, slice_shape: tuple[int, int]) -> np.ndarray:
    """Rebuild a stored CAM (from `Findings.to_dict()`) on one phase's slice grid (rows, cols).

    The composite grid maps onto every phase's slice by its pixel edges, so `slice_shape`
    alone decides the resampling; a phase the composite did not use is refused.
    """
    comp = findings["composites"][composite]
    if phase not in comp["phases_used"]:
        raise KeyError(f"composite {composite} does not use phase {phase!r}")
    cam = comp["explanations"][stage]["cam"]
    x0, y0, side = cam["square"]
    square = RoiSquare(float(x0), float(y0), float(side), int(cam["input_size"]))
    grid = square_to_grid(decode_map(cam), square, tuple(comp["shape"]))
    return grid_to_phase(grid, tuple(slice_shape))
