"""The application around the window: --demo --screenshot, the demo exam, crash logging, the keyboard map."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QKeySequence
from PySide6.QtWidgets import QTextBrowser

from liverview.qt import crashlog, keyboard

ROOT = Path(__file__).resolve().parents[2]


def clean_env(home: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(LIVERVIEW_HOME=str(home), LIVERVIEW_DEMO_MATRIX="64", **extra)
    env.pop("QT_QPA_PLATFORM", None)  # --screenshot must pick offscreen by itself without a display
    return env


def test_demo_screenshot_command_writes_the_window_as_png(tmp_path, tiny_bundle):
    out = tmp_path / "shots" / "demo.png"
    proc = subprocess.run(
        [sys.executable, "-m", "liverview", "--demo", "--screenshot", str(out), "--bundle", str(tiny_bundle)],
        env=clean_env(tmp_path / "home"), capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"screenshot written to {out}" in proc.stdout
    assert "result:" in proc.stdout and "p(malignant)=" in proc.stdout
    img = QImage(str(out))
    assert not img.isNull() and img.width() >= 1200 and img.height() >= 800
    colours = {img.pixelColor(x, y).name() for x in range(0, img.width(), 37) for y in range(0, img.height(), 41)}
    assert len(colours) > 50  # a rendered window (images, panels), not a blank page
    # the demo exam was generated into the private cache and the case was saved beside the user data
    assert list((tmp_path / "home" / "cache" / "demo").glob("*/*/truth.json"))
    cases = list((tmp_path / "home" / "data" / "cases").glob("*.json"))
    assert len(cases) == 1 and '"final_class"' in cases[0].read_text()


def test_screenshot_without_a_bundle_fails_with_a_message(tmp_path):
    out = tmp_path / "demo.png"
    proc = subprocess.run(
        [sys.executable, "-m", "liverview", "--demo", "--screenshot", str(out), "--bundle", str(tmp_path / "none")],
        env=clean_env(tmp_path / "home"), capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 1
    assert "screenshot failed: no model bundle" in proc.stderr  # errors go to stderr
    assert not out.exists()


def test_the_demo_menu_generates_and_opens_a_phantom_exam(window, qtbot, monkeypatch):
    monkeypatch.setenv("LIVERVIEW_DEMO_MATRIX", "64")
    with qtbot.waitSignal(window.sigExamLoaded, timeout=120000):
        window.open_demo()
    from liverview.qt.paths import cache_dir

    assert Path(window.path).is_relative_to(cache_dir() / "demo")
    assert window.study.phases == ["P", "A", "V", "D"]
    assert window.grid.views["V"].volume.pixels.shape[1:] == (64, 64)


def test_an_uncaught_exception_is_logged_and_shown(window, tmp_path):
    log_path = crashlog.install(tmp_path / "logs")
    crashlog.set_notifier(window.show_error)
    try:
        try:
            raise ValueError("pick list corrupted")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
    finally:
        crashlog.uninstall()
    text = log_path.read_text(encoding="utf-8")
    assert "uncaught exception" in text and "ValueError: pick list corrupted" in text
    assert "Traceback" in text
    assert window.last_error == "ValueError: pick list corrupted"
    assert (tmp_path / "logs" / "faults.log").exists()


def test_a_hard_crash_leaves_a_traceback_in_the_log_folder(tmp_path):
    code = (
        "import sys; from pathlib import Path; from liverview.qt import crashlog; "
        "crashlog.install(Path(sys.argv[1])); import faulthandler; faulthandler._sigsegv()"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    faults = (tmp_path / "faults.log").read_text(encoding="utf-8")
    assert "Fatal Python error" in faults and "Segmentation fault" in faults


def test_docs_keyboard_md_is_the_keyboard_table():
    assert (ROOT / "docs" / "keyboard.md").read_text(encoding="utf-8") == keyboard.markdown()


def test_every_keyboard_entry_is_a_window_shortcut_and_listed_in_help(window, qtbot):
    for entry in keyboard.KEYS:
        if not entry.action:
            continue
        act = window.actions[entry.action]
        assert [s.toString() for s in act.shortcuts()] == [QKeySequence(k).toString() for k in entry.keys]
    sequences = [s.toString() for a in window.actions.values() for s in a.shortcuts()]
    assert len(sequences) == len(set(sequences)), "two actions share a shortcut"
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_F1)
    assert window.keyboard_dialog.isVisible()
    html = window.keyboard_dialog.findChild(QTextBrowser).toPlainText()
    for entry in keyboard.KEYS:
        assert entry.text in html
