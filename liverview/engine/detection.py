"""Detection on composites, boxes mapped to every phase's pixels and patient space, and AI boxes for the case."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from liverview.engine import yolo
from liverview.engine.findings import CompositeFinding, Detection, PhaseBox
from liverview.study.case import Box, Case, Study
from liverview.study.composite import Composite


def run_detector(detector, entry: dict, images: Sequence[np.ndarray], max_det: int = 10) -> list[np.ndarray]:
    """Per image an (n, 5) array (x0, y0, x1, y1, score) in that image's pixels, best first."""
    return yolo.detect(detector, images, int(entry["input_size"]), float(entry["conf"]), float(entry["iou"]), max_det)


def phase_boxes(study: Study, composite: Composite, box: Sequence[float]) -> dict[str, PhaseBox]:
    """A composite-grid box on the slice of every phase the composite used, with patient-space corners."""
    out = {}
    for p in composite.phases_used:
        vol = study.volumes[p]
        sx, sy = composite.scale.get(p, (1.0, 1.0))
        k = vol.index_at(composite.positions[p])
        x0, y0, x1, y1 = box[0] / sx, box[1] / sy, box[2] / sx, box[3] / sy
        patient = vol.box_to_patient(x0, y0, x1, y1, k)
        out[p] = PhaseBox(p, vol.position_of(k), int(k), (x0, y0, x1, y1), patient)
    return out


def to_detections(study: Study, composite: Composite, found: np.ndarray) -> list[Detection]:
    return [
        Detection(float(row[4]), tuple(float(v) for v in row[:4]), phase_boxes(study, composite, row[:4]))  # type: ignore[arg-type]
        for row in found
    ]


def ai_boxes(case: Case, composites: Sequence[CompositeFinding]) -> list[Box]:
    """The detections as unaccepted AI boxes, keeping AI boxes a reader already accepted: a slice
    with an accepted AI box gets no new ones. A slice shared by several composites (PKCP "all"
    mode) takes the detections of the composite that scored highest on it."""
    kept = [b for b in case.boxes if b.origin == "ai" and b.accepted]
    taken = {(b.phase, round(b.position, 3)) for b in kept}
    best: dict[tuple[str, float], tuple[float, list[Box]]] = {}
    for comp in composites:
        per_slice: dict[tuple[str, float], list[Box]] = {}
        top = comp.detections[0].score if comp.detections else 0.0
        for det in comp.detections:
            for p, pb in det.phases.items():
                key = (p, round(pb.position, 3))
                if key in taken:
                    continue
                box = Box(p, pb.position, *pb.box, origin="ai", author="engine", score=det.score, accepted=False)
                per_slice.setdefault(key, []).append(box)
        for key, boxes in per_slice.items():
            if key not in best or top > best[key][0]:
                best[key] = (top, boxes)
    return kept + [b for _, boxes in best.values() for b in boxes]
