"""PySide6 keeps its references to True, False and None (6.12.0 does not, fatally on CPython 3.11).

Measured with pyqtgraph 0.14.0 on CPython 3.11.7, 10,000 signals of each kind:
PySide6 6.12.0 loses 10,000 references to True (Signal.emit) and 10,000 to None (QAction.toggled
delivered to a Python slot); 6.11.3, 6.11.0, 6.10.3, 6.9.3, 6.8.3 and 6.7.3 lose none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from PySide6 import __version__ as PYSIDE_VERSION

SIGNALS = 10_000

VIEWER_SIGNALS = r"""
import sys
import liverview.qt
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

# The extra references keep a buggy build alive long enough to report its drift instead of aborting.
UNGUARDED = f"N = {SIGNALS}\n" + r"""
import json, os, sys
keep = [True, False, None] * 40000
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication
import pyqtgraph

app = QApplication([])

class Source(QObject):
    flag = Signal(bool)
    plain = Signal()

src = Source()
calls = [0]
def on_flag(value):
    calls[0] += 1
src.flag.connect(on_flag)
src.plain.connect(lambda: None)
act = QAction()
act.setCheckable(True)
act.toggled.connect(lambda on: None)

def counts():
    return {"True": sys.getrefcount(True), "False": sys.getrefcount(False), "None": sys.getrefcount(None)}

drift = {}
for name, fire in (("emit(bool)", lambda i: src.flag.emit(i % 2 == 0)),
                   ("emit()", lambda i: src.plain.emit()),
                   ("QAction.toggled", lambda i: act.toggle())):
    before = counts()
    for i in range(N):
        fire(i)
    after = counts()
    drift[name] = {k: after[k] - before[k] for k in before}
print(json.dumps(drift), flush=True)
os._exit(0)  # the bug's missing references would make a normal shutdown abort
"""


def _run(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})


def test_thirty_thousand_signals_do_not_abort_the_interpreter():
    proc = _run(VIEWER_SIGNALS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "signals 30000" in proc.stdout


def test_the_supported_pyside6_does_not_drop_references_to_true_false_or_none():
    proc = _run(UNGUARDED)
    assert proc.returncode == 0, proc.stderr[-2000:]
    drift = json.loads(proc.stdout.strip().splitlines()[-1])
    for signal, by_object in drift.items():
        for obj, change in by_object.items():
            assert abs(change) < SIGNALS // 100, (
                f"PySide6 {PYSIDE_VERSION}: {signal} changed {obj}'s count by {change}; pyproject requires <6.12")
