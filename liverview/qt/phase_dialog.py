"""The phase dialog: each series' guessed phase with its evidence; the user reassigns or chooses series."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QComboBox, QDialog, QDialogButtonBox, QHeaderView, QLabel, QTableWidget, QTableWidgetItem, QVBoxLayout,
)

from liverview.study.phases import PHASE_NAMES, PHASES

UNUSED = ""


@dataclass
class SeriesRow:
    """What the dialog shows of one candidate series."""

    uid: str
    label: str
    slices: int
    guess: str | None
    confidence: float
    evidence: list[str] = field(default_factory=list)
    note: str = ""


def rows_from_candidates(candidates: Iterable[Any]) -> list[SeriesRow]:
    """Rows from the loader's candidate series records (SeriesRecord with a PhaseGuess)."""
    rows = []
    for rec in candidates:
        guess = getattr(rec, "guess", None)
        rows.append(SeriesRow(
            uid=str(getattr(rec, "uid", "")),
            label=str(getattr(rec, "label", getattr(rec, "description", ""))),
            slices=int(getattr(rec, "n_slices", 0) or 0),
            guess=getattr(guess, "phase", None),
            confidence=float(getattr(guess, "confidence", 0.0) or 0.0),
            evidence=[str(e) for e in (getattr(guess, "evidence", None) or [])],
            note=str(getattr(rec, "not_offered", None) or getattr(rec, "refusal", None) or ""),
        ))
    return rows


class PhaseDialog(QDialog):
    """Assign at most one series to each phase. `assignment()` gives phase -> series uid."""

    def __init__(self, rows: list[SeriesRow], current: dict[str, str], parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Phases of this exam")
        self.rows = rows
        layout = QVBoxLayout(self)
        more = len(rows) > len(PHASES)
        intro = (
            "Each series' phase was guessed from its DICOM header; the evidence is listed. "
            "Set the phase of a series to reassign it, or to (not used) to leave it out."
        )
        if more:
            intro += f" This exam has {len(rows)} candidate series: choose which four to use."
        label = QLabel(intro)
        label.setWordWrap(True)
        layout.addWidget(label)
        self.table = QTableWidget(len(rows), 5)
        self.table.setHorizontalHeaderLabels(["series", "slices", "guessed", "evidence", "use as phase"])
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.combos: list[QComboBox] = []
        by_uid = {uid: p for p, uid in current.items()}
        for r, row in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(row.label))
            self.table.setItem(r, 1, QTableWidgetItem(str(row.slices)))
            guess = f"{row.guess} ({row.confidence:.0%})" if row.guess else "?"
            self.table.setItem(r, 2, QTableWidgetItem(guess))
            ev = QTableWidgetItem("; ".join(row.evidence) + (f"  [{row.note}]" if row.note else ""))
            ev.setToolTip("\n".join(row.evidence + ([row.note] if row.note else [])))
            self.table.setItem(r, 3, ev)
            combo = QComboBox()
            combo.addItem("(not used)", UNUSED)
            for p in PHASES:
                combo.addItem(f"{p}  {PHASE_NAMES[p]}", p)
            combo.setCurrentIndex(max(0, combo.findData(by_uid.get(row.uid, UNUSED))))
            combo.currentIndexChanged.connect(self._validate)
            self.table.setCellWidget(r, 4, combo)
            self.combos.append(combo)
        for r in range(len(rows)):
            for c in range(4):
                item = self.table.item(r, c)
                item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
        self.table.setMinimumWidth(760)
        layout.addWidget(self.table)
        self.problem = QLabel()
        self.problem.setStyleSheet("color: #ef5350;")
        layout.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Use these phases")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._validate()

    def set_phase(self, uid: str, phase: str) -> None:
        """Assign a series to a phase (UNUSED to leave it out), as the combo box would."""
        for row, combo in zip(self.rows, self.combos):
            if row.uid == uid:
                combo.setCurrentIndex(combo.findData(phase))
                return
        raise KeyError(f"no series {uid!r} in the dialog")

    def assignment(self) -> dict[str, str]:
        out = {}
        for row, combo in zip(self.rows, self.combos):
            p = combo.currentData()
            if p:
                out[p] = row.uid
        return out

    def _validate(self) -> None:
        chosen = [c.currentData() for c in self.combos if c.currentData()]
        dup = sorted({p for p in chosen if chosen.count(p) > 1})
        ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        if dup:
            self.problem.setText(f"Phase {', '.join(dup)} is assigned to more than one series.")
            ok_button.setEnabled(False)
        elif not chosen:
            self.problem.setText("Assign at least one series to a phase.")
            ok_button.setEnabled(False)
        else:
            missing = [p for p in PHASES if p not in chosen]
            self.problem.setText(f"No series for phase {', '.join(missing)}." if missing else "")
            ok_button.setEnabled(True)
