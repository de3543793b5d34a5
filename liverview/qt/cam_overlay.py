"""Grad-CAM overlays from stored findings: decode each map once, colour it, place it on every phase's slice.

Decoding uses numpy only (the format of liverview.engine.findings: 8-bit map on the
classifier's ROI square, zlib + base64), so the GUI process never imports torch.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import numpy as np
import pyqtgraph as pg

COLORMAPS = ("turbo", "inferno", "viridis", "CET-R4")
STAGES = ("stage1", "stage2")
STAGE_LABELS = {"stage1": "stage 1: benign vs malignant", "stage2": "stage 2: subtype"}
MAX_SIDE = 384  # upsampled CAMs are at most this many pixels a side


def decode_map(d: dict[str, Any]) -> np.ndarray:
    """The map of an encoded CAM as float32 in [0, 1]."""
    if d.get("encoding") != "uint8/255,zlib,base64":
        raise ValueError(f"unknown CAM encoding {d.get('encoding')!r}")
    raw = zlib.decompress(base64.b64decode(d["data"]))
    return np.frombuffer(raw, dtype=np.uint8).reshape(d["shape"]).astype(np.float32) / 255.0


def upsample(a: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of a square map to size x size, pixel edges aligned (numpy only)."""
    n = a.shape[0]
    x = np.clip((np.arange(size) + 0.5) * n / size - 0.5, 0.0, n - 1.0)
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    f = (x - i0).astype(np.float32)
    rows = a[i0] * (1.0 - f)[:, None] + a[i1] * f[:, None]
    return rows[:, i0] * (1.0 - f)[None, :] + rows[:, i1] * f[None, :]


def colorize(cam: np.ndarray, cmap: str) -> np.ndarray:
    """RGBA uint8 of a [0, 1] map: colour from the colormap, alpha rising with the value."""
    lut = pg.colormap.get(cmap).getLookupTable(0.0, 1.0, 256, alpha=False)
    idx = np.clip(np.rint(cam * 255.0), 0, 255).astype(np.uint8)
    rgba = np.empty(cam.shape + (4,), dtype=np.uint8)
    rgba[..., :3] = lut[idx]
    rgba[..., 3] = np.clip(np.sqrt(np.clip(cam, 0.0, 1.0)) * 255.0, 0, 255).astype(np.uint8)
    return rgba


class CamSource:
    """Answers "which CAM goes on phase p at slice position z" for the GUI, with a cache.

    A CAM belongs to a composite, i.e. to one picked slice per phase; a slice shows the CAM
    of the composite that uses it (the depth-consistent one when several do).
    """

    def __init__(self, findings: dict[str, Any] | None, stage: str = "stage1", cmap: str = "turbo") -> None:
        self.findings = findings or {}
        self.stage = stage
        self.cmap = cmap
        self._maps: dict[tuple[int, str], np.ndarray | None] = {}
        self._rgba: dict[tuple, np.ndarray] = {}

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

    def set_cmap(self, cmap: str) -> None:
        if cmap != self.cmap:
            self.cmap = cmap
            self._rgba.clear()

    def composite_at(self, phase: str, position: float) -> int | None:
        best = None
        for i, c in enumerate(self.findings.get("composites", [])):
            pos = c.get("positions", {}).get(phase)
            if pos is None or abs(pos - position) > 1e-2:
                continue
            depth = len(set(c.get("picks", {}).values())) == 1
            if best is None or depth:
                best = i
                if depth:
                    break
        return best

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
        """(cache key, RGBA image, (x0, y0, x1, y1) in the phase's pixels) or None."""
        if not self.findings:
            return None
        index = self.composite_at(phase, position)
        if index is None:
            return None
        cam = self._map(index)
        if cam is None:
            return None
        key = (index, self.stage, self.cmap)
        rgba = self._rgba.get(key)
        if rgba is None:
            rgba = self._rgba[key] = colorize(cam, self.cmap)
        comp = self.findings["composites"][index]
        x0, y0, side = (float(v) for v in comp["explanations"][self.stage]["cam"]["square"])
        sx, sy = comp.get("scale", {}).get(phase, (1.0, 1.0))
        return key, rgba, (x0 / sx, y0 / sy, (x0 + side) / sx, (y0 + side) / sy)

    def attribution(self) -> dict[str, dict[str, float]]:
        """Per stage, each phase's share of the attribution averaged over the composites."""
        out: dict[str, dict[str, list[float]]] = {}
        for c in self.findings.get("composites", []):
            for stage, exp in c.get("explanations", {}).items():
                for p, v in exp.get("attribution", {}).items():
                    out.setdefault(stage, {}).setdefault(p, []).append(float(v))
        return {s: {p: float(np.mean(v)) for p, v in d.items()} for s, d in out.items()}
