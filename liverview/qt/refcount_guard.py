"""Keep True, False and None alive under PySide6 6.12.0's reference-count bug on CPython < 3.12.

PySide6 6.12.0 on CPython 3.11 drops one reference to True on every `Signal.emit()` and one
to None on every Qt signal delivered to a Python slot. Measured over 10,000 signals with
pyqtgraph 0.14.0 (tests/qt/test_refcount_guard.py repeats it): 6.12.0 loses 10,000 references
to True (emit) and 10,000 to None (QAction.toggled to a Python slot); 6.11.3, 6.11.0, 6.10.3,
6.9.3, 6.8.3 and 6.7.3 lose none. pyproject therefore requires PySide6-Essentials <6.12; this
guard only keeps an environment that still has 6.12.0 from aborting ("Fatal Python error:
bool_dealloc") after a few thousand signals. CPython 3.12 made these singletons immortal, so
there the bug is harmless. Adding a large constant to the three counts is what 3.12's
immortality amounts to; nothing else changes.
"""

from __future__ import annotations

import ctypes
import sys

_BOOST = 1 << 40
_installed = False


def install() -> bool:
    """Make the three singletons practically immortal; True when the guard was applied."""
    global _installed
    if _installed or sys.version_info >= (3, 12):
        return _installed
    for obj in (True, False, None):
        count = ctypes.c_ssize_t.from_address(id(obj))
        if abs(count.value - sys.getrefcount(obj)) > 64:  # not the usual object layout: leave it alone
            return False
    for obj in (True, False, None):
        ctypes.c_ssize_t.from_address(id(obj)).value += _BOOST
    _installed = True
    return True
