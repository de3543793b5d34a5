"""Opening exams: a phantom DICOM exam through the loader, early slices, phases dialog, problems, recent list."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pydicom
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from liverview.qt.settings import recent_exams
from liverview.study.phases import PHASES


def open_and_wait(window, qtbot, path, timeout=60000):
    with qtbot.waitSignal(window.sigExamLoaded, timeout=timeout):
        window.open_path(str(path))


def test_open_a_phantom_exam(window, qtbot, phantom_exam):
    path, truth = phantom_exam
    with qtbot.waitSignals([window.sigExamLoaded, window.sigRecentSaved], timeout=60000):  # the list is written by a worker
        window.open_path(str(path))
    study = window.study
    assert study.phases == list(PHASES)
    for p in PHASES:
        view = window.grid.views[p]
        assert view.volume is study.volumes[p]
        assert view.volume.ready.all()
        assert np.allclose(view.positions, truth["phases"][p]["positions"], atol=1e-3)
        assert truth["phases"][p]["series_description"] in view.title.text()
        assert view.image.image is not None
    assert window.study.patient_id == truth["patient_id"]
    assert str(path) in recent_exams()
    assert not window.loading and window.progress.isHidden()
    assert window.case_path.exists() is False or window.case_path.is_file()


def test_first_slices_show_while_the_rest_decode(window, qtbot, phantom_exam, monkeypatch):
    import liverview.io.loader as loader

    slow = loader.run_task

    def run_task_slowly(task):
        time.sleep(0.01)
        return slow(task)

    monkeypatch.setattr(loader, "run_task", run_task_slowly)
    path, _ = phantom_exam
    seen = {}

    def early():
        seen["ready"] = {p: int(v.ready.sum()) for p, v in window.study.volumes.items()}

    window.sigStudyShown.connect(early)
    window.open_path(str(path))
    qtbot.waitUntil(lambda: "ready" in seen, timeout=30000)
    assert window.loading
    assert min(seen["ready"].values()) < min(len(v.positions) for v in window.grid.views.values())
    # the middle slice of every phase is decoded first and shown before the load ends
    qtbot.waitUntil(lambda: all(window.grid.views[p]._shown_ready for p in PHASES), timeout=30000)
    assert window.loading
    assert not all(v.ready.all() for v in window.study.volumes.values())
    assert window.progress.isVisible() and window.cancel_button.isVisible()
    with qtbot.waitSignal(window.sigExamLoaded, timeout=60000):
        pass


def test_cancel_a_load(window, qtbot, phantom_exam, monkeypatch):
    import liverview.io.loader as loader

    slow = loader.run_task
    monkeypatch.setattr(loader, "run_task", lambda task: (time.sleep(0.02), slow(task))[1])
    path, _ = phantom_exam
    window.open_path(str(path))
    qtbot.waitUntil(lambda: window.study is not None, timeout=30000)
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.loading, timeout=10000)
    assert window.exam is None
    assert "cancelled" in window.statusBar().currentMessage()


def test_reassign_a_phase_and_the_choice_is_remembered(window, qtbot, phantom_exam):
    path, truth = phantom_exam
    open_and_wait(window, qtbot, path)
    uid = {p: window.study.sources[p].series_uid for p in PHASES}
    assert uid["A"] == truth["phases"]["A"]["series_uid"]
    qtbot.keyClick(window, Qt.Key.Key_P, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    dialog = window.phase_dialog
    assert dialog.isVisible()
    assert [r.uid for r in dialog.rows] and {r.uid for r in dialog.rows} == set(uid.values())
    guessed = {r.uid: r.guess for r in dialog.rows}
    assert guessed[uid["V"]] == "V"
    assert all(r.evidence for r in dialog.rows)  # each guess says why
    dialog.set_phase(uid["A"], "D")
    assert "more than one series" in dialog.problem.text()  # D is now taken twice
    dialog.set_phase(uid["D"], "A")
    assert dialog.problem.text() == ""
    with qtbot.waitSignal(window.sigExamLoaded, timeout=60000):
        dialog.accept()
    assert window.study.sources["A"].series_uid == uid["D"]
    assert window.study.sources["D"].series_uid == uid["A"]
    assert window.study.sources["A"].overridden
    # add a pick so the case is saved, then reopen without an override: the choice comes back
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)  # the viewer takes the keys back
    qtbot.keyClick(window, Qt.Key.Key_Space)
    assert len(window.case.picks["P"]) == 1
    window.saver.flush()
    with qtbot.waitSignal(window.sigExamLoaded, timeout=60000):
        window.open_path(str(path))
    qtbot.waitUntil(lambda: window.study is not None and window.study.sources["A"].series_uid == uid["D"], timeout=60000)
    assert any("phase assignment restored" in line for line in window.problem_lines())


def extra_series_exam(src, dst):
    """The phantom exam plus a fifth candidate: a copy of its venous series under new UIDs."""
    shutil.copytree(src, dst)
    venous = next(d for d in (dst / "dicom").iterdir() if "VENOUS" in d.name.upper())
    copy = venous.with_name(venous.name + "_COPY")
    shutil.copytree(venous, copy)
    new_series = pydicom.uid.generate_uid()
    for f in sorted(copy.iterdir()):
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = new_series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesNumber = 9
        ds.SeriesDescription = "VENOUS REPEAT"
        ds.save_as(f)
    return dst, new_series


def test_more_than_four_candidate_series_opens_the_choice(window, qtbot, phantom_exam, tmp_path):
    src, _ = phantom_exam
    path, new_series = extra_series_exam(src, tmp_path / "five")
    open_and_wait(window, qtbot, path)
    dialog = window.phase_dialog
    assert dialog.isVisible() and len(dialog.rows) == 5
    assert "choose which four" in dialog.findChildren(type(dialog.problem))[0].text()
    assert any("candidate series" in line for line in window.problem_lines())
    old_v = window.study.sources["V"].series_uid
    dialog.set_phase(old_v, "")
    dialog.set_phase(new_series, "V")
    with qtbot.waitSignal(window.sigExamLoaded, timeout=60000):
        dialog.accept()
    assert window.study.sources["V"].series_uid == new_series


def test_a_folder_without_images_is_reported_not_thrown(window, qtbot, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    window.open_path(str(tmp_path))
    qtbot.waitUntil(lambda: bool(window.last_error) and not window.loading, timeout=30000)
    assert window.last_error.startswith("Could not open the exam:")
    assert str(tmp_path) in window.last_error
    assert window.last_error in window.problem_lines()
    assert window.case is None and not window.loading


def test_drop_a_folder_on_the_window_opens_it(window, qtbot, phantom_exam):
    path, _ = phantom_exam
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    enter = QDragEnterEvent(QPoint(200, 200),  # QPoint: PySide6 < 6.12 has no QPointF overload
                            Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    window.dragEnterEvent(enter)  # Qt delivers synthetic drops only during a real drag: call the handlers
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(window.sigExamLoaded, timeout=60000):
        window.dropEvent(drop)
    assert window.path == str(path)
    assert window.study.patient_id == path.name


def test_recent_exams_menu_lists_opened_exams(window, qtbot, phantom_exam):
    path, _ = phantom_exam
    with qtbot.waitSignals([window.sigExamLoaded, window.sigRecentSaved], timeout=60000):  # written by a worker
        window.open_path(str(path))
    window._fill_recent()
    texts = [a.text() for a in window.recent_menu.actions()]
    assert str(path) in texts


def test_problems_found_while_loading_are_listed_not_thrown(window, qtbot, phantom_exam, tmp_path):
    src, _ = phantom_exam
    path = tmp_path / "damaged"
    shutil.copytree(src, path)
    venous = next(d for d in (path / "dicom").iterdir() if "VENOUS" in d.name.upper())
    victim = sorted(venous.iterdir())[4]
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) - 4000])  # pixel data cut short
    open_and_wait(window, qtbot, path)
    lines = window.problem_lines()
    assert any("truncated pixel data" in line and victim.name in line for line in lines), lines
    assert window.study.phases == list(PHASES)  # the exam still opened
    assert window.last_error == ""


def test_every_reason_why_nothing_is_usable_is_in_the_dialog_details(window, qtbot, phantom_exam, tmp_path):
    src, _ = phantom_exam
    path = tmp_path / "mr-only"
    shutil.copytree(src, path)
    series = sorted(d for d in (path / "dicom").iterdir() if d.is_dir())
    for d in series:  # four series a CT workstation cannot take as phases
        for f in d.iterdir():
            ds = pydicom.dcmread(f)
            ds.Modality = "MR"
            ds.save_as(f)
    for k in range(7):
        (path / f"note{k}.txt").write_text("not an image")
    window.open_path(str(path))
    qtbot.waitUntil(lambda: bool(window.last_error) and not window.loading, timeout=30000)
    box = window.error_dialog
    details = box.detailedText().splitlines()
    assert box.text().startswith("Could not open the exam:") and "Show Details" in box.informativeText()
    assert len([line for line in details if "series" in line]) == len(series), details
    assert all(any(f"note{k}.txt" in line for line in details) for k in range(7)), details
