"""The findings contract shared by engine and GUI: vocabulary, CAM codec and resampling, dataclasses (numpy only, no torch or Qt)."""

from liverview.findings.cam import (
    ENCODING,
    RoiSquare,
    cam_for_phase,
    decode_map,
    encode_map,
    grid_to_phase,
    resize,
    square_to_grid,
)
from liverview.findings.model import (
    CAM_STORAGE,
    READABLE_VERSIONS,
    ROI_SOURCES,
    SCHEMA,
    SCHEMA_VERSION,
    CompositeFinding,
    Detection,
    ExamFinding,
    Explanation,
    Findings,
    FindingsError,
    PhaseBox,
)
from liverview.findings.vocabulary import (
    CLASS_NAMES,
    CLASSES,
    CLASSES_OF,
    GROUP_OF,
    GROUPS,
    MEMBER_CLASS,
    MEMBERS,
    MODEL_CLASSES,
)

__all__ = [
    "CAM_STORAGE", "CLASSES", "CLASSES_OF", "CLASS_NAMES", "ENCODING", "GROUPS", "GROUP_OF", "MEMBERS",
    "MEMBER_CLASS", "MODEL_CLASSES", "READABLE_VERSIONS", "ROI_SOURCES", "SCHEMA", "SCHEMA_VERSION",
    "CompositeFinding", "Detection", "ExamFinding", "Explanation", "Findings", "FindingsError", "PhaseBox",
    "RoiSquare", "cam_for_phase", "decode_map", "encode_map", "grid_to_phase", "resize", "square_to_grid",
]
