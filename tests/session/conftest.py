"""Fixtures for the Qt-free session tests: a single-phase exam, sessions that drain their own loop (the phantom exam and tiny bundle come from tests/conftest.py)."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def single_phase_exam(phantom_exam, tmp_path_factory):
    """The phantom exam with only its portal-venous series left."""
    src, truth = phantom_exam
    dst = tmp_path_factory.mktemp("single") / "venous-only"
    shutil.copytree(src, dst)
    for d in (dst / "dicom").iterdir():
        if "VENOUS" not in d.name.upper():
            shutil.rmtree(d)
    return dst


@pytest.fixture
def make_session(tmp_path):
    """Factory: a ReadingSession saving into a fresh case folder; shut down after the test."""
    from liverview.session import ReadingSession

    made = []

    def make(engine=None, **kwargs):
        s = ReadingSession(engine, case_dir=kwargs.pop("case_dir", tmp_path / "cases"), user="tester", **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.shutdown()


def open_and_wait(session, path, phases=None, timeout=60.0):
    """Open an exam and run the session's loop until it has loaded (or failed)."""
    loaded = []
    session.exam_loaded.connect(loaded.append)
    session.open_failed.connect(loaded.append)
    session.open(path, phases)
    assert session.run_until(lambda: bool(loaded), timeout), "the exam did not load in time"
    session.exam_loaded.disconnect(loaded.append)
    session.open_failed.disconnect(loaded.append)
    return loaded[0]


@pytest.fixture
def open_exam():
    """open_exam(session, path, phases=None): open and wait until loaded; returns the ExamLoad (or the error)."""
    return open_and_wait
