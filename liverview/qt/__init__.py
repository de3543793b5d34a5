"""Everything that imports PySide6 or pyqtgraph: windows, views, overlays, workers."""
