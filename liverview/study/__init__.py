"""The data model: volumes, studies, cases, composites; plain Python, no Qt, no torch."""

from liverview.study.phases import PHASES, PHASE_NAMES, WINDOWS, Phase
from liverview.study.volume import Volume

__all__ = ["PHASES", "PHASE_NAMES", "WINDOWS", "Phase", "Volume"]
