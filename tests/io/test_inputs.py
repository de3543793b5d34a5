"""Inputs: zips (with zip-slip guards), DICOMDIR written by pydicom's FileSet, single files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from liverview.io import ExamError, load_exam, scan


def _zip_folder(folder: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return dest


def test_zip_of_an_exam_folder_loads(tmp_path, exam_writer):
    _, uids = exam_writer(tmp_path / "exam")
    archive = _zip_folder(tmp_path / "exam", tmp_path / "exam.zip", prefix="EXAM01/")
    load = load_exam(archive)
    assert load.study.phases == ["P", "A", "V", "D"]
    assert load.study.sources["V"].series_uid == uids["Portal venous"]
    assert load.scan.kind == "zip"
    extracted = load.scan.input.root
    assert extracted.is_dir()
    load.scan.close()
    assert not extracted.exists()


def test_zip_members_that_would_escape_are_not_extracted(tmp_path, exam_writer):
    _, _ = exam_writer(tmp_path / "exam")
    archive = _zip_folder(tmp_path / "exam", tmp_path / "evil.zip")
    one = next((tmp_path / "exam").rglob("*.dcm")).read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr("../outside/escaped.dcm", one)
        zf.writestr("/abs/escaped.dcm", one)
        zf.writestr("ok/../../outside/escaped2.dcm", one)
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = 0o120777 << 16
        zf.writestr(link, "/etc/passwd")
    result = scan(archive)
    reasons = {name.split(":", 1)[1]: why for name, why in result.skipped}
    for member in ("../outside/escaped.dcm", "/abs/escaped.dcm", "ok/../../outside/escaped2.dcm"):
        assert reasons[member].startswith("unsafe path in zip"), member
    assert reasons["link.dcm"].startswith("symbolic link")
    assert list(outside.iterdir()) == []
    assert not Path("/abs/escaped.dcm").exists()
    assert len(result.studies[0].phases) == 4  # the good members still load
    result.close()


def test_broken_zip_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(ExamError) as err:
        load_exam(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)


def test_dicomdir_written_by_pydicom_fileset(tmp_path, exam_writer):
    _, uids = exam_writer(tmp_path / "src")
    fs = FileSet()
    for p in sorted((tmp_path / "src").rglob("*.dcm")):
        fs.add(p)
    out = tmp_path / "media"
    fs.write(out)
    dicomdir = out / "DICOMDIR"
    assert dicomdir.is_file()
    result = scan(dicomdir)
    assert result.kind == "dicomdir"
    assert result.n_files == 24
    load = load_exam(dicomdir)
    assert load.study.sources["A"].series_uid == uids["Arterial"]
    assert load.study.volumes["A"].shape == (6, 12, 16)
    # a folder holding a DICOMDIR also works; the index itself is listed as skipped
    folder_scan = scan(out)
    assert any(p.endswith("DICOMDIR") and "DICOMDIR index" in why for p, why in folder_scan.skipped)
    assert len(folder_scan.studies[0].phases) == 4


def test_dicomdir_with_a_missing_file_reports_it(tmp_path, exam_writer):
    exam_writer(tmp_path / "src")
    fs = FileSet()
    for p in sorted((tmp_path / "src").rglob("*.dcm")):
        fs.add(p)
    out = tmp_path / "media"
    fs.write(out)
    victim = next(p for p in sorted(out.rglob("*")) if p.is_file() and p.name != "DICOMDIR")
    victim.unlink()
    result = scan(out / "DICOMDIR")
    assert any("DICOMDIR lists" in p and "missing" in p for p in result.problems)
    assert result.n_files == 23


def test_single_file_is_an_exam_of_one_slice(tmp_path, series_writer):
    _, paths = series_writer(tmp_path, study_uid=generate_uid(), description="Arterial", n=3)
    result = scan(paths[1])
    assert result.kind == "file" and result.series[0].n_slices == 1
    assert "only 1 slice" in result.series[0].not_offered
