"""Findings: what the engine says about a case, per composite and per exam, as plain JSON-able data.

CAM maps: Grad-CAM is computed on the classifier input (the ROI square resized to the
model's input size), so that grid holds all the map's information. `to_dict()` stores each
CAM at that resolution as 8-bit values (zlib + base64) together with its square in
composite pixels; `cam_for_phase` rebuilds the map at any phase's slice resolution, and the
in-memory `Explanation.maps` hold the full-resolution per-phase maps the engine produced.
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from liverview.engine.roi import RoiSquare

SCHEMA = "liverview.findings"
SCHEMA_VERSION = 1
CLASSES = ("HH", "OBHT", "HB", "OMHT")
GROUP_OF = {"HH": "benign", "OBHT": "benign", "HB": "malignant", "OMHT": "malignant"}
ROI_SOURCES = ("user", "detected", "none")


def _r(x: float, nd: int = 6) -> float:
    return round(float(x), nd)


def _rect(b) -> list[float]:
    return [_r(v, 3) for v in b]


@dataclass
class PhaseBox:
    """A box on one phase's slice: pixel rect (col, row; pixel i spans [i, i+1)) and its corners in patient space (LPS mm)."""

    phase: str
    position: float
    slice_index: int
    box: tuple[float, float, float, float]
    patient: list[list[float]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": _r(self.position, 4),
            "slice_index": self.slice_index,
            "box": _rect(self.box),
            "patient": [[_r(c, 3) for c in corner] for corner in self.patient],
        }


@dataclass
class Detection:
    """One detector box on a composite, with its score, and where it lies on every phase used."""

    score: float
    box: tuple[float, float, float, float]  # composite pixel grid
    phases: dict[str, PhaseBox] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": _r(self.score),
            "box": _rect(self.box),
            "phases": {p: pb.to_dict() for p, pb in self.phases.items()},
        }


