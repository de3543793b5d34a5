"""Keep True, False and None alive under a PySide6 reference-count bug on CPython < 3.12.

PySide6 6.12 on CPython 3.11 drops one reference to True on every `Signal.emit()` and one
to None on every Qt signal delivered to a Python slot (tests/qt/test_refcount_guard.py
measures it). CPython 3.12 made these singletons immortal, so there the bug is harmless;
on 3.11 their counts reach zero after a few thousand signals and the interpreter aborts
("Fatal Python error: bool_dealloc"). Adding a large constant to the three counts is what
3.12's immortality amounts to; nothing else changes.
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
