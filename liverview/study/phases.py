"""The four contrast phases, their order in a composite and the paper's display windows."""

from __future__ import annotations

from enum import Enum


class Phase(str, Enum):
    """A contrast phase; the value is the one-letter code used in composites and files."""

    P = "P"  # pre-contrast
    A = "A"  # hepatic arterial
    V = "V"  # portal venous
    D = "D"  # delayed

    @property
    def label(self) -> str:
        return PHASE_NAMES[self.value]


PHASES: tuple[str, ...] = ("P", "A", "V", "D")
PHASE_NAMES: dict[str, str] = {
    "P": "pre-contrast",
    "A": "arterial",
    "V": "portal venous",
    "D": "delayed",
}
# (level, width) in HU, as the paper exported its slices.
WINDOWS: dict[str, tuple[float, float]] = {
    "P": (40.0, 250.0),
    "A": (45.0, 290.0),
    "V": (45.0, 290.0),
    "D": (45.0, 290.0),
}


def check_phase(code: str) -> str:
    """Return `code` if it names a phase, else raise ValueError naming it."""
    if code not in PHASES:
        raise ValueError(f"unknown phase {code!r}: expected one of {', '.join(PHASES)}")
    return code
