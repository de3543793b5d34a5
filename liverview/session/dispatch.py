"""Where the session's work runs: calls posted from worker threads run on the session's own thread."""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable


class CallQueue:
    """The session's event loop without Qt: `post` from any thread, `process` on the session's thread.

    The Qt layer replaces it with a poster onto the GUI thread; plain tests and the command
    line drain it with `run_until`, which waits on the events it needs, never on a fixed time.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple]] = queue.SimpleQueue()
        self.thread = threading.get_ident()

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        self._calls.put((fn, args))

    def process(self, timeout: float = 0.0) -> int:
        """Run every posted call; wait up to `timeout` s for the first one. Returns how many ran."""
        n = 0
        try:
            fn, args = self._calls.get(timeout=timeout) if timeout > 0 else self._calls.get_nowait()
        except queue.Empty:
            return 0
        while True:
            fn(*args)
            n += 1
            try:
                fn, args = self._calls.get_nowait()
            except queue.Empty:
                return n

    def run_until(self, done: Callable[[], bool], timeout: float = 60.0) -> bool:
        """Process calls until `done()` holds; False when `timeout` s pass first."""
        end = time.monotonic() + timeout
        while not done():
            left = end - time.monotonic()
            if left <= 0:
                return False
            self.process(min(left, 0.05))
        return True
