"""Background tasks for the GUI: run a function on a pool thread with progress, cancel and errors."""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from liverview.engine.errors import one_line

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


class Cancelled(Exception):
    """Raised inside a task when the user cancelled it."""


class TaskSignals(QObject):
    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()  # always last, whatever the outcome


class Task(QRunnable):
    """Runs fn(progress, cancelled) off the GUI thread; the outcome arrives as Qt signals.

    Progress is throttled to one signal per 50 ms so a chatty task cannot flood the GUI.
    A failure is logged with its traceback and reported as one line. `user_work` marks work
    the user started and would want to be asked about before quitting; housekeeping (handing
    an exam to the engine, warming up imports) is cancelled silently.
    """

    def __init__(self, fn: Callable[[ProgressFn, CancelFn], Any], name: str, user_work: bool = True) -> None:
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.name = name
        self.user_work = user_work
        self.signals = TaskSignals()
        self._cancel = threading.Event()
        self._last_progress = 0.0
        self.running = True

    def cancel(self) -> None:
        self._cancel.set()

    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    def _progress(self, fraction: float, message: str = "") -> None:
        if self._cancel.is_set():
            raise Cancelled()
        now = time.monotonic()
        if fraction >= 1.0 or now - self._last_progress >= 0.05:
            self._last_progress = now
            self.signals.progress.emit(float(fraction), str(message))

    def run(self) -> None:
        try:
            result = self.fn(self._progress, self.is_cancelled)
        except Cancelled:
            self.signals.cancelled.emit()
        except Exception as exc:  # reported to the user, never silent
            if self._cancel.is_set():
                self.signals.cancelled.emit()
            else:
                log.error("task %s failed:\n%s", self.name, traceback.format_exc())
                self.signals.failed.emit(one_line(exc))
        else:
            if self._cancel.is_set():
                self.signals.cancelled.emit()
            else:
                self.signals.done.emit(result)
        finally:
            self.running = False
            self.signals.finished.emit()


class TaskRunner(QObject):
    """Starts tasks on a private thread pool and remembers which are still running."""

    def __init__(self, parent: QObject | None = None, threads: int = 2) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self.tasks: list[Task] = []

    def start(self, task: Task) -> Task:
        self.tasks.append(task)
        task.signals.finished.connect(lambda t=task: self._forget(t))
        self.pool.start(task)
        return task

    def _forget(self, task: Task) -> None:
        if task in self.tasks:
            self.tasks.remove(task)

    def busy(self) -> list[str]:
        """Names of the running tasks the user started (housekeeping is left out)."""
        return [t.name for t in self.tasks if t.running and t.user_work]

    def cancel_all(self) -> None:
        for t in self.tasks:
            t.cancel()

    def wait(self, msecs: int = 5000) -> bool:
        return self.pool.waitForDone(msecs)
