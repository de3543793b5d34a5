"""The diagnosis vocabulary, defined once: the four classes, their groups, full names, member types and per-model classes."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("HH", "OBHT", "HB", "OMHT")
GROUPS: tuple[str, ...] = ("benign", "malignant")
GROUP_OF: dict[str, str] = {"HH": "benign", "OBHT": "benign", "HB": "malignant", "OMHT": "malignant"}
CLASSES_OF: dict[str, tuple[str, ...]] = {g: tuple(c for c in CLASSES if GROUP_OF[c] == g) for g in GROUPS}
CLASS_NAMES: dict[str, str] = {
    "HH": "hepatic hemangioma",
    "OBHT": "other benign hepatic tumor",
    "HB": "hepatoblastoma",
    "OMHT": "other malignant hepatic tumor",
}
# The tumor types each class gathers.
MEMBERS: dict[str, tuple[str, ...]] = {
    "HH": ("HH",),
    "OBHT": ("IHH", "FNH", "HMH"),
    "HB": ("HB",),
    "OMHT": ("UESL", "HCC"),
}
MEMBER_CLASS: dict[str, str] = {m: c for c, ms in MEMBERS.items() for m in ms}
# The classifier models of a bundle and the classes each outputs, in output order.
MODEL_CLASSES: dict[str, tuple[str, ...]] = {"stage1": GROUPS, **CLASSES_OF}
