"""Patient-level splits: stratified 70/30 train/validation by patient ID, saved to disk, checked for leaks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from liverview.study.atomic import write_json_atomic

FORMAT = "liverview.training.splits"


class LeakageError(ValueError):
    """One patient (or one exam's images) found in two splits or cohorts."""


def stratified_split(
    patient_ids: Sequence[str], classes: Sequence[str], val_fraction: float = 0.3, seed: int = 0
) -> dict[str, list[str]]:
    """Split patients into train/validation per class with a fixed seed.

    Every class with at least two patients gets at least one patient on each side, so the
    rare classes (OBHT, OMHT) appear in both. IDs are sorted before shuffling, so the split
    depends only on the set of IDs, the classes and the seed — not on file order.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if len(patient_ids) != len(classes):
        raise ValueError("patient_ids and classes differ in length")
    rng = np.random.default_rng(seed)
    train: list[str] = []
    val: list[str] = []
    for cls in sorted(set(classes)):
        ids = sorted(p for p, c in zip(patient_ids, classes) if c == cls)
        order = rng.permutation(len(ids))
        n_val = int(round(val_fraction * len(ids)))
        if len(ids) >= 2:
            n_val = min(max(n_val, 1), len(ids) - 1)
        else:
            n_val = 0
        val += [ids[i] for i in order[:n_val]]
        train += [ids[i] for i in order[n_val:]]
    return {"train": sorted(train), "validation": sorted(val)}


def check_disjoint(groups: Mapping[str, Sequence[str]], what: str = "patient") -> None:
    """Fail loudly, naming the patient and both places, if any ID is in two groups (or twice in one)."""
    seen: dict[str, str] = {}
    for name, ids in groups.items():
        for pid in ids:
            if pid in seen:
                where = f"twice in {name!r}" if seen[pid] == name else f"in both {seen[pid]!r} and {name!r}"
                raise LeakageError(f"{what} {pid!r} is {where}: splits must not share {what}s")
            seen[pid] = name


def check_cohorts_disjoint(cohorts: Mapping[str, object]) -> None:
    """Patient IDs and image content must not repeat across cohorts (e.g. train/val vs test)."""
    check_disjoint({name: c.patient_ids for name, c in cohorts.items()})
    prints: dict[str, tuple[str, str]] = {}
    for name, c in cohorts.items():
        for pid, fp in zip(c.patient_ids, c.fingerprints()):
            if fp in prints and prints[fp] != (name, pid):
                other_name, other_pid = prints[fp]
                raise LeakageError(
                    f"patient {pid!r} in {name!r} has the same images as patient {other_pid!r} in {other_name!r}"
                )
            prints[fp] = (name, pid)


def save_splits(path: str | os.PathLike, splits: Mapping[str, Sequence[str]], **meta) -> None:
    check_disjoint(splits)
    write_json_atomic(path, {"format": FORMAT, **meta, "splits": {k: list(v) for k, v in splits.items()}})


def load_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such splits file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable splits file ({exc})") from None
    if doc.get("format") != FORMAT or not isinstance(doc.get("splits"), dict):
        raise ValueError(f"{path}: not a splits file (format/splits fields missing)")
    splits = {str(k): [str(p) for p in v] for k, v in doc["splits"].items()}
    check_disjoint(splits)
    return splits
