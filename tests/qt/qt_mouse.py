"""Mouse helpers for the viewer tests: real QMouseEvents on the grid's viewport at view (mm) or pixel positions."""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication


def pixel_to_widget(grid, phase: str, x: float, y: float) -> QPoint:
    """Widget (viewport) position of pixel (x, y) of a phase's current slice."""
    view = grid.views[phase]
    vx, vy = view.geom.to_view(x, y)
    scene = view.mapViewToScene(QPointF(vx, vy))
    return grid.mapFromScene(scene)


def _send(grid, kind, pos: QPoint, button, buttons, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    vp = grid.viewport()
    ev = QMouseEvent(kind, QPointF(pos), QPointF(vp.mapToGlobal(pos)), button, buttons, modifiers)
    QApplication.sendEvent(vp, ev)


def drag(grid, a: QPoint, b: QPoint, button=Qt.MouseButton.LeftButton,
         modifiers=Qt.KeyboardModifier.NoModifier, steps: int = 8) -> None:
    """Press at a, move in steps to b, release: what a hand on the mouse does.

    pyqtgraph drops mouse moves closer than 10 ms apart (its mouse rate limit), so the
    moves are spaced like a real hand's.
    """
    _send(grid, QEvent.Type.MouseButtonPress, a, button, button, modifiers)
    for i in range(1, steps + 1):
        time.sleep(0.012)
        p = QPoint(a.x() + (b.x() - a.x()) * i // steps, a.y() + (b.y() - a.y()) * i // steps)
        _send(grid, QEvent.Type.MouseMove, p, Qt.MouseButton.NoButton, button, modifiers)
    _send(grid, QEvent.Type.MouseButtonRelease, b, button, Qt.MouseButton.NoButton, modifiers)


def click(grid, pos: QPoint, button=Qt.MouseButton.LeftButton) -> None:
    _send(grid, QEvent.Type.MouseButtonPress, pos, button, button)
    _send(grid, QEvent.Type.MouseButtonRelease, pos, button, Qt.MouseButton.NoButton)


def hover(grid, pos: QPoint) -> None:
    time.sleep(0.012)
    _send(grid, QEvent.Type.MouseMove, pos, Qt.MouseButton.NoButton, Qt.MouseButton.NoButton)


def wheel(grid, pos: QPoint, notches: int, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    vp = grid.viewport()
    ev = QWheelEvent(QPointF(pos), QPointF(vp.mapToGlobal(pos)), QPoint(0, 0), QPoint(0, 120 * notches),
                     Qt.MouseButton.NoButton, modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(vp, ev)
