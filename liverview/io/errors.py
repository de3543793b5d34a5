"""Errors the readers raise: one line each, naming the file or field at fault."""

from __future__ import annotations


class ExamError(Exception):
    """Nothing usable could be read from an exam; the message names the path and why, `details`
    lists every reason behind it (one line each: the series or file and what was wrong)."""

    def __init__(self, message: str, details: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.details = [one_line(d) for d in details]


class LoadCancelled(Exception):
    """The caller cancelled a load; volumes decoded so far are left as they were."""


class LabelMeError(ValueError):
    """A LabelMe JSON file that cannot be read; the message names the file and the field."""


def printable(text: object) -> str:
    """`text` as a string that any UTF-8 stream can print: a file name's undecodable bytes become U+FFFD."""
    s = str(text)
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        pass
    try:  # names read from disk carry their non-UTF-8 bytes as surrogate escapes
        return s.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(text: object) -> str:
    """Collapse an exception text (or anything) to one printable line for problem lists."""
    s = " ".join(printable(text).split())
    return s if len(s) <= 300 else s[:297] + "..."
