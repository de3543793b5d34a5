"""Grad-CAM controls: on/off, stage, colormap, opacity slider, and the colour bar."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QLinearGradient, QPainter
from PySide6.QtWidgets import QCheckBox, QComboBox, QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from liverview.qt.cam_overlay import COLORMAPS, STAGE_LABELS, STAGES


class ColorBar(QWidget):
    """A horizontal gradient of the colormap with 0 (low) and 1 (high) ends."""

    def __init__(self, cmap: str, parent=None) -> None:
        super().__init__(parent)
        self.cmap = cmap
        self.setMinimumHeight(30)

    def set_cmap(self, cmap: str) -> None:
        self.cmap = cmap
        self.update()

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        r = self.rect().adjusted(24, 2, -24, -14)
        grad = QLinearGradient(r.left(), 0, r.right(), 0)
        lut = pg.colormap.get(self.cmap).getLookupTable(0.0, 1.0, 16, alpha=False)
        for i, (rr, gg, bb) in enumerate(lut):
            alpha = int(np.sqrt(i / 15) * 255)  # the overlay's alpha ramp
            grad.setColorAt(i / 15, QColor(int(rr), int(gg), int(bb), max(alpha, 60)))
        p.fillRect(r, QColor("#000000"))
        p.fillRect(r, grad)
        p.setPen(QColor("#e0e0e0"))
        p.drawText(2, r.bottom() + 12, "low")
        p.drawText(r.right() - 6, r.bottom() + 12, "high")
        p.end()


class CamPanel(QWidget):
    sigVisible = Signal(bool)
    sigStage = Signal(str)
    sigCmap = Signal(str)
    sigOpacity = Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.toggle = QCheckBox("Grad-CAM overlay (H)")
        self.toggle.setChecked(True)
        self.toggle.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.toggle.toggled.connect(self.sigVisible)
        row.addWidget(self.toggle)
        self.stage = QComboBox()
        self.stage.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for s in STAGES:
            self.stage.addItem(STAGE_LABELS[s], s)
        self.stage.currentIndexChanged.connect(lambda i: self.sigStage.emit(self.stage.itemData(i)))
        row.addWidget(self.stage)
        layout.addLayout(row)
        row2 = QHBoxLayout()
        row2.addWidget(QLabel("Colormap"))
        self.cmap = QComboBox()
        self.cmap.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.cmap.addItems(list(COLORMAPS))
        self.cmap.currentTextChanged.connect(self._cmap_changed)
        row2.addWidget(self.cmap)
        row2.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(55)
        self.opacity.valueChanged.connect(lambda v: self.sigOpacity.emit(v / 100.0))
        row2.addWidget(self.opacity, 1)
        layout.addLayout(row2)
        self.bar = ColorBar(COLORMAPS[0])
        layout.addWidget(self.bar)
        self.status = QLabel("No CAM yet: run the analysis.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

    def _cmap_changed(self, name: str) -> None:
        self.bar.set_cmap(name)
        self.sigCmap.emit(name)

    def current_stage(self) -> str:
        return self.stage.currentData()

    def set_available(self, stages: list[str]) -> None:
        if stages:
            self.status.setText("CAMs are shown on the picked slices they were computed on.")
        else:
            self.status.setText("No CAM yet: run the analysis.")
        for i in range(self.stage.count()):
            item = self.stage.model().item(i)
            item.setEnabled(not stages or self.stage.itemData(i) in stages)

    def step_opacity(self, delta: int) -> None:
        self.opacity.setValue(max(0, min(100, self.opacity.value() + delta)))

    def cycle_stage(self) -> str:
        self.stage.setCurrentIndex((self.stage.currentIndex() + 1) % self.stage.count())
        return self.current_stage()
