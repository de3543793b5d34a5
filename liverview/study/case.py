"""Study (phase -> volume) and Case (picks, boxes, findings, reads) with change events and undo."""

from __future__ import annotations

import copy
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from liverview.study.events import Events
from liverview.study.phases import PHASES, check_phase
from liverview.study.volume import Volume

ORIGINS = ("user", "ai", "truth")
MAX_PICKS = 3


@dataclass
class PhaseSource:
    """How a phase was identified: the series, the evidence, and whether a person set it."""

    series_uid: str
    description: str = ""
    evidence: list[str] = field(default_factory=list)
    confidence: float = 0.0
    overridden: bool = False


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
        self.x0, self.x1 = sorted((float(self.x0), float(self.x1)))
        self.y0, self.y1 = sorted((float(self.y0), float(self.y1)))

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
        self._checkpoint()
        self.boxes = [b for b in self.boxes if b.origin != origin] + [self._with_patient(b) for b in boxes]
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
                "phases": {p: asdict(s) for p, s in study.sources.items()},
            },
            "picks": copy.deepcopy(self.picks),
            "boxes": [asdict(b) for b in self.boxes],
            "findings": copy.deepcopy(self.findings),
            "reads": copy.deepcopy(self.reads),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], study: Study | None = None) -> "Case":
        case = cls(study=study, case_id=str(data.get("case_id", "")))
        picks = data.get("picks") or {}
        for phase, positions in picks.items():
            check_phase(phase)
            case.picks[phase] = sorted(float(p) for p in positions)[:MAX_PICKS]
        case.boxes = [Box(**b) for b in data.get("boxes") or []]
        case.findings = data.get("findings")
        case.reads = list(data.get("reads") or [])
        if study is not None:
            for b in case.boxes:
                case._with_patient(b)
        return case


def nearest_positions(volume: Volume, positions: list[float]) -> list[float]:
    """Snap positions (from another phase) to this volume's slices."""
    pos = volume.positions
    return [float(pos[int(np.argmin(np.abs(pos - p)))]) for p in positions]
