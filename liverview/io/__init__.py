"""Read the world: DICOM folders, DICOMDIR, zips, PACS image exports with LabelMe boxes; write them back. No Qt.

The names below are imported on first use, so a module that needs one part (the engine's
anatomy check needs io.kinetics only) does not pay for pydicom and the loader
(benchmarks/first_result.py, the engine-ready figure).
"""

from __future__ import annotations

import importlib

_WHERE = {
    "ExamError": "errors", "LabelMeError": "errors", "LoadCancelled": "errors",
    "load_export": "export",
    "read_labelme": "labelme", "write_labelme": "labelme",
    "CaseSeed": "loader", "ExamLoad": "loader", "load_exam": "loader",
    "SliceMatch": "matching", "match_position": "matching", "match_slice": "matching",
    "ScanResult": "scan", "scan": "scan",
    "DEFAULT_MAX_PIXEL_BYTES": "series", "PhaseGuess": "series", "SeriesRecord": "series", "StudyRecord": "series",
    "read_yolo_labels": "yolo_labels", "write_yolo_labels": "yolo_labels",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'liverview.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"liverview.io.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
