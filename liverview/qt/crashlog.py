"""Logging for the viewer: a rotating log file, faulthandler, and hooks for uncaught exceptions."""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import sys
import threading
from pathlib import Path
from typing import Callable

log = logging.getLogger("liverview")
_fault_file = None
_notify: Callable[[str], None] | None = None


def install(log_dir: Path) -> Path:
    """Log to log_dir/liverview.log, dump hard crashes to log_dir/faults.log, hook excepthooks."""
    global _fault_file
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / "liverview.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    if _fault_file is None:
        _fault_file = open(log_dir / "faults.log", "a", encoding="utf-8")  # noqa: SIM115 - kept open for faulthandler
        faulthandler.enable(file=_fault_file, all_threads=True)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
    log.info("liverview log started (%s)", path)
    return path


def uninstall() -> None:
    """Undo install(): the default hooks, no log file handler, faulthandler off (tests use this)."""
    global _fault_file
    sys.excepthook = sys.__excepthook__
    threading.excepthook = threading.__excepthook__
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, logging.handlers.RotatingFileHandler) and h.baseFilename.endswith("liverview.log"):
            root.removeHandler(h)
            h.close()
    if _fault_file is not None:
        faulthandler.disable()
        _fault_file.close()
        _fault_file = None
    set_notifier(None)


def set_notifier(notify: Callable[[str], None] | None) -> None:
    """Who tells the user about an uncaught exception (the main window's message box)."""
    global _notify
    _notify = notify


def _excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    log.error("uncaught exception", exc_info=(exc_type, exc, tb))
    if _notify is not None:
        try:
            _notify(f"{exc_type.__name__}: {exc}")
        except Exception:  # the notifier itself must never recurse into the hook
            log.exception("could not show the error to the user")


def _thread_excepthook(args) -> None:
    log.error("uncaught exception in thread %s", getattr(args.thread, "name", "?"),
              exc_info=(args.exc_type, args.exc_value, args.exc_traceback))
