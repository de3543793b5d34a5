"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import sys
import time

from liverview.study.phases import PHASES


def phases_arg(text: str) -> tuple[str, ...]:
    """'AVD' -> ('A', 'V', 'D'), kept in P, A, V, D order."""
    letters = text.strip().upper()
    bad = [c for c in letters if c not in PHASES]
    if bad or not letters:
        raise ValueError(f"bad phase set {text!r}: use letters from PAVD, e.g. PAVD or AVD")
    return tuple(p for p in PHASES if p in letters)


class Progress:
    """A one-line progress printer for long loops (stderr, at most every `every` seconds)."""

    def __init__(self, label: str, every: float = 5.0) -> None:
        self.label, self.every, self.t0, self.last = label, every, time.time(), 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.time()
        if done == total or now - self.last >= self.every:
            self.last = now
            print(f"{self.label}: {done}/{total} ({now - self.t0:.0f} s)", file=sys.stderr, flush=True)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
