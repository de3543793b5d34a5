"""Persistent viewer settings (an INI file in the user's config folder): recent exams, layout."""

from __future__ import annotations

import threading

from PySide6.QtCore import QSettings

from liverview.qt.paths import settings_file

MAX_RECENT = 10
_recent_lock = threading.Lock()  # the list is read, changed and written back, maybe from a worker


def settings() -> QSettings:
    return QSettings(str(settings_file()), QSettings.Format.IniFormat)


def stored_bundle() -> str | None:
    """The model bundle folder the user chose last (Analysis > Choose model bundle folder), if any."""
    value = settings().value("engine/bundle", "")
    return str(value) if value else None


def recent_exams() -> list[str]:
    value = settings().value("recent/exams", [])
    if isinstance(value, str):  # QSettings returns a bare string for one-element lists
        value = [value]
    return [str(v) for v in (value or []) if v]


def add_recent_exam(path: str) -> list[str]:
    """Put path first in the recent list and write the file (an fsync: call it off the GUI thread)."""
    with _recent_lock:
        items = [path] + [p for p in recent_exams() if p != path]
        items = items[:MAX_RECENT]
        s = settings()
        s.setValue("recent/exams", items)
        s.sync()
        return items


def clear_recent_exams() -> None:
    with _recent_lock:
        s = settings()
        s.remove("recent/exams")
        s.sync()
