"""Save a case after every edit: snapshot on the GUI thread, atomic write (persist.save_case) on a writer thread."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from liverview.study.case import Case
from liverview.study.persist import save_case

log = logging.getLogger(__name__)


class _Snapshot:
    """The case as it was at one edit; save_case only needs to_dict()."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        return self._data


class CaseSaver(QObject):
    """Writes the newest state of a case to `path` whenever the case announces a change.

    Edits of one event-loop turn share one snapshot, and edits that arrive while a write is
    running are coalesced: only the latest state is written next, so the file always ends up
    equal to the case. `flush()` waits for it.
    """

    sigSaved = Signal(str)
    sigFailed = Signal(str)

    def __init__(self, case: Case, path: str | Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.case = case
        self.path = Path(path)
        self.saves = 0
        self._cond = threading.Condition()
        self._pending: dict[str, Any] | None = None
        self._busy = False
        self._stop = False
        self._scheduled = False
        self._thread = threading.Thread(target=self._run, name="case-saver", daemon=True)
        self._thread.start()
        case.events.connect(self._on_event)

    def _on_event(self, kind: str, payload: dict) -> None:
        # several edits in one step (auto-pick sets four phases) make one snapshot, taken as
        # soon as control returns to the event loop
        if not self._scheduled:
            self._scheduled = True
            QTimer.singleShot(0, self.save_now)

    def save_now(self) -> None:
        self._scheduled = False
        data = self.case.to_dict()
        with self._cond:
            self._pending = data
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stop:
                    self._cond.wait()
                if self._pending is None and self._stop:
                    return
                data, self._pending = self._pending, None
                self._busy = True
            try:
                save_case(_Snapshot(data), self.path)
            except Exception as exc:  # reported to the user; the next edit tries again
                log.exception("could not save the case to %s", self.path)
                self.sigFailed.emit(f"could not save the case to {self.path}: {exc}")
            else:
                self.saves += 1
                self.sigSaved.emit(str(self.path))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every edit so far is on disk."""
        if self._scheduled:
            self.save_now()
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self) -> None:
        self.case.events.disconnect(self._on_event)
        self.flush()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10.0)
