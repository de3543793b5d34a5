"""Save a case after every edit: a snapshot on the session's thread, the atomic write on a writer thread."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from liverview.study.case import Case
from liverview.study.persist import save_case

log = logging.getLogger(__name__)


class _Snapshot:
    """The case as it was at one edit; save_case only needs to_dict()."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def to_dict(self) -> dict[str, Any]:
        return self._data


class CaseSaver:
    """Writes the newest state of a case to `path` whenever the case announces a change.

    Edits made in one turn of the session's loop share one snapshot (taken by the call
    `post` schedules), and edits that arrive while a write runs are coalesced: only the
    latest state is written next, so the file always ends up equal to the case. `flush()`
    waits for it. `on_saved(path)` / `on_failed(message)` are called from the writer thread.
    """

    def __init__(self, case: Case, path: str | Path, post: Callable[..., None],
                 on_failed: Callable[[str], None] | None = None, on_saved: Callable[[str], None] | None = None) -> None:
        self.case = case
        self.path = Path(path)
        self.post = post
        self.on_failed = on_failed
        self.on_saved = on_saved
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
        if not self._scheduled:
            self._scheduled = True
            self.post(self.save_now)

    def save_now(self) -> None:
        if self.case is None:
            return
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
                if self.on_failed is not None:
                    self.on_failed(f"could not save the case to {self.path}: {exc}")
            else:
                self.saves += 1
                if self.on_saved is not None:
                    self.on_saved(str(self.path))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every edit so far is on disk (call on the session's thread)."""
        if self._scheduled:
            self.save_now()
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self) -> None:
        """Write what is pending, stop the writer and let go of the case."""
        self.case.events.disconnect(self._on_event)
        self.flush()
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=10.0)
        self.case = None
        self.on_failed = self.on_saved = None
