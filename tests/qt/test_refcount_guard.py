"""The viewer survives many Qt signals on CPython 3.11 (PySide6 drops references to True and None)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import sys
import liverview.qt  # installs the guard
from PySide6.QtCore import QCoreApplication, QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication

app = QApplication([])

class Source(QObject):
    flag = Signal(bool)

src = Source()
seen = []
src.flag.connect(seen.append)
act = QAction()
act.setCheckable(True)
act.toggled.connect(lambda on: None)
for i in range(30000):
    src.flag.emit(i % 2 == 0)
    act.toggle()
print("signals", len(seen), flush=True)
"""


def test_thirty_thousand_signals_do_not_abort_the_interpreter():
    env_cmd = [sys.executable, "-c", SCRIPT]
    proc = subprocess.run(env_cmd, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "signals 30000" in proc.stdout
