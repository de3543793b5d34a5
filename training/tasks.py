"""Diagnosis classes (docs/method.md, section 2) and the classification tasks built from them."""

from __future__ import annotations

from dataclasses import dataclass

from liverview.findings.vocabulary import CLASSES, GROUP_OF, MODEL_CLASSES

GROUP = GROUP_OF
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
        MODEL_CLASSES["stage1"],
        {c: MODEL_CLASSES["stage1"].index(GROUP_OF[c]) for c in CLASSES},
        "stage 1: benign (HH+OBHT) vs malignant (HB+OMHT)",
    ),
    "benign": Task("benign", MODEL_CLASSES["benign"], {c: i for i, c in enumerate(MODEL_CLASSES["benign"])},
                   "benign subtype: HH vs OBHT"),
    "malignant": Task("malignant", MODEL_CLASSES["malignant"], {c: i for i, c in enumerate(MODEL_CLASSES["malignant"])},
                      "malignant subtype: HB vs OMHT"),
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
