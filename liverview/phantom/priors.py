"""Class and member priors of the phantom: cohort mix, age, sex and report-field vocabularies."""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from liverview.findings.vocabulary import CLASSES, GROUP_OF, MEMBER_CLASS, MEMBERS

GROUP = GROUP_OF  # the name phantom code and truth files use
MEMBER_WEIGHTS: dict[str, tuple[float, ...]] = {
    "HH": (1.0,),
    "OBHT": (0.40, 0.35, 0.25),
    "HB": (1.0,),
    "OMHT": (0.60, 0.40),
}

# Cohort A of the paper: 148 patients.
PAPER_COUNTS: dict[str, int] = {"HH": 77, "OBHT": 14, "HB": 47, "OMHT": 4}
DEFAULT_MIX: dict[str, float] = {c: n / sum(PAPER_COUNTS.values()) for c, n in PAPER_COUNTS.items()}

# Report vocabularies (the paper's structured report fields).
DENSITY_LEVELS: tuple[str, ...] = ("low", "slightly low", "iso", "slightly high", "mixed")
LOCATIONS: tuple[str, ...] = (
    "multiple intrahepatic",
    "left lobe",
    "right lobe",
    "quadrate lobe",
    "caudate lobe",
    "hilum",
    "translobar",
)
ENHANCEMENT_PATTERNS: tuple[str, ...] = (
    "centripetal",
    "central stellate scar",
    "iso to liver in venous/delayed",
    "cystic multilocular septated",
    "no enhancement",
    "septal enhancement",
    "heterogeneous arterial enhancement with delayed washout",
    "slight enhancement",
    "delayed centripetal only",
    "obvious enhancement",
    "internal nodular enhancement without rim",
    "peripheral early then centripetal",
    "peripheral early then centripetal with non-enhancing core",
    "peripheral early without delayed fill",
    "progressive enhancement",
)

# Age in years: (probability, low, high) pieces, drawn log-uniform inside a piece.
AGE_PRIORS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "HH": ((0.70, 0.08, 1.0), (0.30, 1.0, 8.0)),
    "IHH": ((1.0, 0.04, 1.0),),
    "FNH": ((1.0, 4.0, 15.0),),
    "HMH": ((1.0, 0.15, 2.0),),
    "HB": ((0.90, 0.5, 3.0), (0.10, 3.0, 5.0)),
    "UESL": ((0.80, 6.0, 10.0), (0.20, 4.0, 15.0)),
    "HCC": ((1.0, 10.0, 17.0),),
}
P_MALE: dict[str, float] = {"HH": 0.40, "IHH": 0.35, "FNH": 0.35, "HMH": 0.60, "HB": 0.62, "UESL": 0.55, "HCC": 0.60}
# Report priors that the image does not show (lung bases only partly in the field).
P_LUNG_METASTASIS: dict[str, float] = {"HH": 0.0, "IHH": 0.0, "FNH": 0.0, "HMH": 0.0, "HB": 0.15, "UESL": 0.10, "HCC": 0.20}
# Findings the phantom draws into the lesion when present.
P_CALCIFICATION: dict[str, float] = {"HH": 0.05, "IHH": 0.30, "FNH": 0.0, "HMH": 0.05, "HB": 0.25, "UESL": 0.05, "HCC": 0.10}
P_BLEED: dict[str, float] = {"HH": 0.03, "IHH": 0.10, "FNH": 0.0, "HMH": 0.03, "HB": 0.15, "UESL": 0.20, "HCC": 0.10}


def draw_member(rng: np.random.Generator, cls: str) -> str:
    members = MEMBERS[cls]
    return str(members[rng.choice(len(members), p=np.asarray(MEMBER_WEIGHTS[cls]))])


def draw_age(rng: np.random.Generator, member: str) -> float:
    pieces = AGE_PRIORS[member]
    i = rng.choice(len(pieces), p=[p for p, _, _ in pieces])
    _, lo, hi = pieces[i]
    return float(round(math.exp(rng.uniform(math.log(lo), math.log(hi))), 2))


def draw_sex(rng: np.random.Generator, member: str) -> str:
    return "M" if rng.random() < P_MALE[member] else "F"


def parse_mix(text: str | Mapping[str, float] | None) -> dict[str, float]:
    """A cohort mix as fractions per class, from 'HH=0.25,OBHT=0.25,...' or a mapping.

    Values may be fractions or counts; they are normalised. Classes left out get 0.
    Raises ValueError naming the bad entry.
    """
    if text is None:
        return dict(DEFAULT_MIX)
    if isinstance(text, str):
        items: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            if "=" not in part:
                raise ValueError(f"mix entry {part!r}: expected CLASS=VALUE (classes {', '.join(CLASSES)})")
            name, value = (s.strip() for s in part.split("=", 1))
            try:
                items[name] = float(value)
            except ValueError:
                raise ValueError(f"mix entry {part!r}: {value!r} is not a number") from None
    else:
        items = {str(k): float(v) for k, v in dict(text).items()}
    for name, value in items.items():
        if name not in CLASSES:
            raise ValueError(f"mix entry {name!r}: unknown class (expected one of {', '.join(CLASSES)})")
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"mix entry {name}={value}: must be a non-negative number")
    total = sum(items.values())
    if total <= 0:
        raise ValueError("mix: at least one class needs a positive share")
    return {c: items.get(c, 0.0) / total for c in CLASSES}


def assign_classes(n_patients: int, mix: Mapping[str, float], seed: int) -> list[str]:
    """Class of every patient index for a mix, prefix-stable: patient i gets the same class
    whatever the cohort size, and every prefix holds each class within one patient of its
    share (exactly its share when share x N is whole, e.g. the paper's 148).

    Largest-deficit apportionment; ties go by a seeded class order.
    """
    rng = np.random.default_rng([int(seed), 0x6D6978])
    tie = {c: float(v) for c, v in zip(CLASSES, rng.permutation(len(CLASSES)))}
    counts = {c: 0 for c in CLASSES}
    out: list[str] = []
    for i in range(n_patients):
        deficit = {c: mix.get(c, 0.0) * (i + 1) - counts[c] for c in CLASSES if mix.get(c, 0.0) > 0}
        best = max(deficit, key=lambda c: (round(deficit[c], 9), -tie[c]))
        counts[best] += 1
        out.append(best)
    return out
