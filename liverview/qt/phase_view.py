"""One phase's image view: a pyqtgraph ViewBox with the slice, CAM layer, texts, labels, scale bar."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QImage, QPen, QTransform
from PySide6.QtWidgets import QGraphicsItem, QGraphicsRectItem, QGraphicsSimpleTextItem

from liverview.study.phases import PHASE_NAMES
from liverview.study.volume import HU, Volume

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)

PHASE_COLORS = {"P": "#9ecae1", "A": "#fc9272", "V": "#a1d99b", "D": "#dadaeb"}
_TEXT_BACKING = QColor(0, 0, 0, 150)
_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # +x, -x / +y, -y / +z, -z in DICOM LPS


def direction_label(vector: np.ndarray) -> str:
    """Orientation letters of a patient-space direction, strongest axis first (e.g. "L", "LP")."""
    v = np.asarray(vector, dtype=float)
    n = np.linalg.norm(v)
    if n == 0:
        return ""
    v = v / n
    order = np.argsort(-np.abs(v))
    return "".join(_LETTERS[i][0 if v[i] > 0 else 1] for i in order if abs(v[i]) > 0.3)


class Geometry:
    """How a volume's pixels sit in the view: view coordinates are millimetres in the image plane.

    Pixel (col, row) corner maps to (ox + col*sx, oy + row*sy); ox, oy are the first pixel's
    position along the row and column directions, so phases of one exam line up in mm even
    when their field of view or matrix differ.
    """

    def __init__(self, volume: Volume) -> None:
        a = volume.affine
        self.sx = float(np.linalg.norm(a[:3, 0])) or 1.0
        self.sy = float(np.linalg.norm(a[:3, 1])) or 1.0
        u, v = a[:3, 0] / self.sx, a[:3, 1] / self.sy
        self.ox = float(a[:3, 3] @ u) - 0.5 * self.sx  # pixel centres at integer + 0.5
        self.oy = float(a[:3, 3] @ v) - 0.5 * self.sy
        self.rows, self.cols = volume.pixels.shape[1:]
        self.right, self.left = direction_label(u), direction_label(-u)
        self.bottom, self.top = direction_label(v), direction_label(-v)

    def transform(self) -> QTransform:
        """Pixel (image item) coordinates -> view millimetres, whatever the image shape."""
        return QTransform(self.sx, 0.0, 0.0, self.sy, self.ox, self.oy)

    def rect(self) -> QRectF:
        return QRectF(self.ox, self.oy, self.cols * self.sx, self.rows * self.sy)

    def to_view(self, x: float, y: float) -> tuple[float, float]:
        return self.ox + x * self.sx, self.oy + y * self.sy

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        return (x - self.ox) / self.sx, (y - self.oy) / self.sy


class CamImage(QGraphicsItem):
    """The Grad-CAM layer: a premultiplied ARGB32 image drawn over a rectangle of the view.

    Cheaper than a second pyqtgraph ImageItem: the image is coloured once per map, and Qt
    blends this pixel format without converting it on every paint.
    """

    def __init__(self) -> None:
        super().__init__()
        self.qimage: QImage | None = None
        self._rect = QRectF()

    def set_image(self, qimage: QImage, rect: QRectF) -> None:
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = rect
        self.qimage = qimage
        self.update()

    def boundingRect(self) -> QRectF:
        return self._rect

    def paint(self, painter, option, widget=None) -> None:
        if self.qimage is not None:
            # no smoothing: the map is already upsampled to about screen resolution (and
            # smoothing doubles the cost of the blend)
            painter.drawImage(self._rect, self.qimage)


class ScaleBar(QGraphicsItem):
    """A bar of fixed length in millimetres at the bottom-right of its view, with its label.

    Drawn from a cached pixmap; it changes only when the view zooms or resizes.
    """

    def __init__(self, view: "PhaseView") -> None:
        super().__init__(view)
        self.view = view
        self.mm = 10.0
        self.label = ""
        self.length_px = 0.0
        self.font = QFont()
        self.font.setPointSize(8)
        self.setZValue(1000)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        view.sigRangeChanged.connect(lambda *_: self.relayout())
        view.sigResized.connect(lambda *_: self.relayout())

    def set_mm(self, mm: float) -> None:
        self.mm = float(mm)
        self.label = f"{self.mm:g} mm"
        self.relayout()

    def relayout(self) -> None:
        (x0, x1), _ = self.view.viewRange()
        width = self.view.width()
        length = self.mm / (x1 - x0) * width if x1 > x0 and width > 0 else 0.0
        r = self.view.boundingRect()
        self.prepareGeometryChange()
        self.length_px = length
        self.setPos(r.right() - 18, r.bottom() - 30)
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(-max(self.length_px, 40.0) - 2, -16, max(self.length_px, 40.0) + 4, 22)

    def paint(self, painter, option, widget=None) -> None:
        if self.length_px <= 0:
            return
        color = QColor("#e0e0e0")
        painter.fillRect(QRectF(-self.length_px, 0, self.length_px, 4), color)
        painter.setPen(color)
        painter.setFont(self.font)
        painter.drawText(QRectF(-self.length_px - 20, -16, self.length_px + 40, 14),
                         Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom, self.label)


class CornerText(QGraphicsSimpleTextItem):
    """A text fixed to a spot of its view (not moving with pan or zoom); drawn from a small
    cached pixmap until it changes."""

    def __init__(self, parent, anchor: tuple[float, float], size: int = 10, color: str = "#e0e0e0",
                 offset: tuple[float, float] = (0.0, 0.0)) -> None:
        super().__init__(parent)
        self.anchor_at = anchor
        self.offset = offset
        font = QFont()
        font.setPointSize(size)
        self.setFont(font)
        self.setBrush(QBrush(QColor(color)))
        self.setZValue(1000)
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    def paint(self, painter, option, widget=None) -> None:
        if self.text():  # a dark backing keeps the text legible over bright tissue
            painter.fillRect(self.boundingRect(), _TEXT_BACKING)
        super().paint(painter, option, widget)

    def set(self, text: str) -> None:
        if text != self.text():
            self.setText(text)
            self.place()

    def place(self) -> None:
        parent = self.parentItem()
        if parent is None:
            return
        r = parent.boundingRect()
        b = self.boundingRect()
        ax, ay = self.anchor_at
        x = r.left() + ax * (r.width() - b.width()) + (6 if ax == 0 else -6 if ax == 1 else 0)
        y = r.top() + ay * (r.height() - b.height()) + (4 if ay == 0 else -4 if ay == 1 else 0)
        self.setPos(x + self.offset[0], y + self.offset[1])


class PhaseView(pg.ViewBox):
    """The view of one phase. Emits what the user does; the grid decides what it means."""

    sigScroll = Signal(object, int)  # view, slices (+ forward)
    sigWindowDrag = Signal(object, float, float)  # view, level, width
    sigActivated = Signal(object)
    sigBoxDrawn = Signal(object, tuple)  # view, (x0, y0, x1, y1) in pixels
    sigMessage = Signal(str)

    def __init__(self, phase: str) -> None:
        super().__init__(lockAspect=True, invertY=True, enableMenu=False, defaultPadding=0.0)
        self.phase = phase
        self.volume: Volume | None = None
        self.geom: Geometry | None = None
        self.positions = np.zeros(0)
        self.index = -1
        self.win_level, self.win_width = 40.0, 400.0
        self.picked = False
        self.draw_mode = False
        self.active = False
        self._wheel_rest = 0
        self._drag_window: tuple[float, float] | None = None
        self._rubber: QGraphicsRectItem | None = None
        self._shown_ready = False

        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(0)
        self.addItem(self.image)
        self.cam = CamImage()
        self.cam.setZValue(10)
        self.cam.hide()
        self.addItem(self.cam)
        self._cam_key: object = None

        color = PHASE_COLORS.get(phase, "#ffffff")
        self.title = CornerText(self, (0, 0), 11, color)
        self.info = CornerText(self, (0, 1), 9)
        self.window_text = CornerText(self, (1, 0), 9)
        self.pick_text = CornerText(self, (1, 1), 10, "#ffd54f")
        self.orient = {
            "left": CornerText(self, (0, 0.5), 10, "#ffeb3b"),
            "right": CornerText(self, (1, 0.5), 10, "#ffeb3b"),
            "top": CornerText(self, (0.5, 0), 10, "#ffeb3b", (0, 22)),  # below the title line
            "bottom": CornerText(self, (0.5, 1), 10, "#ffeb3b", (0, -20)),  # above the slice line
        }
        self.frame = QGraphicsRectItem(self)
        self.frame.setZValue(999)
        self.frame.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self._set_frame()
        self.scalebar = ScaleBar(self)
        self.scalebar.hide()
        self.title.set(f"{phase}  {PHASE_NAMES.get(phase, '')}  (not loaded)")
        self.sigResized.connect(self._place_texts)

    # ---- content ------------------------------------------------------------------------
    def set_volume(self, volume: Volume | None, description: str = "") -> None:
        self.volume = volume
        self.index = -1
        self._shown_ready = False
        self.cam.hide()
        self._cam_key = None
        if volume is None:
            self.geom = None
            self.positions = np.zeros(0)
            self.image.clear()
            self.scalebar.hide()
            self.title.set(f"{self.phase}  {PHASE_NAMES.get(self.phase, '')}  (not loaded)")
            self.info.set("")
            for t in self.orient.values():
                t.set("")
            return
        self.geom = g = Geometry(volume)
        self.positions = np.asarray(volume.positions, dtype=np.float64)
        self.image.setTransform(g.transform())
        name = PHASE_NAMES.get(self.phase, "")
        self.title.set(f"{self.phase}  {name}" + (f"  —  {description}" if description else ""))
        self.orient["left"].set(g.left)
        self.orient["right"].set(g.right)
        self.orient["top"].set(g.top)
        self.orient["bottom"].set(g.bottom)
        fov = g.cols * g.sx
        size = next((s for s in (100, 50, 20, 10, 5, 2, 1) if s <= fov / 4), 1)
        self.scalebar.set_mm(size)
        self.scalebar.show()

    def reset_range(self) -> None:
        if self.geom is not None:
            self.setRange(self.geom.rect(), padding=0.0)

    def index_for(self, position: float) -> int:
        if not len(self.positions):
            return -1
        return int(np.argmin(np.abs(self.positions - position)))

    def show_position(self, position: float) -> bool:
        """Show the slice nearest to `position`; True when the displayed slice changed."""
        k = self.index_for(position)
        if k < 0:
            return False
        ready = bool(self.volume.ready[k])
        if k == self.index and ready == self._shown_ready:
            return False
        self.index = k
        self._shown_ready = ready
        if ready:
            self.image.setImage(self.volume.pixels[k], autoLevels=False, levels=self._levels())
        else:
            self.image.clear()
        n = len(self.positions)
        gap = abs(self.positions[k] - position)
        step = abs(self.positions[1] - self.positions[0]) if n > 1 else 0.0
        note = "" if gap <= step / 2 + 1e-3 else f"  (nearest, {gap:.1f} mm away)"
        wait = "" if ready else "  loading…"
        self.info.set(f"slice {k + 1}/{n}   z {self.positions[k]:.1f} mm{note}{wait}")
        return True

    def refresh_if_ready(self) -> None:
        """Redraw the current slice when the loader has just decoded it."""
        if self.volume is not None and 0 <= self.index and not self._shown_ready and self.volume.ready[self.index]:
            pos = float(self.positions[self.index])
            self.index = -1
            self.show_position(pos)

    @property
    def position(self) -> float | None:
        return float(self.positions[self.index]) if self.index >= 0 else None

    def _levels(self) -> tuple[float, float]:
        if self.volume is not None and self.volume.intensity != HU:
            if self.volume.window is None:
                return (0.0, 255.0)
            # 8-bit exports: map the HU window onto the export's 0-255 scale
            el, ew = self.volume.window
            lo = (self.win_level - self.win_width / 2 - (el - ew / 2)) / ew * 255.0
            return (lo, lo + self.win_width / ew * 255.0)
        return (self.win_level - self.win_width / 2, self.win_level + self.win_width / 2)

    def set_window(self, level: float, width: float) -> None:
        self.win_level, self.win_width = float(level), max(1.0, float(width))
        self.image.setLevels(self._levels())
        if self.volume is not None and self.volume.intensity != HU and self.volume.window is None:
            self.window_text.set("8-bit export, not HU")  # no window known: the grey levels are shown as they are
        elif self.volume is not None and self.volume.intensity != HU:
            self.window_text.set(f"W {self.win_width:.0f}  L {self.win_level:.0f} (from 8-bit, not HU)")
        else:
            self.window_text.set(f"W {self.win_width:.0f}  L {self.win_level:.0f}")

    def set_picked(self, picked: bool, rank: int | None = None) -> None:
        self.picked = picked
        self.pick_text.set(f"picked {rank + 1}/3" if picked and rank is not None else "")

    def set_active(self, active: bool) -> None:
        self.active = active
        self._set_frame()

    def set_cam(self, key: object, image: QImage | None, rect_pixels: tuple[float, float, float, float] | None) -> None:
        """Show a coloured CAM over the pixel rectangle, or hide it (image None)."""
        if image is None or self.geom is None:
            if self.cam.isVisible():
                self.cam.hide()
            self._cam_key = None
            return
        if key != self._cam_key:
            self._cam_key = key
            x0, y0, x1, y1 = rect_pixels
            vx0, vy0 = self.geom.to_view(x0, y0)
            vx1, vy1 = self.geom.to_view(x1, y1)
            self.cam.set_image(image, QRectF(vx0, vy0, vx1 - vx0, vy1 - vy0))
        if not self.cam.isVisible():
            self.cam.show()

    # ---- pixel readout ------------------------------------------------------------------
    def readout(self, scene_pos: QPointF) -> dict | None:
        """Pixel, value and patient position under a scene point, or None outside the image."""
        if self.geom is None or self.index < 0 or not self.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.mapSceneToView(scene_pos)
        x, y = self.geom.to_pixel(p.x(), p.y())
        col, row = int(np.floor(x)), int(np.floor(y))
        if not (0 <= col < self.geom.cols and 0 <= row < self.geom.rows):
            return None
        value = float(self.volume.pixels[self.index, row, col]) if self.volume.ready[self.index] else float("nan")
        lps = self.volume.to_patient(col, row, self.index)
        return {"phase": self.phase, "col": col, "row": row, "slice": self.index, "value": value,
                "unit": "HU" if self.volume.intensity == HU else "", "lps": tuple(float(c) for c in lps)}

    # ---- mouse --------------------------------------------------------------------------
    def wheelEvent(self, ev, axis=None) -> None:
        if ev.modifiers() & Qt.KeyboardModifier.ControlModifier:
            super().wheelEvent(ev, axis)
            return
        self._wheel_rest += ev.delta()
        steps = int(self._wheel_rest / 120)
        if steps:
            self._wheel_rest -= steps * 120
            self.sigScroll.emit(self, -steps)  # wheel away from the user = towards the head
        ev.accept()

    def mouseClickEvent(self, ev) -> None:
        if ev.button() == Qt.MouseButton.LeftButton:
            self.sigActivated.emit(self)
            ev.accept()
        else:
            ev.ignore()

    def mouseDragEvent(self, ev, axis=None) -> None:
        button = ev.button()
        if button == Qt.MouseButton.RightButton:
            ev.accept()
            if ev.isStart():
                self._drag_window = (self.win_level, self.win_width)
                self.sigActivated.emit(self)
            if self._drag_window is None:
                return
            level0, width0 = self._drag_window
            d = ev.screenPos() - ev.buttonDownScreenPos(button)
            width = max(1.0, width0 * float(np.exp(d.x() / 200.0)))
            level = level0 - d.y() * width0 / 200.0
            self.sigWindowDrag.emit(self, level, width)
            if ev.isFinish():
                self._drag_window = None
            return
        drawing = button == Qt.MouseButton.LeftButton and (
            self.draw_mode or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier) or self._rubber is not None
        )
        if drawing:
            ev.accept()
            self._drag_draw(ev)
            return
        super().mouseDragEvent(ev, axis)

    def _drag_draw(self, ev) -> None:
        if ev.isStart():
            self.sigActivated.emit(self)
            if self.geom is None:
                return
            if not self.picked:
                self.sigMessage.emit(f"phase {self.phase}: pick this slice first (Space), then draw its box")
                return
            self._rubber = QGraphicsRectItem()
            pen = QPen(QColor("#00e5ff"))
            pen.setCosmetic(True)
            pen.setStyle(Qt.PenStyle.DotLine)
            self._rubber.setPen(pen)
            self._rubber.setZValue(50)
            self.addItem(self._rubber, ignoreBounds=True)
        if self._rubber is None:
            return
        a = self.mapToView(ev.buttonDownPos(Qt.MouseButton.LeftButton))
        b = self.mapToView(ev.pos())
        self._rubber.setRect(QRectF(a, b).normalized())
        if ev.isFinish():
            r = self._rubber.rect()
            self.removeItem(self._rubber)
            self._rubber = None
            g = self.geom
            x0, y0 = g.to_pixel(r.left(), r.top())
            x1, y1 = g.to_pixel(r.right(), r.bottom())
            x0, x1 = max(0.0, x0), min(float(g.cols), x1)
            y0, y1 = max(0.0, y0), min(float(g.rows), y1)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                self.sigBoxDrawn.emit(self, (x0, y0, x1, y1))
            else:
                self.sigMessage.emit("box too small: drag over at least 2 x 2 pixels")

    # ---- decoration ---------------------------------------------------------------------
    def _set_frame(self) -> None:
        pen = QPen(QColor("#ffd54f" if self.active else "#404040"))
        pen.setWidth(2 if self.active else 1)
        self.frame.setPen(pen)
        self.frame.setRect(self.boundingRect().adjusted(1, 1, -1, -1))

    def _place_texts(self) -> None:
        for t in (self.title, self.info, self.window_text, self.pick_text, *self.orient.values()):
            t.place()
        self._set_frame()
