"""Diagnosis classes (METHOD.md §2) and the classification tasks built from them."""

from __future__ import annotations

from dataclasses import dataclass

CLASSES: tuple[str, ...] = ("HH", "OBHT", "HB", "OMHT")
GROUP: dict[str, str] = {"HH": "benign", "OBHT": "benign", "HB": "malignant", "OMHT": "malignant"}
# PKCP expands these to every cross-phase combination (K^P); the others get K depth-consistent ones.
MINORITY: tuple[str, ...] = ("OBHT", "OMHT")


@dataclass(frozen=True)
class Task:
    """A classification task: which diagnosis classes it sees and the label each maps to."""

    name: str
    classes: tuple[str, ...]  # output class names, index = label
    label_of: dict[str, int]  # diagnosis class -> label; classes not listed are not part of the task
    description: str

    def label(self, diagnosis: str) -> int | None:
        return self.label_of.get(diagnosis)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


TASKS: dict[str, Task] = {
    "stage1": Task(
        "stage1",
        ("benign", "malignant"),
        {"HH": 0, "OBHT": 0, "HB": 1, "OMHT": 1},
        "stage 1: benign (HH+OBHT) vs malignant (HB+OMHT)",
    ),
    "benign": Task("benign", ("HH", "OBHT"), {"HH": 0, "OBHT": 1}, "benign subtype: HH vs OBHT"),
    "malignant": Task("malignant", ("HB", "OMHT"), {"HB": 0, "OMHT": 1}, "malignant subtype: HB vs OMHT"),
    "onestep": Task("onestep", CLASSES, {c: i for i, c in enumerate(CLASSES)}, "one-step 4-class baseline"),
}


def task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}: expected one of {', '.join(TASKS)}") from None


def check_class(name: str, where: str = "") -> str:
    """Return the canonical class code for `name` (case-insensitive), else raise naming `where`."""
    for c in CLASSES:
        if str(name).strip().upper() == c:
            return c
    raise ValueError(f"{where + ': ' if where else ''}unknown class {name!r}: expected one of {', '.join(CLASSES)}")
