"""Where the viewer keeps its files: user data (case files), cache (demo exams), logs, settings."""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QStandardPaths

APP_NAME = "liverview"
HOME_ENV = "LIVERVIEW_HOME"  # one folder for everything (tests, portable installs)


def _ensure_app_name() -> None:
    if QCoreApplication.applicationName() != APP_NAME:
        QCoreApplication.setApplicationName(APP_NAME)
        QCoreApplication.setOrganizationName("")


def _location(kind: QStandardPaths.StandardLocation, sub: str) -> Path:
    root = os.environ.get(HOME_ENV)
    if root:
        path = Path(root) / sub
    else:
        _ensure_app_name()
        path = Path(QStandardPaths.writableLocation(kind))
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """User data: case files with picks, boxes and findings."""
    return _location(QStandardPaths.StandardLocation.AppLocalDataLocation, "data")


def cache_dir() -> Path:
    """Regenerable files: the demo phantom exam."""
    return _location(QStandardPaths.StandardLocation.CacheLocation, "cache")


def log_dir() -> Path:
    path = data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def settings_file() -> Path:
    return _location(QStandardPaths.StandardLocation.AppConfigLocation, "config") / "liverview.ini"
