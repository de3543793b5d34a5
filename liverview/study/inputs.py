"""What an analysis is computed from (phase assignment, picks, reader boxes) and its digest, for stale findings."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from liverview.study.phases import PHASES


def analysis_inputs(case) -> dict[str, Any]:
    """The parts of a case that decide an analysis: which series is each phase, the picked
    positions, and the boxes a reader stands behind (user boxes and accepted AI boxes; the
    unaccepted AI proposals an analysis writes are its output, not its input)."""
    study = case.study
    phases = {p: study.sources[p].series_uid if p in study.sources else "" for p in study.phases} if study else {}
    picks = {p: [round(float(z), 3) for z in sorted(case.picks.get(p, []))] for p in PHASES if case.picks.get(p)}
    boxes = sorted(
        [b.phase, round(float(b.position), 3), *(round(float(v), 2) for v in b.rect)]
        for b in case.boxes
        if b.origin == "user" or (b.origin == "ai" and b.accepted)
    )
    return {"phases": phases, "picks": picks, "boxes": boxes}


def inputs_digest(case) -> str:
    """A short stable digest of `analysis_inputs(case)`: equal digests mean the same analysis input."""
    text = json.dumps(analysis_inputs(case), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
