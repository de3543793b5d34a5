"""Study (phase -> volume) and Case (picks, boxes, findings, reads) with change events and undo."""

from __future__ import annotations

import copy
import math
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from liverview.study.events import Events
from liverview.study.inputs import inputs_digest
from liverview.study.phases import PHASES, check_phase
from liverview.study.volume import Volume

ORIGINS = ("user", "ai", "truth")
MAX_PICKS = 3
MAX_BOXES = 2000  # far more than a reader draws or the detector proposes; a case file with more is refused
BOX_FIELDS = ("phase", "position", "x0", "y0", "x1", "y1", "origin", "author", "score", "accepted", "label", "id", "patient")


def finite(value: Any, name: str) -> float:
    """`value` as a float, or ValueError naming `name` when it is not a finite number (bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name}: expected a number, got {_kind(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise ValueError(f"{name}: {short(value)} is not a finite number") from None
    if not math.isfinite(out):
        raise ValueError(f"{name}: {out} is not a finite number")
    return out


def short(value: Any, limit: int = 40) -> str:
    """repr(value) cut to `limit` characters, for messages about values read from a file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    """A short name for a value's JSON type, for messages that must not print the value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, (int, float)):
        return "a number"
    return type(value).__name__


GUESSED_BELOW = 0.5  # phase confidence under this: guessed (series order alone gives 0.3-0.4)


@dataclass
class PhaseSource:
    """How a phase was identified: the series, the evidence, and whether a person set it."""

    series_uid: str
    description: str = ""
    evidence: list[str] = field(default_factory=list)
    confidence: float = 0.0
    overridden: bool = False

    @property
    def guessed(self) -> bool:
        """The assignment rests on too little evidence to be trusted without a person confirming it."""
        return not self.overridden and self.confidence < GUESSED_BELOW


@dataclass(eq=False)
class Study:
    """The volumes of one exam keyed by phase code, with how each phase was found."""

    volumes: dict[str, Volume] = field(default_factory=dict)
    sources: dict[str, PhaseSource] = field(default_factory=dict)
    study_uid: str = ""
    patient_id: str = ""
    path: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def phases(self) -> list[str]:
        return [p for p in PHASES if p in self.volumes]

    @property
    def intensity(self) -> str:
        kinds = {v.intensity for v in self.volumes.values()}
        return kinds.pop() if len(kinds) == 1 else "mixed"


@dataclass
class Box:
    """A lesion rectangle on one slice of one phase, in pixel (col, row) coordinates.

    `patient` holds the two corners in patient space (LPS mm) when the volume is known.
    Coordinates must be finite; corners are sorted, and edges left of or above the image
    (a LabelMe rectangle drawn past the border) are clamped to 0, so that every box a case
    holds is one a case file may contain.
    """

    phase: str
    position: float
    x0: float
    y0: float
    x1: float
    y1: float
    origin: str = "user"
    author: str = ""
    score: float | None = None
    accepted: bool = True
    label: str = "tumor"
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    patient: list[list[float]] | None = None

    def __post_init__(self) -> None:
        check_phase(self.phase)
        if self.origin not in ORIGINS:
            raise ValueError(f"box origin must be one of {ORIGINS}, got {self.origin!r}")
        self.position = finite(self.position, "position")
        x0, y0, x1, y1 = (max(0.0, finite(getattr(self, k), k)) for k in ("x0", "y0", "x1", "y1"))
        self.x0, self.x1 = sorted((x0, x1))
        self.y0, self.y1 = sorted((y0, y1))
        if self.score is not None:
            self.score = finite(self.score, "score")

    @property
    def rect(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


def _same_position(a: float, b: float, tol: float = 1e-3) -> bool:
    return abs(a - b) <= tol


class Case:
    """What a reader does with one exam: picked slice positions, boxes, findings, reads.

    Every edit emits an event on `events` and records an undo step.
    """

    def __init__(self, study: Study | None = None, case_id: str = "") -> None:
        self.study = study
        self.case_id = case_id or (study.study_uid if study else "") or uuid.uuid4().hex
        self.picks: dict[str, list[float]] = {p: [] for p in PHASES}
        self.boxes: list[Box] = []
        self.findings: dict[str, Any] | None = None
        self.reads: list[dict[str, Any]] = []
        self.events = Events()
        self._undo: list[dict[str, Any]] = []
        self._redo: list[dict[str, Any]] = []

    # ---- geometry -------------------------------------------------------------------
    def volume(self, phase: str) -> Volume | None:
        return self.study.volumes.get(phase) if self.study else None

    def _with_patient(self, box: Box) -> Box:
        vol = self.volume(box.phase)
        if vol is not None:
            k = vol.index_at(box.position)
            box.patient = [[round(c, 3) for c in corner] for corner in vol.box_to_patient(box.x0, box.y0, box.x1, box.y1, k)]
        return box

    # ---- undo -----------------------------------------------------------------------
    def _editable_state(self) -> dict[str, Any]:
        return {"picks": copy.deepcopy(self.picks), "boxes": [asdict(b) for b in self.boxes]}

    def _restore(self, state: dict[str, Any]) -> None:
        self.picks = copy.deepcopy(state["picks"])
        self.boxes = [Box(**b) for b in state["boxes"]]

    def _checkpoint(self) -> None:
        self._undo.append(self._editable_state())
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> bool:
        if not self._undo:
            return False
        self._redo.append(self._editable_state())
        self._restore(self._undo.pop())
        self.events.emit("restored", action="undo")
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._editable_state())
        self._restore(self._redo.pop())
        self.events.emit("restored", action="redo")
        return True

    # ---- picks ----------------------------------------------------------------------
    def add_pick(self, phase: str, position: float) -> bool:
        """Pick the slice at `position`; False when it is already picked or three are."""
        check_phase(phase)
        picks = self.picks[phase]
        if any(_same_position(p, position) for p in picks) or len(picks) >= MAX_PICKS:
            return False
        self._checkpoint()
        picks.append(float(position))
        picks.sort()
        self.events.emit("picks", phase=phase)
        return True

    def remove_pick(self, phase: str, position: float) -> bool:
        check_phase(phase)
        picks = self.picks[phase]
        for p in picks:
            if _same_position(p, position):
                self._checkpoint()
                picks.remove(p)
                self.events.emit("picks", phase=phase)
                return True
        return False

    def set_picks(self, phase: str, positions: list[float]) -> None:
        self.set_all_picks({phase: positions})

    def set_all_picks(self, picks: dict[str, list[float]]) -> None:
        """Replace the picks of several phases as one edit (one undo step), e.g. an auto-pick."""
        for phase, positions in picks.items():
            check_phase(phase)
            if len(positions) > MAX_PICKS:
                raise ValueError(f"phase {phase}: at most {MAX_PICKS} picks, got {len(positions)}")
        self._checkpoint()
        for phase, positions in picks.items():
            self.picks[phase] = sorted(float(p) for p in positions)
        for phase in picks:
            self.events.emit("picks", phase=phase)

    def is_picked(self, phase: str, position: float) -> bool:
        return any(_same_position(p, position) for p in self.picks[phase])

    def pick_warnings(self) -> list[str]:
        out = []
        for phase in (self.study.phases if self.study else PHASES):
            n = len(self.picks[phase])
            if n < MAX_PICKS:
                out.append(f"phase {phase}: {n} of {MAX_PICKS} slices picked")
        return out

    # ---- boxes ----------------------------------------------------------------------
    def add_box(self, box: Box) -> Box:
        if len(self.boxes) >= MAX_BOXES:
            raise ValueError(f"a case holds at most {MAX_BOXES} boxes")
        self._checkpoint()
        self.boxes.append(self._with_patient(box))
        self.events.emit("boxes", phase=box.phase, box_id=box.id)
        return box

    def update_box(self, box_id: str, **changes: Any) -> Box:
        box = self.box(box_id)
        self._checkpoint()
        for key, value in changes.items():
            if not hasattr(box, key) or key == "id":
                raise ValueError(f"box has no editable field {key!r}")
            setattr(box, key, value)
        box.__post_init__()
        self._with_patient(box)
        self.events.emit("boxes", phase=box.phase, box_id=box.id)
        return box

    def remove_box(self, box_id: str) -> None:
        box = self.box(box_id)
        self._checkpoint()
        self.boxes.remove(box)
        self.events.emit("boxes", phase=box.phase, box_id=box_id)

    def replace_boxes(self, origin: str, boxes: list[Box]) -> None:
        """Drop every box of `origin` and add `boxes` (e.g. fresh AI detections) as one step."""
        kept = [b for b in self.boxes if b.origin != origin]
        if len(kept) + len(boxes) > MAX_BOXES:
            raise ValueError(f"a case holds at most {MAX_BOXES} boxes, got {len(kept) + len(boxes)}")
        self._checkpoint()
        self.boxes = kept + [self._with_patient(b) for b in boxes]
        self.events.emit("boxes", phase=None, box_id=None)

    def box(self, box_id: str) -> Box:
        for b in self.boxes:
            if b.id == box_id:
                return b
        raise KeyError(f"no box with id {box_id!r}")

    def boxes_on(self, phase: str, position: float, origin: str | None = None) -> list[Box]:
        return [
            b
            for b in self.boxes
            if b.phase == phase and _same_position(b.position, position) and (origin is None or b.origin == origin)
        ]

    def reader_box(self, phase: str, position: float) -> Box | None:
        """The box a reader stands behind on this slice: a user box, else an accepted AI box."""
        user = self.boxes_on(phase, position, "user")
        if user:
            return max(user, key=lambda b: b.area)
        ai = [b for b in self.boxes_on(phase, position, "ai") if b.accepted]
        return max(ai, key=lambda b: b.score or 0.0) if ai else None

    # ---- findings and reads -------------------------------------------------------------
    def set_findings(self, findings: dict[str, Any] | None) -> None:
        self.findings = findings
        self.events.emit("findings")

    def add_read(self, read: dict[str, Any]) -> None:
        self.reads.append(dict(read))
        self.events.emit("reads")

    @property
    def findings_stale(self) -> bool:
        """True when the findings were not computed from what the case holds now.

        Findings record the digest of their inputs in `computed_from` (the phase series,
        the picks and the reader's boxes, see liverview.study.inputs). Findings without that
        record (files from before it existed) cannot be shown to match, so they count as
        stale: the safe answer is "run the analysis again", never "these are current".
        False when there are no findings.
        """
        if self.findings is None:
            return False
        made_from = self.findings.get("computed_from") if isinstance(self.findings, dict) else None
        digest = made_from.get("digest") if isinstance(made_from, dict) else None
        return not isinstance(digest, str) or digest != inputs_digest(self)

    # ---- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        study = self.study
        return {
            "case_id": self.case_id,
            "study": None
            if study is None
            else {
                "study_uid": study.study_uid,
                "patient_id": study.patient_id,
                "path": study.path,
                "intensity": study.intensity,
                "identity": copy.deepcopy(study.info.get("identity")) if isinstance(study.info, dict) else None,
                "phases": {p: asdict(s) for p, s in study.sources.items()},
            },
            "picks": copy.deepcopy(self.picks),
            "boxes": [asdict(b) for b in self.boxes],
            "findings": copy.deepcopy(self.findings),
            "findings_stale": self.findings_stale,
            "reads": copy.deepcopy(self.reads),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], study: Study | None = None) -> "Case":
        """The case a `to_dict` mapping describes; ValueError naming the field when it is malformed.

        `findings_stale` is not read back: it is worked out again from the findings and the
        case. `study` (the open exam) gives the boxes their patient coordinates.
        """
        if not isinstance(data, dict):
            raise ValueError(f"case: expected an object, got {_kind(data)}")
        case_id = data.get("case_id", "")
        if not isinstance(case_id, str):
            raise ValueError(f"case_id: expected a string, got {_kind(case_id)}")
        case = cls(study=study, case_id=case_id)
        picks = data.get("picks")
        if picks is not None and not isinstance(picks, dict):
            raise ValueError(f"picks: expected an object (phase -> slice positions), got {_kind(picks)}")
        for phase, positions in (picks or {}).items():
            if phase not in PHASES:
                raise ValueError(f"picks: unknown phase {short(phase)}: expected one of {', '.join(PHASES)}")
            if not isinstance(positions, list):
                raise ValueError(f"picks.{phase}: expected an array of slice positions, got {_kind(positions)}")
            if len(positions) > MAX_PICKS:
                raise ValueError(f"picks.{phase}: at most {MAX_PICKS} picks, got {len(positions)}")
            case.picks[phase] = sorted(finite(p, f"picks.{phase}[{i}]") for i, p in enumerate(positions))
        boxes = data.get("boxes")
        if boxes is not None and not isinstance(boxes, list):
            raise ValueError(f"boxes: expected an array, got {_kind(boxes)}")
        if boxes and len(boxes) > MAX_BOXES:
            raise ValueError(f"boxes: {len(boxes)} boxes, at most {MAX_BOXES}")
        case.boxes = [_box_from_dict(b, f"boxes[{i}]") for i, b in enumerate(boxes or [])]
        findings = data.get("findings")
        if findings is not None and not isinstance(findings, dict):
            raise ValueError(f"findings: expected an object or null, got {_kind(findings)}")
        case.findings = findings
        reads = data.get("reads")
        if reads is not None and not isinstance(reads, list):
            raise ValueError(f"reads: expected an array, got {_kind(reads)}")
        for i, read in enumerate(reads or []):
            if not isinstance(read, dict):
                raise ValueError(f"reads[{i}]: expected an object, got {_kind(read)}")
        case.reads = [dict(r) for r in reads or []]
        if study is not None:
            for b in case.boxes:
                case._with_patient(b)
        return case


def _box_from_dict(data: Any, name: str) -> Box:
    """A Box from its to_dict mapping; ValueError naming `name` and the field when it is malformed."""
    if not isinstance(data, dict):
        raise ValueError(f"{name}: expected an object, got {_kind(data)}")
    unknown = sorted(str(k) for k in data if k not in BOX_FIELDS)
    if unknown:
        raise ValueError(f"{name}: unknown field {short(unknown[0])}")
    missing = [k for k in ("phase", "position", "x0", "y0", "x1", "y1") if k not in data]
    if missing:
        raise ValueError(f"{name}.{missing[0]}: missing")
    kwargs = dict(data)
    for key in ("phase", "origin", "author", "label", "id"):
        if key in kwargs and not isinstance(kwargs[key], str):
            raise ValueError(f"{name}.{key}: expected a string, got {_kind(kwargs[key])}")
    if "accepted" in kwargs and not isinstance(kwargs["accepted"], bool):
        raise ValueError(f"{name}.accepted: expected true or false, got {_kind(kwargs['accepted'])}")
    for key in ("position", "x0", "y0", "x1", "y1"):
        kwargs[key] = finite(kwargs[key], f"{name}.{key}")
    if kwargs.get("score") is not None:
        kwargs["score"] = finite(kwargs["score"], f"{name}.score")
    patient = kwargs.get("patient")
    if patient is not None:
        if not (isinstance(patient, list) and len(patient) == 2
                and all(isinstance(c, list) and len(c) == 3 for c in patient)):
            raise ValueError(f"{name}.patient: expected null or two [x, y, z] corners")
        kwargs["patient"] = [[finite(v, f"{name}.patient[{i}][{j}]") for j, v in enumerate(c)] for i, c in enumerate(patient)]
    if kwargs["phase"] not in PHASES:
        raise ValueError(f"{name}.phase: unknown phase {short(kwargs['phase'])}: expected one of {', '.join(PHASES)}")
    if kwargs.get("origin", "user") not in ORIGINS:
        raise ValueError(f"{name}.origin: {short(kwargs['origin'])} is not one of {', '.join(ORIGINS)}")
    return Box(**kwargs)


def nearest_positions(volume: Volume, positions: list[float]) -> list[float]:
    """Snap positions (from another phase) to this volume's slices."""
    pos = volume.positions
    return [float(pos[int(np.argmin(np.abs(pos - p)))]) for p in positions]
