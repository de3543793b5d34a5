"""Write and read YOLO detection labels: one `class cx cy w h` line per box, normalised to [0, 1]."""

from __future__ import annotations

import os
from pathlib import Path

from liverview.study.atomic import write_bytes_atomic


def yolo_lines(
    rects: list[tuple[float, float, float, float]], size: tuple[int, int], class_id: int = 0
) -> list[str]:
    """YOLO lines for pixel rectangles (x0, y0, x1, y1) on an image of `size` (height, width).

    Boxes are clipped to the image; boxes with no area left inside it are dropped.
    """
    height, width = (float(v) for v in size)
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {size}")
    lines = []
    for x0, y0, x1, y1 in rects:
        x0, x1 = sorted((min(max(float(x0), 0.0), width), min(max(float(x1), 0.0), width)))
        y0, y1 = sorted((min(max(float(y0), 0.0), height), min(max(float(y1), 0.0), height)))
        if x1 <= x0 or y1 <= y0:
            continue
        cx, cy = (x0 + x1) / 2.0 / width, (y0 + y1) / 2.0 / height
        w, h = (x1 - x0) / width, (y1 - y0) / height
        lines.append(f"{int(class_id)} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}")
    return lines


def write_yolo_labels(
    path: str | os.PathLike,
    rects: list[tuple[float, float, float, float]],
    size: tuple[int, int],
    class_id: int = 0,
) -> None:
    """Write a YOLO label file atomically (an empty file means: no object on this image)."""
    text = "".join(line + "\n" for line in yolo_lines(rects, size, class_id))
    write_bytes_atomic(path, text.encode("ascii"))


def read_yolo_labels(path: str | os.PathLike, size: tuple[int, int]) -> list[tuple[int, float, float, float, float]]:
    """(class, x0, y0, x1, y1) pixel boxes from a YOLO label file on an image of `size` (h, w)."""
    path = Path(path)
    height, width = (float(v) for v in size)
    out = []
    for n, line in enumerate(path.read_text(encoding="ascii").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise ValueError(f"{path}: line {n}: expected 'class cx cy w h', got {line!r}")
        try:
            cls = int(parts[0])
            cx, cy, w, h = (float(p) for p in parts[1:])
        except ValueError:
            raise ValueError(f"{path}: line {n}: not numbers: {line!r}") from None
        out.append((cls, (cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height))
    return out
