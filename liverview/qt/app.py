"""`liverview [PATH] [--demo] [--screenshot FILE] [--bundle DIR]`: start the viewer (or render a screenshot)."""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger(__name__)


def _dark_palette(app) -> None:
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    pal = QPalette()
    colors = {
        QPalette.ColorRole.Window: "#2b2b2b", QPalette.ColorRole.WindowText: "#e0e0e0",
        QPalette.ColorRole.Base: "#1e1e1e", QPalette.ColorRole.AlternateBase: "#2b2b2b",
        QPalette.ColorRole.Text: "#e0e0e0", QPalette.ColorRole.Button: "#353535",
        QPalette.ColorRole.ButtonText: "#e0e0e0", QPalette.ColorRole.Highlight: "#1e88e5",
        QPalette.ColorRole.HighlightedText: "#ffffff", QPalette.ColorRole.ToolTipBase: "#424242",
        QPalette.ColorRole.ToolTipText: "#e0e0e0", QPalette.ColorRole.PlaceholderText: "#9e9e9e",
    }
    for role, color in colors.items():
        pal.setColor(role, QColor(color))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor("#7a7a7a"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor("#7a7a7a"))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.WindowText, QColor("#7a7a7a"))
    app.setPalette(pal)


def make_app():
    """The QApplication (created once), named so settings and paths land in liverview's folders."""
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        app = QApplication(sys.argv[:1])
        _dark_palette(app)
    app.setApplicationName("liverview")
    return app


def run_viewer(args) -> int:
    launched = time.perf_counter()
    if args.screenshot and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QTimer

    from liverview.engine.client import EngineClient
    from liverview.qt.settings import stored_bundle

    engine = EngineClient(args.bundle or stored_bundle())
    engine.start()  # torch loads in the engine process while the window is built

    from liverview.qt import crashlog
    from liverview.qt.main_window import MainWindow
    from liverview.qt.paths import log_dir

    app = make_app()
    crashlog.install(log_dir())
    window = MainWindow(engine=engine)
    crashlog.set_notifier(window.show_error)
    window.show()
    app.processEvents()  # the first expose and paint
    shown = time.perf_counter() - launched
    log.info("main window visible %.3f s after run_viewer started", shown)
    report = os.environ.get("LIVERVIEW_REPORT_STARTUP")  # used by benchmarks/gui_scroll.py and first_result.py
    if report:
        print(f"liverview-window-visible {shown:.3f}", flush=True)
        if report == "exit":
            QTimer.singleShot(0, app.quit)
        elif report == "analyze":
            from liverview.qt.main_window import report_startup

            report_startup(window, launched, report)
    QTimer.singleShot(0, window.start_engine)  # hands the engine the exam once one is open

    driver = None
    if args.screenshot:
        from liverview.qt.screenshot import ScreenshotDriver

        driver = ScreenshotDriver(window, args.screenshot)
        QTimer.singleShot(0, (lambda: window.open_path(args.path)) if args.path and not args.demo else window.open_demo)
    elif args.demo:
        QTimer.singleShot(0, window.open_demo)
    elif args.path:
        QTimer.singleShot(0, lambda: window.open_path(args.path))
    rc = app.exec()
    if window.isVisible() or driver is not None:
        window.shutdown()
    if driver is not None:
        return driver.exit_code
    return int(rc)
