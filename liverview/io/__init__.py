"""Read the world: DICOM folders, DICOMDIR, zips, PACS image exports with LabelMe boxes; write them back. No Qt."""

from liverview.io.errors import ExamError, LabelMeError, LoadCancelled
from liverview.io.export import load_export
from liverview.io.labelme import read_labelme, write_labelme
from liverview.io.loader import CaseSeed, ExamLoad, load_exam
from liverview.io.matching import SliceMatch, match_position, match_slice
from liverview.io.scan import ScanResult, scan
from liverview.io.series import DEFAULT_MAX_PIXEL_BYTES, PhaseGuess, SeriesRecord, StudyRecord
from liverview.io.yolo_labels import read_yolo_labels, write_yolo_labels

__all__ = [
    "DEFAULT_MAX_PIXEL_BYTES",
    "CaseSeed",
    "ExamError",
    "ExamLoad",
    "LabelMeError",
    "LoadCancelled",
    "PhaseGuess",
    "ScanResult",
    "SeriesRecord",
    "SliceMatch",
    "StudyRecord",
    "load_exam",
    "load_export",
    "match_position",
    "match_slice",
    "read_labelme",
    "read_yolo_labels",
    "scan",
    "write_labelme",
    "write_yolo_labels",
]
