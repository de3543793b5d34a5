"""Box edits that touch several slices: copy a box to the matching slices of the other phases, accept AI boxes."""

from __future__ import annotations

import dataclasses

import numpy as np

from liverview.study.case import Box, Case, nearest_positions


def matching_position(case: Case, box: Box, phase: str) -> float | None:
    """The slice of `phase` that matches the box's slice: the pick of the same depth rank when
    both phases have it, else the slice of `phase` nearest in patient position."""
    vol = case.volume(phase)
    if vol is None:
        return None
    own = case.picks.get(box.phase, [])
    rank = next((i for i, q in enumerate(own) if abs(q - box.position) <= 1e-3), None)
    theirs = case.picks.get(phase, [])
    if rank is not None and rank < len(theirs):
        return float(theirs[rank])
    return nearest_positions(vol, [box.position])[0]


def box_on_phase(case: Case, box: Box, phase: str, position: float, author: str = "") -> Box:
    """The box carried to another phase through patient space (its corners mapped to that phase's pixels)."""
    src, dst = case.volume(box.phase), case.volume(phase)
    k_src = src.index_at(box.position)
    corners = []
    for x, y in ((box.x0, box.y0), (box.x1, box.y1)):
        # box coordinates are pixel edges; the affine maps pixel centres (edge = centre - 0.5)
        lps = src.to_patient(x - 0.5, y - 0.5, k_src)
        col, row, _ = dst.to_pixel(lps)
        corners.append((col + 0.5, row + 0.5))
    rows, cols = dst.pixels.shape[1:]
    (x0, y0), (x1, y1) = corners
    x0, x1 = sorted((float(np.clip(x0, 0, cols)), float(np.clip(x1, 0, cols))))
    y0, y1 = sorted((float(np.clip(y0, 0, rows)), float(np.clip(y1, 0, rows))))
    # the slice's own offset along the normal is dropped: in-plane position is what the box means
    return Box(phase, float(position), x0, y0, x1, y1, origin="user", author=author)


def copy_to_other_phases(case: Case, box_id: str, author: str = "") -> list[Box]:
    """Copy a box to the matching slice of every other phase as user boxes, replacing the user boxes
    there; one undo step. The source box itself is left as it is."""
    box = case.box(box_id)
    targets = {}
    for phase in (case.study.phases if case.study else []):
        if phase == box.phase:
            continue
        pos = matching_position(case, box, phase)
        if pos is not None:
            targets[phase] = pos
    if not targets:
        return []
    new = [box_on_phase(case, box, p, pos, author) for p, pos in targets.items()]
    keep = [
        dataclasses.replace(b)
        for b in case.boxes
        if b.origin == "user" and not any(b.phase == p and abs(b.position - pos) <= 1e-3 for p, pos in targets.items())
    ]
    case.replace_boxes("user", keep + new)
    return new


def accept_all_ai(case: Case) -> int:
    """Mark every AI box accepted, as one undo step; returns how many changed."""
    ai = [b for b in case.boxes if b.origin == "ai"]
    changed = sum(1 for b in ai if not b.accepted)
    if changed:
        case.replace_boxes("ai", [dataclasses.replace(b, accepted=True) for b in ai])
    return changed
