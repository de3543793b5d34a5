"""The synthetic four-phase pediatric liver CT phantom: writes real DICOM plus ground truth."""

from liverview.phantom.cohort import generate_cohort
from liverview.phantom.exam_writer import generate_exam
from liverview.phantom.priors import (
    CLASSES,
    DEFAULT_MIX,
    DENSITY_LEVELS,
    ENHANCEMENT_PATTERNS,
    GROUP,
    LOCATIONS,
    MEMBER_CLASS,
    MEMBERS,
    parse_mix,
)
from liverview.phantom.render import render_exam

__all__ = [
    "CLASSES",
    "DEFAULT_MIX",
    "DENSITY_LEVELS",
    "ENHANCEMENT_PATTERNS",
    "GROUP",
    "LOCATIONS",
    "MEMBERS",
    "MEMBER_CLASS",
    "generate_cohort",
    "generate_exam",
    "parse_mix",
    "render_exam",
]
