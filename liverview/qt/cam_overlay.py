"""Grad-CAM overlays from stored findings: decode each map once, colour it, place it on every phase's slice.

Decoding and resampling come from liverview.findings.cam (numpy only: 8-bit map on the
classifier's ROI square, zlib + base64), so the GUI process never imports torch.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QImage

from liverview.findings.cam import decode_map, resize

COLORMAPS = ("turbo", "inferno", "viridis", "CET-R4")
STAGES = ("stage1", "stage2")
STAGE_LABELS = {"stage1": "stage 1: benign vs malignant", "stage2": "stage 2: subtype"}
MAX_SIDE = 512  # CAMs are upsampled (bilinear, once) to their size on the slice, at most this
FLOOR = 0.15  # CAM values below this are drawn fully transparent


def upsample(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square map to size x size, pixel edges aligned."""
    return resize(a, (size, size))


def colorize(cam: np.ndarray, cmap: str) -> np.ndarray:
    """RGBA uint8 of a [0, 1] map: colour from the colormap, alpha rising with the value from
    FLOOR (transparent below: the weakest activations would only veil the anatomy)."""
    lut = pg.colormap.get(cmap).getLookupTable(0.0, 1.0, 256, alpha=False)
    idx = np.clip(np.rint(cam * 255.0), 0, 255).astype(np.uint8)
    rgba = np.empty(cam.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = lut[idx]
    ramp = np.clip((cam - FLOOR) / (1.0 - FLOOR), 0.0, 1.0)
    rgba[..., 3] = np.rint(np.sqrt(ramp) * 255.0).astype(np.uint8)
    return rgba


def crop_transparent(rgba: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The smallest part of an RGBA image holding every visible pixel, and its (x0, y0, x1, y1)
    in the image; drawing less area is what makes the overlay cheap per frame."""
    visible = rgba[..., 3] > 0
    if not visible.any():
        return rgba[:1, :1], (0, 0, 1, 1)
    rows = np.flatnonzero(visible.any(axis=1))
    cols = np.flatnonzero(visible.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return rgba[y0:y1, x0:x1], (x0, y0, x1, y1)


def to_qimage(rgba: np.ndarray, opacity: float = 1.0) -> QImage:
    """A premultiplied ARGB32 QImage (the format Qt blends fastest) owning its pixels.

    The overlay's opacity is baked into the pixels: a painter opacity would cost Qt a
    slower blend on every frame.
    """
    a = np.rint(rgba[..., 3] * float(np.clip(opacity, 0.0, 1.0))).astype(np.uint16)
    premult = [((rgba[..., c] * a + 127) // 255).astype(np.uint8) for c in range(3)]
    # ARGB32 is one 32-bit word per pixel: B, G, R, A in memory on little-endian machines
    order = [premult[2], premult[1], premult[0], a.astype(np.uint8)]
    if sys.byteorder == "big":
        order = order[::-1]
    bgra = np.ascontiguousarray(np.stack(order, axis=-1))
    h, w = bgra.shape[:2]
    return QImage(bgra.data, w, h, 4 * w, QImage.Format.Format_ARGB32_Premultiplied).copy()


class CamSource:
    """Answers "which CAM goes on phase p at slice position z" for the GUI, with a cache.

    A CAM belongs to a composite, i.e. to one picked slice per phase; a slice shows the CAM
    of the composite that uses it (the depth-consistent one when several do).
    """

    def __init__(self, findings: dict[str, Any] | None, stage: str = "stage1", cmap: str = "turbo",
                 slice_index: Callable[[str, float], int | None] | None = None, opacity: float = 0.55) -> None:
        self.findings = findings or {}
        self.opacity = float(opacity)
        self.slice_index = slice_index
        self.stage = stage
        self.cmap = cmap
        self._maps: dict[tuple[int, str], np.ndarray | None] = {}
        self._rgba: dict[tuple, tuple[QImage, tuple[int, int, int, int], int]] = {}
        self._index: dict[tuple, tuple[int, bool]] | None = None  # (phase, slice) -> (composite, depth-consistent)

    @property
    def available(self) -> bool:
        return any(c.get("explanations") for c in self.findings.get("composites", []))

    def stages(self) -> list[str]:
        found = set()
        for c in self.findings.get("composites", []):
            found.update(c.get("explanations", {}))
        return [s for s in STAGES if s in found]

    def set_stage(self, stage: str) -> None:
        self.stage = stage

    def set_opacity(self, opacity: float) -> None:
        if abs(opacity - self.opacity) > 1e-6:
            self.opacity = float(opacity)
            self._rgba.clear()

    def set_cmap(self, cmap: str) -> None:
        if cmap != self.cmap:
            self.cmap = cmap
            self._rgba.clear()

    def _slice(self, phase: str, position: float):
        """The slice a position falls on: its index when volumes are known, else the rounded mm."""
        if self.slice_index is not None:
            return self.slice_index(phase, position)
        return round(float(position), 2)

    def composite_at(self, phase: str, position: float) -> int | None:
        if self._index is None:
            self._index = {}
            for i, c in enumerate(self.findings.get("composites", [])):
                depth = len(set(c.get("picks", {}).values())) == 1
                for p, pos in c.get("positions", {}).items():
                    key = (p, self._slice(p, pos))
                    if key not in self._index or (depth and not self._index[key][1]):
                        self._index[key] = (i, depth)
        found = self._index.get((phase, self._slice(phase, position)))
        return found[0] if found is not None else None

    def _map(self, index: int) -> np.ndarray | None:
        key = (index, self.stage)
        if key not in self._maps:
            comp = self.findings["composites"][index]
            exp = comp.get("explanations", {}).get(self.stage)
            if not exp or "cam" not in exp:
                self._maps[key] = None
            else:
                cam = decode_map(exp["cam"])
                side = float(exp["cam"]["square"][2])
                target = int(min(MAX_SIDE, max(cam.shape[0], round(side))))
                if target != cam.shape[0]:
                    cam = upsample(cam, target)
                self._maps[key] = np.clip(cam, 0.0, 1.0)
        return self._maps[key]

    def lookup(self, phase: str, position: float):
        """(cache key, QImage, (x0, y0, x1, y1) in the phase's pixels) or None."""
        if not self.findings:
            return None
        index = self.composite_at(phase, position)
        if index is None:
            return None
        cam = self._map(index)
        if cam is None:
            return None
        key = (index, self.stage, self.cmap, round(self.opacity, 3))
        cached = self._rgba.get(key)
        if cached is None:
            part, crop = crop_transparent(colorize(cam, self.cmap))
            cached = self._rgba[key] = (to_qimage(part, self.opacity), crop, cam.shape[0])
        image, (cx0, cy0, cx1, cy1), n = cached
        comp = self.findings["composites"][index]
        x0, y0, side = (float(v) for v in comp["explanations"][self.stage]["cam"]["square"])
        sx, sy = comp.get("scale", {}).get(phase, (1.0, 1.0))
        k = side / n  # composite pixels per CAM pixel
        return key, image, ((x0 + cx0 * k) / sx, (y0 + cy0 * k) / sy, (x0 + cx1 * k) / sx, (y0 + cy1 * k) / sy)

    def attribution(self) -> dict[str, dict[str, float]]:
        """Per stage, each phase's share of the attribution averaged over the composites."""
        out: dict[str, dict[str, list[float]]] = {}
        for c in self.findings.get("composites", []):
            for stage, exp in c.get("explanations", {}).items():
                for p, v in exp.get("attribution", {}).items():
                    out.setdefault(stage, {}).setdefault(p, []).append(float(v))
        return {s: {p: float(np.mean(v)) for p, v in d.items()} for s, d in out.items()}
