"""Keep Python's cyclic garbage collector from freezing the window.

A full collection walks every tracked object while holding the interpreter lock, in
whichever thread happens to trigger it: with Qt, pyqtgraph, scipy and pydicom loaded that
is 50-300 ms of a stopped GUI (measured while an exam decodes). Two measures:
`freeze()` moves the long-lived objects (modules, widgets) out of the collector's way, and
`paused()` holds automatic collection off while a loader churns through thousands of
short-lived DICOM objects, which reference counting frees anyway.
"""

from __future__ import annotations

import gc
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_pauses = 0


def freeze() -> None:
    """Exclude every object alive now from future collections (they are long-lived)."""
    gc.freeze()


@contextmanager
def paused():
    """No automatic collections inside the block (nesting and threads allowed)."""
    global _pauses
    with _lock:
        _pauses += 1
        gc.disable()
    try:
        yield
    finally:
        with _lock:
            _pauses -= 1
            if _pauses == 0:
                gc.enable()
