"""How io words what it finds: summaries of long lists, layout hints, unmistakable series names, no empty or wrong lines."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from liverview.cli import main
from liverview.io import ExamError, load_exam, scan
from liverview.io.messages import condense, condense_skipped, plural


def test_plural():
    assert [plural(n, "slice") for n in (0, 1, 2)] == ["0 slices", "1 slice", "2 slices"]
    assert plural(1, "study", "studies") == "1 study" and plural(3, "series", "series") == "3 series"


def test_more_than_five_similar_problems_become_one_summary_line_in_place():
    similar = [f"/x/a{k}.png: colour image converted to grey" for k in range(8)]
    lines = ["first", *similar, "last"]
    out = condense(lines)
    assert out[0] == "first" and out[-1] == "last" and len(out) == 3
    assert out[1].startswith("8 similar problems, the first 5: /x/a0.png: colour image converted to grey; ")
    assert out[1].endswith("(and 3 more)") and "a5.png" not in out[1]
    assert condense(similar[:5]) == similar[:5]  # five are listed as they are


def test_skipped_files_with_one_reason_are_summarised():
    skipped = [(f"/d/{k}.jpg", "not a DICOM file (no DICM marker)") for k in range(7)] + [("/d/x.txt", "empty")]
    assert condense_skipped(skipped) == [
        "7 files in /d: not a DICOM file (no DICM marker): 0.jpg, 1.jpg, 2.jpg, 3.jpg, 4.jpg (and 2 more)",
        "/d/x.txt: empty",
    ]


def test_dicomdir_with_many_missing_files_says_how_many_first(tmp_path, exam_writer, capsys):
    exam_writer(tmp_path / "src", n=3)
    fs = FileSet()
    for p in sorted((tmp_path / "src").rglob("*.dcm")):
        fs.add(p)
    fs.write(tmp_path / "media")
    images = sorted(p for p in (tmp_path / "media").rglob("*") if p.is_file() and p.name != "DICOMDIR")
    for p in images:
        p.unlink()
    rc = main(["info", str(tmp_path / "media" / "DICOMDIR")])
    out, err = capsys.readouterr()
    assert rc == 2
    missing = [line for line in out.splitlines() if "missing" in line]
    assert len(missing) == 1
    assert "12 files listed in DICOMDIR are missing: " in missing[0] and missing[0].endswith("(and 7 more)")
    assert "none of the files the DICOMDIR lists is here" in err and err.count("\n") == 1


def _jpegs(folder, n=4):
    folder.mkdir(parents=True)
    for k in range(n):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / f"{k}.jpg")


def test_a_plain_folder_of_jpegs_is_told_the_export_layout(tmp_path, capsys):
    _jpegs(tmp_path / "case_1", n=7)
    rc = main(["info", str(tmp_path / "case_1")])
    out, err = capsys.readouterr()
    assert rc == 2 and err.count("\n") == 1
    assert "no DICOM images found; 7 PNG/JPEG images in 'case_1' but no DICOM" in err
    assert "directly in the folder, not in phase folders" in err
    assert "folder named P, A, V or D" in err and "EXAM/A/001.jpg" in err and "EXAM/A/001.json" in err
    assert "7 files in " in out  # the skipped files in one line, not seven
    with pytest.raises(ExamError, match="folder named P, A, V or D"):
        load_exam(tmp_path / "case_1")


def test_jpeg_folders_not_named_for_a_phase_are_named_in_the_hint(tmp_path, capsys):
    _jpegs(tmp_path / "exam" / "series1")
    _jpegs(tmp_path / "exam" / "series2", n=2)
    assert main(["info", str(tmp_path / "exam")]) == 2
    err = capsys.readouterr().err
    assert "6 PNG/JPEG images in 'series1' (4), 'series2' (2)" in err and "no folder holding them is named for a phase" in err


def test_a_folder_without_images_gets_no_layout_hint(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x")
    assert main(["info", str(tmp_path)]) == 2
    assert "PNG/JPEG" not in capsys.readouterr().err


def test_two_series_with_one_number_are_told_apart(tmp_path, series_writer):
    a, _ = series_writer(tmp_path / "a", study_uid=generate_uid(), description="ARTERIAL", number=1)
    b, _ = series_writer(tmp_path / "b", study_uid=generate_uid(), description="ARTERIAL", number=1)
    labels = [s.label for s in scan(tmp_path).series]
    assert len(set(labels)) == 2
    assert sorted(labels) == sorted(f"series #1 'ARTERIAL' (…{uid[-6:].lstrip('.')})" for uid in (a, b))


def test_an_absent_rows_tag_is_called_missing_not_zero(tmp_path, series_writer):
    _, paths = series_writer(tmp_path, study_uid=generate_uid(), description="x", n=3)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.Rows
        ds.save_as(p)
    refusal = scan(tmp_path).series[0].refusal
    assert "Rows missing" in refusal and "Rows=0" not in refusal and "Columns=16" in refusal


def test_info_has_no_empty_lines_and_counts_in_the_right_plural(tmp_path, series_writer, capsys):
    series_writer(tmp_path / "mr", study_uid=generate_uid(), description="T1", modality="MR", n=1)
    series_writer(tmp_path / "ct", study_uid=generate_uid(), description="scout", n=2)
    assert main(["info", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert "uid of each phase series" not in out  # no phase found: no line for their uids
    assert [line for line in out.splitlines() if line.rstrip().endswith(":")] == ["  other series:"] * 2
    assert "3 files, 2 studies, 2 series" in out
    assert "[MR] 1 slice (1 file)" in out and "[CT] 2 slices (2 files)" in out
    assert "1 slices" not in out and "1 files" not in out and "1 studies" not in out
