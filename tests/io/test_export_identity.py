"""Exams named by content: an export's image and LabelMe digests key its case; a changed export never gets the old case."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liverview.io import load_exam
from liverview.io.labelme import write_labelme
from liverview.session import ReadingSession
from liverview.session.case_files import case_key

PHASE_DIRS = ("P", "A", "V", "D")


def _export(root: Path, seed: int = 0, box=(2, 3, 9, 11), size=(16, 18)) -> Path:
    h, w = size
    rng = np.random.default_rng(seed)
    for folder in PHASE_DIRS:
        d = root / folder
        d.mkdir(parents=True, exist_ok=True)
        for k in range(3):
            Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(d / f"{k + 1}.png")
            write_labelme(d / f"{k + 1}.json", f"{k + 1}.png", (h, w), [box])
    return root


def _identity(path) -> dict:
    return load_exam(path).study.info["identity"]


def test_identity_follows_the_images_not_the_folder(tmp_path):
    first = _identity(_export(tmp_path / "EX"))
    assert first["kind"] == "export" and len(first["images_sha256"]) == 64
    shutil.copytree(tmp_path / "EX", tmp_path / "elsewhere" / "renamed")
    assert _identity(tmp_path / "elsewhere" / "renamed") == first
    _export(tmp_path / "EX", seed=1)  # another patient's images in the same folder
    second = _identity(tmp_path / "EX")
    assert second["images_sha256"] != first["images_sha256"]


def test_a_changed_labelme_file_changes_only_the_labels_digest(tmp_path):
    root = _export(tmp_path / "EX")
    first = _identity(root)
    write_labelme(root / "A" / "2.json", "2.png", (16, 18), [(1, 1, 5, 5)])
    second = _identity(root)
    assert second["images_sha256"] == first["images_sha256"]
    assert second["labels_sha256"] != first["labels_sha256"]
    assert [p for p in PHASE_DIRS if second["labels_sha256_by_phase"][p] != first["labels_sha256_by_phase"][p]] == ["A"]


def test_export_json_places_the_images_so_it_is_part_of_their_identity(tmp_path):
    root = _export(tmp_path / "EX")
    first = _identity(root)
    (root / "export.json").write_text('{"slice_spacing": 5.0}')
    assert _identity(root)["images_sha256"] != first["images_sha256"]


def test_dicom_exams_are_named_by_their_uids_from_the_headers(tmp_path, exam_writer):
    study_uid, series = exam_writer(tmp_path)
    identity = load_exam(tmp_path).study.info["identity"]
    assert identity["kind"] == "dicom" and identity["study_uid"] == study_uid
    assert identity["series_uids"]["A"] == series["Arterial"]
    next(iter(sorted((tmp_path / "s1").iterdir()))).unlink()  # one arterial slice fewer
    again = load_exam(tmp_path).study.info["identity"]
    assert again["sop_sha256"]["A"] != identity["sop_sha256"]["A"]
    assert again["sop_sha256"]["V"] == identity["sop_sha256"]["V"]


# ---- through a reading session -------------------------------------------------------------
@pytest.fixture
def session_at(tmp_path):
    """session_at(): a fresh ReadingSession saving into one case folder; each is shut down after the test."""
    made = []

    def make():
        s = ReadingSession(None, case_dir=tmp_path / "cases", user="tester")
        made.append(s)
        return s

    yield make
    for s in made:
        s.shutdown()


def _open(session, path):
    loaded = []
    session.exam_loaded.connect(loaded.append)
    session.open_failed.connect(loaded.append)
    session.open(path)
    assert session.run_until(lambda: bool(loaded), 60.0), "the exam did not load in time"
    assert not isinstance(loaded[0], str), loaded[0]
    return loaded[0]


def _read_and_save(session_at, root):
    """Open the export, draw one box of the reader's own on A's middle slice, save; returns that box's rect."""
    s = session_at()
    _open(s, root)
    position = s.study.volumes["A"].position_of(1)
    s.draw_box("A", position, (10.0, 10.0, 14.0, 14.0))
    assert s.flush()
    s.shutdown()
    return position


def test_changed_images_do_not_get_the_old_case_and_the_reader_is_told(tmp_path, session_at):
    root = _export(tmp_path / "EX")
    _read_and_save(session_at, root)
    _export(root, seed=1, box=(4, 4, 8, 8))  # the folder now holds another patient's images and boxes
    s = session_at()
    _open(s, root)
    assert not s.case_restored
    assert {b.rect for b in s.case.boxes} == {(4.0, 4.0, 8.0, 8.0)}  # the new LabelMe boxes, nothing of the old case
    told = [p for p in s.problems if "was saved on other images" in p]
    assert len(told) == 1 and str(root) in told[0] and "not applied" in told[0]
    assert case_key(s.study).startswith("export-")


def test_changed_labelme_files_win_over_the_saved_boxes_and_the_reader_is_told(tmp_path, session_at):
    root = _export(tmp_path / "EX")
    position = _read_and_save(session_at, root)
    write_labelme(root / "A" / "3.json", "3.png", (16, 18), [(1, 1, 5, 5), (6, 6, 12, 12)])
    s = session_at()
    _open(s, root)
    assert s.case_restored
    vol = s.study.volumes["A"]
    labelme_a = sorted(b.rect for b in s.case.boxes if b.phase == "A" and b.author == "labelme")
    assert labelme_a == [(1.0, 1.0, 5.0, 5.0), (2.0, 3.0, 9.0, 11.0), (2.0, 3.0, 9.0, 11.0), (6.0, 6.0, 12.0, 12.0)]
    assert len([b for b in s.case.boxes_on("A", vol.position_of(2), "user") if b.author == "labelme"]) == 2
    own = [b for b in s.case.boxes if b.author != "labelme"]
    assert [(b.phase, b.rect) for b in own] == [("A", (10.0, 10.0, 14.0, 14.0))] and own[0].position == position
    told = [p for p in s.problems if "LabelMe boxes changed since your case was saved" in p]
    assert told == ["the export's LabelMe boxes changed since your case was saved: phase A (4 boxes, were 3); "
                    "the new LabelMe boxes replace the old ones, your own boxes and picks are kept"]
    assert s.flush()
    s.shutdown()
    again = session_at()
    _open(again, root)  # saved with the new digest: nothing to tell the next time
    assert again.case_restored and not [p for p in again.problems if "LabelMe" in p]


def test_the_same_export_reopened_restores_the_case_silently(tmp_path, session_at):
    root = _export(tmp_path / "EX")
    _read_and_save(session_at, root)
    s = session_at()
    _open(s, root)
    assert s.case_restored
    assert any(b.author != "labelme" for b in s.case.boxes)
    assert not [p for p in s.problems if "other images" in p or "LabelMe" in p]


def test_a_copied_export_keeps_its_case_wherever_it_is_opened(tmp_path, session_at):
    root = _export(tmp_path / "EX")
    position = _read_and_save(session_at, root)
    copy = tmp_path / "other-disk" / "EX-copy"
    shutil.copytree(root, copy)
    s = session_at()
    _open(s, copy)
    assert s.case_restored, s.problems
    own = [b for b in s.case.boxes if b.author != "labelme"]
    assert [(b.phase, b.rect, b.position) for b in own] == [("A", (10.0, 10.0, 14.0, 14.0), position)]
    assert not [p for p in s.problems if "unreadable" in p or "other images" in p]
