"""Errors the readers raise: one line each, naming the file or field at fault."""

from __future__ import annotations


class ExamError(Exception):
    """Nothing usable could be read from an exam; the message names the path and why."""


class LoadCancelled(Exception):
    """The caller cancelled a load; volumes decoded so far are left as they were."""


class LabelMeError(ValueError):
    """A LabelMe JSON file that cannot be read; the message names the file and the field."""


def one_line(text: object) -> str:
    """Collapse an exception text (or anything) to one line for problem lists."""
    s = " ".join(str(text).split())
    return s if len(s) <= 300 else s[:297] + "..."
