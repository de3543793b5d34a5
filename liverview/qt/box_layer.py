"""Lesion boxes on a phase view: editable rectangles (pyqtgraph ROIs) for the boxes of the shown slice."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import QObject, QPointF, Qt, Signal
from PySide6.QtGui import QColor

from liverview.qt.phase_view import PhaseView
from liverview.study.case import Box

STYLE = {
    # origin, accepted -> colour, line style
    ("user", True): ("#00e5ff", Qt.PenStyle.SolidLine),
    ("ai", False): ("#ff9800", Qt.PenStyle.DashLine),
    ("ai", True): ("#ff9800", Qt.PenStyle.SolidLine),
    ("truth", True): ("#e040fb", Qt.PenStyle.DotLine),
}
SELECTED = "#ffff00"


def box_caption(box: Box) -> str:
    if box.origin == "ai":
        score = f" {box.score:.2f}" if box.score is not None else ""
        return f"AI{score}" + (" ✓" if box.accepted else "")
    return "" if box.origin == "user" else box.origin


class BoxROI(pg.ROI):
    """A rectangle with corner and edge handles that remembers which Box it shows."""

    def __init__(self) -> None:
        super().__init__((0, 0), (1, 1), movable=True, rotatable=False, resizable=True, removable=False)
        for pos, center in (((0, 0), (1, 1)), ((1, 0), (0, 1)), ((0, 1), (1, 0)), ((1, 1), (0, 0))):
            self.addScaleHandle(pos, center)  # corner handles: each resizes against the opposite corner
        self.setAcceptedMouseButtons(Qt.MouseButton.LeftButton)
        self.setZValue(20)
        self.box_id: str | None = None
        self.caption = pg.TextItem(anchor=(0, 0))  # inside the box's top-left corner: visible at image edges too
        self.caption.setParentItem(self)
        self._style: tuple = ()

    def show_box(self, box: Box, view_rect: tuple[float, float, float, float], selected: bool) -> None:
        self.box_id = box.id
        x0, y0, x1, y1 = view_rect
        self.setPos((x0, y0), update=False, finish=False)
        self.setSize((x1 - x0, y1 - y0), update=False, finish=False)
        if selected:
            self.stateChanged(finish=False)  # places the resize handles
        else:
            self.update()  # handles are hidden: they are placed when the box is selected
        style = (box.origin, box.accepted, selected, box.score)
        if style != self._style:
            self._style = style
            color, line = STYLE.get((box.origin, box.accepted), STYLE[("user", True)])
            pen = pg.mkPen(SELECTED if selected else color, width=3 if selected else 2, style=line)
            self.setPen(pen)
            self.hoverPen = pg.mkPen(SELECTED, width=3, style=line)
            self.currentPen = self.pen
            for h in self.getHandles():
                h.pen = pg.mkPen(color)
                h.currentPen = h.pen
                h.update()
            text = box_caption(box)
            self.caption.setText(text, color=QColor(color))
            self.caption.setVisible(bool(text))
            for h in self.getHandles():  # resize handles on the selected box only: less to draw per slice
                h.setVisible(selected)
        self.update()


class BoxLayer(QObject):
    """Shows a view's boxes for its current slice; reports moves, resizes and clicks."""

    sigChanged = Signal(str, tuple)  # box id, (x0, y0, x1, y1) in pixels
    sigSelected = Signal(str)

    def __init__(self, view: PhaseView) -> None:
        super().__init__()
        self.view = view
        self.rois: list[BoxROI] = []
        self._shown: tuple = ()

    def _roi(self, i: int) -> BoxROI:
        while len(self.rois) <= i:
            roi = BoxROI()
            roi.sigRegionChangeFinished.connect(self._finished)
            roi.sigClicked.connect(lambda r, ev: self._clicked(r))
            roi.sigRegionChangeStarted.connect(lambda r: self._clicked(r))
            roi.hide()
            self.view.addItem(roi, ignoreBounds=True)
            self.rois.append(roi)
        return self.rois[i]

    def show(self, boxes: list[Box], selected: str | None) -> None:
        g = self.view.geom
        key = tuple((b.id, b.rect, b.origin, b.accepted, b.score, b.id == selected) for b in boxes)
        if key == self._shown or g is None:
            return
        self._shown = key
        for i, box in enumerate(boxes):
            roi = self._roi(i)
            vx0, vy0 = g.to_view(box.x0, box.y0)
            vx1, vy1 = g.to_view(box.x1, box.y1)
            roi.show_box(box, (vx0, vy0, vx1, vy1), box.id == selected)
            if not roi.isVisible():
                roi.show()
        for roi in self.rois[len(boxes):]:
            if roi.isVisible():
                roi.hide()
            roi.box_id = None

    def prewarm(self, n: int) -> bool:
        """Create one more pooled ROI if fewer than n exist (building one costs tens of ms, so
        the grid does it in idle time, not while the user scrolls); True when more are needed."""
        if len(self.rois) < n:
            self._roi(len(self.rois))
        return len(self.rois) < n

    def forget(self) -> None:
        """Force the next show() to redraw (after the view's volume changed)."""
        self._shown = ()

    def roi_for(self, box_id: str) -> BoxROI | None:
        return next((r for r in self.rois if r.box_id == box_id and r.isVisible()), None)

    def _clicked(self, roi: BoxROI) -> None:
        if roi.box_id:
            self.sigSelected.emit(roi.box_id)

    def _finished(self, roi: BoxROI) -> None:
        g = self.view.geom
        if roi.box_id is None or g is None:
            return
        pos: QPointF = roi.pos()
        size = roi.size()
        x0, y0 = g.to_pixel(pos.x(), pos.y())
        x1, y1 = g.to_pixel(pos.x() + size.x(), pos.y() + size.y())
        x0, x1 = sorted((max(0.0, x0), min(float(g.cols), x1)))
        y0, y1 = sorted((max(0.0, y0), min(float(g.rows), y1)))
        self._shown = ()  # the model answers with the stored (clipped) rectangle
        self.sigChanged.emit(roi.box_id, (x0, y0, x1, y1))
