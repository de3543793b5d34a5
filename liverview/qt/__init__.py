"""Everything that imports PySide6 or pyqtgraph: windows, views, overlays, workers."""

from liverview.qt.refcount_guard import install as _install_refcount_guard

_install_refcount_guard()  # before any Qt signal is emitted (see refcount_guard)
