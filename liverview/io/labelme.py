"""Read and write LabelMe JSON annotations (rectangles), the box format of the published study."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from liverview.io.errors import LabelMeError
from liverview.study.atomic import write_json_atomic

Rect = tuple[str, float, float, float, float]  # (label, x0, y0, x1, y1), x0 <= x1, y0 <= y1

LABELME_VERSION = "5.4.1"
# Shapes that enclose an area are read as their bounding rectangle; the rest carry no box.
_AREA_SHAPES = ("rectangle", "polygon")


@dataclass
class LabelMeDocument:
    """What one LabelMe file says: the image it annotates, its size, its rectangles."""

    path: str
    image_path: str = ""
    height: int | None = None
    width: int | None = None
    rects: list[Rect] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # one line per shape that is not a box


def _points(path: Path, index: int, shape: dict) -> list[tuple[float, float]]:
    pts = shape.get("points")
    where = f"shapes[{index}].points"
    if not isinstance(pts, list) or not pts:
        raise LabelMeError(f"{path}: {where} must be a non-empty list of [x, y] pairs")
    out = []
    for j, p in enumerate(pts):
        if not isinstance(p, (list, tuple)) or len(p) != 2:
            raise LabelMeError(f"{path}: {where}[{j}] must be an [x, y] pair, got {p!r}")
        try:
            out.append((float(p[0]), float(p[1])))
        except (TypeError, ValueError):
            raise LabelMeError(f"{path}: {where}[{j}] must hold numbers, got {p!r}") from None
    return out


def read_labelme_document(path: str | os.PathLike) -> LabelMeDocument:
    """Parse a LabelMe file; rectangles and polygons become (label, x0, y0, x1, y1) boxes."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise LabelMeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise LabelMeError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise LabelMeError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise LabelMeError(f"{path}: top level must be an object with a 'shapes' list")
    shapes = data.get("shapes")
    if not isinstance(shapes, list):
        raise LabelMeError(f"{path}: field 'shapes' must be a list")
    doc = LabelMeDocument(path=str(path), image_path=str(data.get("imagePath") or ""))
    for key, attr in (("imageHeight", "height"), ("imageWidth", "width")):
        value = data.get(key)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise LabelMeError(f"{path}: field '{key}' must be a positive number, got {value!r}")
            setattr(doc, attr, int(value))
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict):
            raise LabelMeError(f"{path}: shapes[{i}] must be an object")
        label = shape.get("label")
        if not isinstance(label, str) or not label.strip():
            raise LabelMeError(f"{path}: shapes[{i}].label must be a non-empty string")
        kind = shape.get("shape_type") or "polygon"  # LabelMe's default when the field is absent
        pts = _points(path, i, shape)
        if kind not in _AREA_SHAPES:
            doc.ignored.append(f"shapes[{i}] is a {kind}, not a box")
            continue
        if kind == "rectangle" and len(pts) != 2:
            raise LabelMeError(f"{path}: shapes[{i}].points: a rectangle needs 2 corners, got {len(pts)}")
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        if x1 <= x0 or y1 <= y0:
            raise LabelMeError(f"{path}: shapes[{i}].points enclose no area ({x0}, {y0}, {x1}, {y1})")
        doc.rects.append((label.strip(), x0, y0, x1, y1))
    return doc


def read_labelme(path: str | os.PathLike) -> list[Rect]:
    """The boxes of a LabelMe file as (label, x0, y0, x1, y1); LabelMeError names file and field."""
    return read_labelme_document(path).rects


def write_labelme(
    path: str | os.PathLike,
    image_name: str,
    size: tuple[int, int],
    rects: list[tuple[float, float, float, float]] | list[Rect],
    label: str = "tumor",
) -> None:
    """Write rectangles as a LabelMe file next to `image_name`, atomically.

    `size` is (height, width). `rects` are (x0, y0, x1, y1), or (label, x0, y0, x1, y1)
    to give a box its own label instead of `label`.
    """
    height, width = (int(v) for v in size)
    shapes = []
    for r in rects:
        name, coords = (r[0], r[1:]) if len(r) == 5 else (label, r)
        x0, y0, x1, y1 = (float(c) for c in coords)
        shapes.append(
            {
                "label": str(name),
                "points": [[min(x0, x1), min(y0, y1)], [max(x0, x1), max(y0, y1)]],
                "group_id": None,
                "description": "",
                "shape_type": "rectangle",
                "flags": {},
            }
        )
    write_json_atomic(
        path,
        {
            "version": LABELME_VERSION,
            "flags": {},
            "shapes": shapes,
            "imagePath": image_name,
            "imageData": None,
            "imageHeight": height,
            "imageWidth": width,
        },
    )
