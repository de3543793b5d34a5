"""The findings dataclasses (per composite and per exam) with `to_dict()` / `from_dict()` for the JSON the engine writes."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from liverview.findings.cam import RoiSquare, decode_map, encode_map
from liverview.findings.vocabulary import CLASSES, GROUP_OF

SCHEMA = "liverview.findings"
SCHEMA_VERSION = 2  # 2: computed_from (what the analysis was computed from)
READABLE_VERSIONS = (1, 2)
ROI_SOURCES = ("user", "detected", "none")
CAM_STORAGE = "per composite and stage: 8-bit map on the classifier input square (see liverview.findings.cam_for_phase)"


class FindingsError(ValueError):
    """A findings document this liverview cannot read; the message names the field."""


def _r(x: float, nd: int = 6) -> float:
    return round(float(x), nd)


def _rect(b) -> list[float]:
    return [_r(v, 3) for v in b]


def _box(b) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in b)
    return (x0, y0, x1, y1)


def _probs(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items()}


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

    @classmethod
    def from_dict(cls, phase: str, d: dict[str, Any]) -> PhaseBox:
        return cls(phase, float(d["position"]), int(d["slice_index"]), _box(d["box"]),
                   [[float(c) for c in corner] for corner in d["patient"]])


def _phase_boxes(d: dict[str, Any]) -> dict[str, PhaseBox]:
    return {p: PhaseBox.from_dict(p, pb) for p, pb in d.items()}


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detection:
        return cls(float(d["score"]), _box(d["box"]), _phase_boxes(d.get("phases", {})))


@dataclass
class Explanation:
    """Grad-CAM and per-phase attribution of one stage on one composite."""

    stage: str  # "stage1" or "stage2"
    model: str  # bundle model key: stage1, benign or malignant
    target_class: str
    roi_cam: np.ndarray  # (S, S) in [0, 1] on the classifier input
    square: RoiSquare
    attribution: dict[str, float]  # phase -> fraction of |gradient x input|, sums to 1
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # phase -> (rows, cols) of that phase's slice; memory only

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

    @classmethod
    def from_dict(cls, stage: str, d: dict[str, Any]) -> Explanation:
        cam = d["cam"]
        x0, y0, side = cam["square"]
        square = RoiSquare(float(x0), float(y0), float(side), int(cam["input_size"]))
        return cls(stage, str(d["model"]), str(d["target_class"]), decode_map(cam), square, _probs(d["attribution"]))


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
        pm = _r(self.p_malignant)  # p_benign from the rounded value, so a read-back document writes the same
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
            "stage1": {"p_benign": _r(1.0 - pm), "p_malignant": pm, "call": self.stage1_call},
            "stage2": {g: {c: _r(v) for c, v in d.items()} for g, d in self.stage2.items()},
            "probabilities": {c: _r(v) for c, v in self.probabilities.items()},
            "final_class": self.final_class,
            "explanations": {k: e.to_dict() for k, e in self.explanations.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CompositeFinding:
        roi = d["roi"]
        return cls(
            index=int(d["index"]),
            picks={p: int(v) for p, v in d["picks"].items()},
            positions={p: float(v) for p, v in d["positions"].items()},
            slice_index={p: int(v) for p, v in d["slice_index"].items()},
            phases_used=tuple(d["phases_used"]),
            shape=(int(d["shape"][0]), int(d["shape"][1])),
            scale={p: (float(v[0]), float(v[1])) for p, v in d["scale"].items()},
            detections=[Detection.from_dict(x) for x in d["detections"]],
            roi_source=str(roi["source"]),
            roi_box=None if roi.get("box") is None else _box(roi["box"]),
            roi_phases=_phase_boxes(roi.get("phases", {})),
            p_malignant=float(d["stage1"]["p_malignant"]),
            stage1_call=str(d["stage1"]["call"]),
            stage2={g: _probs(v) for g, v in d["stage2"].items()},
            probabilities=_probs(d["probabilities"]),
            explanations={k: Explanation.from_dict(k, e) for k, e in d.get("explanations", {}).items()},
        )


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
        pm = _r(self.p_malignant)
        return {
            "p_benign": _r(1.0 - pm),
            "p_malignant": pm,
            "threshold": _r(self.threshold),
            "stage1_call": self.stage1_call,
            "stage2": {g: {c: _r(v) for c, v in d.items()} for g, d in self.stage2.items()},
            "stage2_call": self.stage2_call,
            "probabilities": {c: _r(v) for c, v in self.probabilities.items()},
            "final_class": self.final_class,
            "final_group": GROUP_OF[self.final_class],
            "consistent_with_stage1": self.consistent,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExamFinding:
        return cls(
            p_malignant=float(d["p_malignant"]),
            threshold=float(d["threshold"]),
            stage1_call=str(d["stage1_call"]),
            stage2={g: _probs(v) for g, v in d["stage2"].items()},
            stage2_call=str(d["stage2_call"]),
            probabilities=_probs(d["probabilities"]),
            final_class=str(d["final_class"]),
        )


@dataclass
class Findings:
    """The engine's answer for one case; `to_dict()` is what `Case.set_findings` stores.

    `computed_from` records what the analysis was computed from: {"digest", "phases",
    "picks", "boxes"} as `liverview.study.inputs` defines them (None when read from a
    version-1 document, which did not record it).
    """

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
    computed_from: dict[str, Any] | None = None

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
            "cam_storage": CAM_STORAGE,
            "timings_s": {k: _r(v, 4) for k, v in self.timings.items()},
            "computed_from": copy.deepcopy(self.computed_from),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Findings:
        """Read a document `to_dict()` wrote (schema versions 1 and 2); in-memory CAM maps come back empty."""
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            raise FindingsError(f"schema: expected {SCHEMA!r}, got {d.get('schema') if isinstance(d, dict) else d!r}")
        version = d.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise FindingsError(f"schema_version: {version!r} is not one this liverview reads {list(READABLE_VERSIONS)}")
        try:
            return cls(
                bundle=dict(d["bundle"]),
                case_id=str(d["case_id"]),
                created=str(d["created"]),
                mode=str(d["composite_mode"]),
                phases_used=tuple(d["phases_used"]),
                phases_missing=tuple(d["phases_missing"]),
                composites=[CompositeFinding.from_dict(c) for c in d["composites"]],
                exam=ExamFinding.from_dict(d["exam"]),
                notes=[str(n) for n in d.get("notes", [])],
                timings={k: float(v) for k, v in d.get("timings_s", {}).items()},
                computed_from=copy.deepcopy(d.get("computed_from")),
            )
        except KeyError as exc:
            raise FindingsError(f"{exc.args[0]}: missing") from None