def encode_map(a: np.ndarray) -> dict[str, Any]:
    q = np.clip(np.rint(np.asarray(a, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return {
        "shape": list(q.shape),
        "encoding": "uint8/255,zlib,base64",
        "data": base64.b64encode(zlib.compress(q.tobytes(), 6)).decode("ascii"),
    }


def decode_map(d: dict[str, Any]) -> np.ndarray:
    raw = zlib.decompress(base64.b64decode(d["data"]))
    return np.frombuffer(raw, dtype=np.uint8).reshape(d["shape"]).astype(np.float32) / 255.0


def square_to_grid(cam: np.ndarray, square: RoiSquare, shape: tuple[int, int]) -> np.ndarray:
    """Place a CAM computed on the ROI square back onto an (H, W) composite grid (zero elsewhere)."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.float32)
    side = int(square.side)
    x0, y0 = int(square.x0), int(square.y0)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 <= sx0 or sy1 <= sy0:
        return out
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    if t.shape[-1] != side:
        t = F.interpolate(t, size=(side, side), mode="bilinear", align_corners=False)
    up = t[0, 0].numpy()
    out[sy0:sy1, sx0:sx1] = up[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return out


def grid_to_phase(grid_map: np.ndarray, phase_shape: tuple[int, int]) -> np.ndarray:
    """Resample a composite-grid map onto a phase's pixel grid (pixel edges aligned)."""
    if tuple(grid_map.shape) == tuple(phase_shape):
        return grid_map
    t = torch.from_numpy(np.ascontiguousarray(grid_map))[None, None]
    return F.interpolate(t, size=tuple(phase_shape), mode="bilinear", align_corners=False)[0, 0].numpy()


@dataclass
class Explanation:
    """Grad-CAM and per-phase attribution of one stage on one composite."""

    stage: str  # "stage1" or "stage2"
    model: str  # bundle model key: stage1, benign or malignant
    target_class: str
    roi_cam: np.ndarray  # (S, S) in [0, 1] on the classifier input
    square: RoiSquare
    attribution: dict[str, float]  # phase -> fraction of |gradient x input|, sums to 1
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # phase -> (rows, cols) of that phase's slice

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "target_class": self.target_class,
            "attribution": {p: _r(v) for p, v in self.attribution.items()},
            "cam": {
                "grid": "roi",
                "square": self.square.as_list(),
                "input_size": self.square.size,
                **encode_map(self.roi_cam),
            },
        }


@dataclass
class CompositeFinding:
    """Everything the engine found on one composite."""

    index: int
    picks: dict[str, int]
    positions: dict[str, float]
    slice_index: dict[str, int]
    phases_used: tuple[str, ...]
    shape: tuple[int, int]
    scale: dict[str, tuple[float, float]]
    detections: list[Detection]
    roi_source: str
    roi_box: tuple[float, float, float, float] | None
    roi_phases: dict[str, PhaseBox]
    p_malignant: float
    stage1_call: str
    stage2: dict[str, dict[str, float]]
    probabilities: dict[str, float]
    explanations: dict[str, Explanation] = field(default_factory=dict)

    @property
    def final_class(self) -> str:
        """Argmax of this composite's four class probabilities."""
        return max(CLASSES, key=lambda k: self.probabilities[k])

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "picks": dict(self.picks),
            "positions": {p: _r(v, 4) for p, v in self.positions.items()},
            "slice_index": dict(self.slice_index),
            "phases_used": list(self.phases_used),
            "shape": list(self.shape),
            "scale": {p: [_r(s) for s in v] for p, v in self.scale.items()},
            "detections": [d.to_dict() for d in self.detections],
            "roi": {
                "source": self.roi_source,
                "box": None if self.roi_box is None else _rect(self.roi_box),
                "phases": {p: pb.to_dict() for p, pb in self.roi_phases.items()},
            },
            "stage1": {"p_benign": _r(1.0 - self.p_malignant), "p_malignant": _r(self.p_malignant), "call": self.stage1_call},
            "stage2": {g: {c: _r(v) for c, v in d.items()} for g, d in self.stage2.items()},
            "probabilities": {c: _r(v) for c, v in self.probabilities.items()},
            "final_class": self.final_class,
            "explanations": {k: e.to_dict() for k, e in self.explanations.items()},
        }


@dataclass
class ExamFinding:
    """The exam-level result: the mean of the composite probabilities (as the paper averages)."""

    p_malignant: float
    threshold: float
    stage1_call: str
    stage2: dict[str, dict[str, float]]
    stage2_call: str  # argmax within the stage-1 branch
    probabilities: dict[str, float]
    final_class: str  # argmax of the four averaged class probabilities

    @property
    def consistent(self) -> bool:
        return GROUP_OF[self.final_class] == self.stage1_call

    def to_dict(self) -> dict[str, Any]:
        return {
            "p_benign": _r(1.0 - self.p_malignant),
            "p_malignant": _r(self.p_malignant),
            "threshold": _r(self.threshold),
            "stage1_call": self.stage1_call,
            "stage2": {g: {c: _r(v) for c, v in d.items()} for g, d in self.stage2.items()},
            "stage2_call": self.stage2_call,
            "probabilities": {c: _r(v) for c, v in self.probabilities.items()},
            "final_class": self.final_class,
            "final_group": GROUP_OF[self.final_class],
            "consistent_with_stage1": self.consistent,
        }


@dataclass
class Findings:
    """The engine's answer for one case; `to_dict()` is what `Case.set_findings` stores."""

    bundle: dict[str, Any]
    case_id: str
    created: str
    mode: str
    phases_used: tuple[str, ...]
    phases_missing: tuple[str, ...]
    composites: list[CompositeFinding]
    exam: ExamFinding
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "bundle": dict(self.bundle),
            "case_id": self.case_id,
            "created": self.created,
            "composite_mode": self.mode,
            "phases_used": list(self.phases_used),
            "phases_missing": list(self.phases_missing),
            "missing_phase_input": "zero channel" if self.phases_missing else None,
            "notes": list(self.notes),
            "composites": [c.to_dict() for c in self.composites],
            "exam": self.exam.to_dict(),
            "cam_storage": "per composite and stage: 8-bit map on the classifier input square (see findings.cam_for_phase)",
            "timings_s": {k: _r(v, 4) for k, v in self.timings.items()},
        }


def cam_for_phase(findings: dict[str, Any], composite: int, stage: str, phase: str, slice_shape: tuple[int, int]) -> np.ndarray:
    """Rebuild a stored CAM (from `Findings.to_dict()`) on one phase's slice grid (rows, cols)."""
    comp = findings["composites"][composite]
    cam = comp["explanations"][stage]["cam"]
    x0, y0, side = cam["square"]
    square = RoiSquare(float(x0), float(y0), float(side), int(cam["input_size"]))
    grid = square_to_grid(decode_map(cam), square, tuple(comp["shape"]))
    return grid_to_phase(grid, tuple(slice_shape))
