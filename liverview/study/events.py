"""A tiny Qt-free observer so the data model can announce changes to views and stores."""

from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]


class Events:
    """Listeners get (kind, payload); a failing listener is logged, never breaks the model."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def connect(self, listener: Listener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def disconnect(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def emit(self, kind: str, **payload: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, payload)
            except Exception:  # a view's bug must not corrupt the case
                log.exception("listener %r failed on %s", listener, kind)
