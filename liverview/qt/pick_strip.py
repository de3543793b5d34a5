"""The picks panel: per phase a strip of up to three thumbnails of the picked slices, and warnings."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QGridLayout, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton, QVBoxLayout, QWidget,
)

from liverview.qt.phase_view import PHASE_COLORS
from liverview.study.case import MAX_PICKS, Case
from liverview.study.phases import PHASE_NAMES, PHASES, WINDOWS
from liverview.study.volume import HU, Volume

THUMB = 84
FAR_MM = 10.0  # a pick this far from the other phases' pick of the same rank is probably off the lesion


def thumbnail(volume: Volume, phase: str, position: float, boxes=(), size: int = THUMB) -> QPixmap:
    """A small windowed picture of the slice at `position` with its boxes outlined."""
    k = volume.index_at(position)
    px = volume.pixels[k]
    step = max(1, int(np.ceil(max(px.shape) / size)))
    small = np.asarray(px[::step, ::step], dtype=np.float32)
    if volume.intensity == HU:
        level, width = WINDOWS[phase]
        lo = level - width / 2
        img = np.clip((small - lo) / width * 255.0, 0, 255).astype(np.uint8)
    else:
        img = np.clip(small, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img)
    h, w = img.shape
    qimg = QImage(img.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    pix = QPixmap.fromImage(qimg)
    if boxes:
        painter = QPainter(pix)
        for b in boxes:
            color = "#00e5ff" if b.origin == "user" else "#ff9800"
            pen = QPen(QColor(color))
            pen.setWidth(1)
            if b.origin == "ai" and not b.accepted:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawRect(int(b.x0 / step), int(b.y0 / step), int((b.x1 - b.x0) / step), int((b.y1 - b.y0) / step))
        painter.end()
    return pix.scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)


def pick_warnings(case: Case, extent: tuple[float, float] | None = None, far_mm: float = FAR_MM) -> list[str]:
    """The case's own warnings plus picks far from the lesion.

    A pick is "far" when it lies more than `far_mm` outside the lesion's z-extent found by
    auto-pick (`extent`), or more than `far_mm` from the median of the other phases' picks
    of the same depth rank (the lesion is the same in every phase), or when the other picks
    of its phase carry a lesion box and it does not.
    """
    out = list(case.pick_warnings())
    phases = case.study.phases if case.study else list(PHASES)
    if extent is not None:
        lo, hi = min(extent), max(extent)
        for p in phases:
            for pos in case.picks.get(p, []):
                off = lo - pos if pos < lo else pos - hi
                if off > far_mm:
                    out.append(f"phase {p}: pick at {pos:.1f} mm is {off:.0f} mm outside the lesion "
                               f"({lo:.1f}…{hi:.1f} mm)")
    for p in phases:
        for rank, pos in enumerate(case.picks.get(p, [])):
            others = [case.picks[q][rank] for q in phases if q != p and len(case.picks.get(q, [])) > rank]
            if others:
                ref = float(np.median(others))
                if abs(pos - ref) > far_mm:
                    out.append(
                        f"phase {p}: pick {rank + 1} at {pos:.1f} mm is {abs(pos - ref):.0f} mm from the other "
                        f"phases' pick {rank + 1} ({ref:.1f} mm): far from the lesion?"
                    )
        boxed = [pos for pos in case.picks.get(p, []) if case.reader_box(p, pos) is not None]
        if boxed:
            for pos in case.picks.get(p, []):
                if pos not in boxed:
                    out.append(f"phase {p}: pick at {pos:.1f} mm has no lesion box (the other picks have one)")
    return out


class PickStrip(QWidget):
    """Thumbnails of the picks of every phase; clicking one jumps there."""

    sigJump = Signal(str, float)  # phase, position
    sigPick = Signal()  # the "pick current slice" button
    sigAutoPick = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.case: Case | None = None
        self.extent: tuple[float, float] | None = None
        outer = QVBoxLayout(self)
        buttons = QHBoxLayout()
        self.pick_button = QPushButton("Pick slice (Space)")
        self.pick_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.pick_button.setToolTip("Pick or unpick the current slice of the active phase")
        self.pick_button.clicked.connect(self.sigPick)
        self.auto_button = QPushButton("Auto-pick (Ctrl+K)")
        self.auto_button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.auto_button.setToolTip("Ask the engine to propose three slices per phase")
        self.auto_button.clicked.connect(self.sigAutoPick)
        buttons.addWidget(self.pick_button)
        buttons.addWidget(self.auto_button)
        outer.addLayout(buttons)
        grid = QGridLayout()
        self.rows: dict[str, list[QToolButton]] = {}
        self.counts: dict[str, QLabel] = {}
        for r, p in enumerate(PHASES):
            label = QLabel(f"<b style='color:{PHASE_COLORS[p]}'>{p}</b>")
            label.setToolTip(PHASE_NAMES[p])
            grid.addWidget(label, r, 0)
            row = []
            for c in range(MAX_PICKS):
                b = QToolButton()
                b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
                b.setIconSize(QSize(THUMB, THUMB))
                b.setFixedSize(THUMB + 8, THUMB + 22)
                b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
                b.setEnabled(False)
                b.clicked.connect(lambda _=False, p=p, c=c: self._clicked(p, c))
                grid.addWidget(b, r, c + 1)
                row.append(b)
            self.rows[p] = row
            count = QLabel("0/3")
            grid.addWidget(count, r, MAX_PICKS + 1)
            self.counts[p] = count
        outer.addLayout(grid)
        self.warnings = QLabel()
        self.warnings.setWordWrap(True)
        self.warnings.setStyleSheet("color: #ffb74d;")
        self.warnings.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Minimum)
        outer.addWidget(self.warnings)
        outer.addStretch(1)
        self.refresh()

    def set_case(self, case: Case | None, extent: tuple[float, float] | None = None) -> None:
        """Show a case; `extent` is the lesion's z range when auto-pick found it."""
        self.case = case
        self.extent = extent
        self.refresh()

    def _clicked(self, phase: str, rank: int) -> None:
        if self.case is not None and len(self.case.picks.get(phase, [])) > rank:
            self.sigJump.emit(phase, float(self.case.picks[phase][rank]))

    def refresh(self) -> None:
        case = self.case
        for p in PHASES:
            vol = case.volume(p) if case is not None else None
            picks = case.picks.get(p, []) if case is not None else []
            for c, b in enumerate(self.rows[p]):
                if vol is not None and c < len(picks) and vol.ready[vol.index_at(picks[c])]:
                    pos = picks[c]
                    b.setIcon(thumbnail(vol, p, pos, case.boxes_on(p, pos)))
                    b.setText(f"{pos:.1f} mm")
                    b.setToolTip(f"phase {p}, pick {c + 1}: slice {vol.index_at(pos) + 1} at {pos:.1f} mm (click to go there)")
                    b.setEnabled(True)
                else:
                    b.setIcon(QPixmap())
                    b.setText("—")
                    b.setToolTip("")
                    b.setEnabled(False)
            self.counts[p].setText(f"{len(picks)}/{MAX_PICKS}" if vol is not None else "—")
        warnings = pick_warnings(case, self.extent) if case is not None and case.study is not None else []
        self.warnings.setText("\n".join(f"⚠ {w}" for w in warnings))  # always shown: no relayout

    def warning_lines(self) -> list[str]:
        text = self.warnings.text()
        return [w[2:] for w in text.splitlines()] if text else []
