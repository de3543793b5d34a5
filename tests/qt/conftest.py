"""Fixtures for the viewer tests: offscreen Qt, a private LIVERVIEW_HOME, small synthetic and phantom exams."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))  # qt_mouse: the tests' mouse helpers

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from liverview.study.case import PhaseSource, Study  # noqa: E402
from liverview.study.phases import PHASES  # noqa: E402
from liverview.study.volume import Volume  # noqa: E402


@pytest.fixture(autouse=True)
def liverview_home(tmp_path, monkeypatch):
    """Settings, case files, logs and the demo cache go to a fresh folder per test."""
    home = tmp_path / "lv-home"
    monkeypatch.setenv("LIVERVIEW_HOME", str(home))
    return home


def synthetic_study(n_slices: int = 24, size: int = 64, shift_mm: float = 0.0, uid: str = "1.2.826.0.1.99") -> Study:
    """Four phases of a bright disc ("lesion") in noise; phase k is shifted by k * shift_mm in z."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    volumes, sources = {}, {}
    for i, p in enumerate(PHASES):
        px = rng.normal(40.0, 10.0, (n_slices, size, size)).astype(np.float32)
        disc = (xx - size * 0.6) ** 2 + (yy - size * 0.4) ** 2 < (size * 0.12) ** 2
        for k in range(n_slices // 3, 2 * n_slices // 3):
            px[k][disc] += 100.0 + 20 * i
        affine = np.diag([0.8, 0.8, 2.0, 1.0])
        affine[:3, 3] = [-25.0, -25.0, -20.0 + i * shift_mm]
        volumes[p] = Volume(px, affine, series_uid=f"{uid}.{i}", description=f"series {p}")
        sources[p] = PhaseSource(series_uid=f"{uid}.{i}", description=f"series {p}", evidence=["test"], confidence=1.0)
    return Study(volumes=volumes, sources=sources, study_uid=uid, patient_id="TEST", path="/nonexistent/test")


@pytest.fixture
def window(qtbot):
    from liverview.qt.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w, before_close_func=lambda w: w.shutdown())  # a modal "work is running" question would hang
    w.resize(1300, 900)
    w.show()
    qtbot.waitExposed(w)
    yield w
    w.shutdown()


@pytest.fixture
def shown(window, qtbot):
    """The window showing a synthetic four-phase study (phases offset by 1 mm in z)."""
    window._show_study(synthetic_study(shift_mm=1.0))
    window.activateWindow()
    qtbot.waitUntil(lambda: window.grid.views["P"].index >= 0)
    return window


@pytest.fixture
def engine_window(qtbot, tiny_bundle):
    """A main window whose engine process uses the tiny bundle and one thread."""
    from liverview.qt.main_window import MainWindow

    w = MainWindow(bundle_dir=str(tiny_bundle), engine_threads=1)
    qtbot.addWidget(w, before_close_func=lambda w: w.shutdown())
    w.resize(1300, 900)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    yield w
    w.shutdown()


@pytest.fixture(scope="session")
def phantom_exam_128(tmp_path_factory):
    """A 128 x 128 phantom exam (more decoding work, for the responsiveness test)."""
    from liverview.phantom import generate_exam

    out = tmp_path_factory.mktemp("phantom128")
    truth = generate_exam(out, seed=5, patient_index=1, matrix=128)
    return out / truth["patient_id"], truth
