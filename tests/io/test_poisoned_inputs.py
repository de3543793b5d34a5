"""One poisoned file, series or zip member in an otherwise good exam: it is skipped and named, the rest loads."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.uid import RLELossless

from liverview.cli import main
from liverview.io import inputs as inputs_module
from liverview.io.errors import ExamError
from liverview.io.headers import check_elements, read_dataset, read_header
from liverview.io.inputs import TEMP_PREFIX, open_input, remove_leftovers, safe_name
from liverview.io.loader import load_exam
from liverview.io.scan import scan


def _files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm"))


def _flip_study_date_vr(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.find(b"\x08\x00\x20\x00DA")
    assert i > 0
    data[i + 5] = ord("Q")
    path.write_bytes(bytes(data))


def _skipped(result, path: Path) -> str:
    reasons = [why for where, why in result.skipped if where.endswith(path.name) and Path(where).parent.name == path.parent.name]
    assert reasons, result.skipped
    return reasons[0]


def _bounded(fn, seconds: float = 10.0):
    """Run fn in a watchdog thread: fail (not hang) when it takes longer than `seconds`."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed back to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---- header elements ----------------------------------------------------------------------------
def test_flipped_vr_in_study_date_skips_that_file_naming_the_element(tmp_path, exam_writer, capsys):
    exam_writer(tmp_path, n=4)
    bad = _files(tmp_path)[0]  # the first file of the first series: its header is the study's
    _flip_study_date_vr(bad)
    result = scan(tmp_path)
    why = _skipped(result, bad)
    assert "StudyDate (0008,0020)" in why and "DQ" in why
    load = load_exam(tmp_path)
    assert sorted(load.study.volumes) == ["A", "D", "P", "V"]
    assert load.study.volumes["P"].shape[0] == 3
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"{bad}: undecodable element StudyDate (0008,0020)" in out


def test_an_element_pydicom_cannot_decode_is_left_out_of_a_late_header_read(tmp_path, series_writer):
    _, paths = series_writer(tmp_path, study_uid="1.2.3", n=1)
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    ds[0x00080020] = RawDataElement(Tag(0x00080020), "DQ", 8, b"20260102", 0, False, True)
    assert check_elements(ds) == [
        "StudyDate (0008,0020): Unknown Value Representation 'DQ' in tag (0008,0020)"
    ]
    notes: list[str] = []
    late = read_dataset(str(paths[0]), notes)
    assert notes == [] and late.StudyDate == "20260102"
    assert check_elements(ds, drop=True) and "StudyDate" not in ds


# ---- frames ---------------------------------------------------------------------------------------
def _rle_with_frames(path: Path, frames: int) -> None:
    ds = pydicom.dcmread(path)
    ds.compress(RLELossless)
    ds.NumberOfFrames = frames
    ds.save_as(path)


def test_rle_file_claiming_a_hundred_million_frames_is_skipped_at_once(tmp_path, exam_writer):
    exam_writer(tmp_path, n=4)
    bad = _files(tmp_path)[5]
    _rle_with_frames(bad, 99_999_999)
    assert bad.stat().st_size < 4096
    tracemalloc.start()
    try:
        started = time.perf_counter()
        result = _bounded(lambda: scan(tmp_path))
        load = _bounded(lambda: load_exam(tmp_path))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 10 and peak < 64 * 1024**2
    assert "NumberOfFrames=99999999" in _skipped(result, bad)
    assert sorted(load.study.volumes) == ["A", "D", "P", "V"]


def test_frames_the_file_cannot_hold_are_refused_before_any_frame_is_built(tmp_path, series_writer):
    _, paths = series_writer(tmp_path, study_uid="1.2.3", n=1)
    rle = tmp_path / "rle.dcm"
    rle.write_bytes(paths[0].read_bytes())
    _rle_with_frames(rle, 5000)  # 5000 item headers alone need 40 kB
    why = read_header(rle)
    assert isinstance(why, str) and "NumberOfFrames=5000" in why and "cannot fit" in why
    native = pydicom.dcmread(paths[0])
    native.NumberOfFrames = 3  # 12 x 16 x 16 bits: one frame of pixel data, three claimed
    native.save_as(tmp_path / "native.dcm")
    why = read_header(tmp_path / "native.dcm")
    assert isinstance(why, str) and "NumberOfFrames=3 (12 x 16, 16 bits) cannot fit" in why


def test_a_file_over_the_pixel_cap_is_left_out_and_the_series_loads(tmp_path, exam_writer):
    exam_writer(tmp_path, n=4)
    bad = _files(tmp_path)[4]
    ds = pydicom.dcmread(bad)
    ds.compress(RLELossless)
    ds.Rows, ds.Columns = 65535, 65535  # 8 GiB claimed by a small file
    ds.save_as(bad)
    result = scan(tmp_path, max_pixel_bytes=64 * 1024**2)
    arterial = next(s for s in result.series if s.description == "Arterial")
    assert arterial.loadable and arterial.n_slices == 3
    assert any("larger than the 0.06 GiB pixel cap left out" in p and bad.name in p for p in arterial.problems)


def test_one_file_with_an_invalid_description_or_colour_does_not_refuse_its_series(tmp_path, exam_writer):
    exam_writer(tmp_path, n=5)
    files = _files(tmp_path)
    for path, change in ((files[0], {"BitsAllocated": 7}), (files[1], {"SamplesPerPixel": 3})):
        ds = pydicom.dcmread(path)
        for k, v in change.items():
            setattr(ds, k, v)
        ds.save_as(path)
    result = scan(tmp_path)
    pre = next(s for s in result.series if s.description == "Pre contrast")
    assert pre.loadable and pre.n_slices == 3
    text = " ".join(pre.problems)
    assert "invalid image description left out" in text and "BitsAllocated=7" in text
    assert "colour pixels in a monochrome series left out" in text


# ---- patients ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value, shown",
    [("PatientID", "OTHER", "PatientID 'OTHER' (the study's: 'PAT1')"),
     ("PatientName", "Someone^Else", "PatientName 'Someone^Else' (the study's: 'Phantom^Test')"),
     ("PatientBirthDate", "19990101", "PatientBirthDate '19990101' (the study's: '20150101')")],
)
def test_a_series_of_another_patient_is_kept_apart_not_merged(tmp_path, exam_writer, field, value, shown):
    exam_writer(tmp_path, n=4, per_slice={k: {"PatientBirthDate": "20150101"} for k in range(4)})
    for path in (tmp_path / "s2").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        setattr(ds, field, value)
        ds.save_as(path)
    result = scan(tmp_path)
    venous = next(s for s in result.series if s.description == "Portal venous")
    assert not venous.loadable and not venous.is_candidate
    assert venous.refusal == f"another patient: {shown}: kept apart from this study"
    st = result.studies[0]
    assert venous.uid not in st.phases.values() and st.patient_id == "PAT1"
    load = load_exam(tmp_path)
    assert "V" not in load.study.volumes and sorted(load.study.volumes) == ["A", "D", "P"]
    with pytest.raises(ExamError, match="another patient"):
        load_exam(tmp_path, phases={"V": venous.uid})


def test_one_file_of_another_patient_is_left_out_of_its_series(tmp_path, exam_writer):
    exam_writer(tmp_path, n=4)
    bad = _files(tmp_path)[9]
    ds = pydicom.dcmread(bad)
    ds.PatientID = "INTRUDER"
    ds.save_as(bad)
    result = scan(tmp_path)
    s = next(s for s in result.series if any(h.path == str(bad) for h in s.headers))
    assert s.loadable and s.n_slices == 3
    assert any("of another patient (the series' PatientID is 'PAT1') left out" in p and "PatientID 'INTRUDER'" in p
               for p in s.problems)


# ---- zips ------------------------------------------------------------------------------------------
def _zip_exam(folder: Path, dest: Path, extra=()) -> Path:
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f.relative_to(folder).as_posix())
        for name, data in extra:
            zf.writestr(name, data)
    return dest


def test_zip_bomb_member_is_not_extracted_and_the_exam_loads(tmp_path, exam_writer):
    exam_writer(tmp_path / "exam", n=4)
    z = _zip_exam(tmp_path / "exam", tmp_path / "exam.zip", [("zeros.bin", bytes(64 * 1024**2))])
    assert z.stat().st_size < 2 * 1024**2
    inp = open_input(z)
    try:
        (where, why), = inp.skipped
        assert where.endswith(":zeros.bin") and "ratio" in why and "more than 100:1" in why
        assert not any(f.name == "zeros.bin" for f in inp.files)
    finally:
        inp.close()
    load = load_exam(z)
    assert sorted(load.study.volumes) == ["A", "D", "P", "V"]
    load.scan.close()


def test_zip_over_the_total_cap_is_refused_in_one_line(tmp_path, exam_writer):
    exam_writer(tmp_path / "exam", n=4)
    z = _zip_exam(tmp_path / "exam", tmp_path / "exam.zip")
    with pytest.raises(ExamError, match=r"zip expands to .* GiB, more than the 0.0 GiB allowed"):
        open_input(z, max_extract_bytes=1000)
    assert inputs_module.DEFAULT_MAX_EXTRACT_BYTES == 4 * 1024**3


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_colliding_long_and_odd_member_names_are_made_safe_and_unique(tmp_path, exam_writer):
    exam_writer(tmp_path / "exam", n=4)
    good = _files(tmp_path / "exam")
    long_dir = "d" * 300
    members = [
        (f"{long_dir}/{'x' * 300}.dcm", good[0].read_bytes()),
        (f"{long_dir}/{'x' * 300}.dcm", good[1].read_bytes()),  # the same name again
        ("s0/IM0000.dcm", good[2].read_bytes()),  # collides with a real member
        ("S0/im0000.dcm", good[3].read_bytes()),  # collides on a case-insensitive disk
        ("s1", b"a file where a folder is"),
        ("bad\x01name|?.dcm", good[4].read_bytes()),
        ("CON", b"reserved on Windows"),
    ]
    z = _zip_exam(tmp_path / "exam", tmp_path / "exam.zip", members)
    inp = open_input(z)
    try:
        root = inp.root.resolve()
        for f in inp.files:
            assert f.resolve().is_relative_to(root)
            assert all(len(part.encode()) <= 120 for part in f.relative_to(inp.root).parts)
        names = {f.relative_to(inp.root).as_posix().casefold() for f in inp.files}
        assert len(names) == len(inp.files) == 16 + len(members)
        assert any("zip member names made safe" in p for p in inp.problems), inp.problems
        assert not inp.skipped
    finally:
        inp.close()
    result = scan(z)
    try:
        assert sorted(result.studies[0].phases) == ["A", "D", "P", "V"]
    finally:
        result.close()


def test_zip_with_names_flagged_utf8_that_are_not_is_one_line_error(tmp_path):
    z = tmp_path / "bad.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("IMAGE.dcm", b"x")
    data = bytearray(z.read_bytes())
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        i = data.find(sig)
        flags = struct.unpack_from("<H", data, i + flag_at)[0] | 0x800
        struct.pack_into("<H", data, i + flag_at, flags)
        data[i + name_at] = 0xFF  # 'I' becomes an invalid UTF-8 byte
    z.write_bytes(bytes(data))
    with pytest.raises(ExamError, match="flagged UTF-8 but are not"):
        open_input(z)


def test_safe_name_keeps_names_short_portable_and_distinct():
    a, b = safe_name("x" * 300 + ".dcm"), safe_name("x" * 299 + "y.dcm")
    assert a != b and a.endswith(".dcm") and len(a.encode()) <= 120
    assert safe_name("..") == "_" and safe_name("a:b") == "a_b" and safe_name("nul.txt") == "_nul.txt"
    assert safe_name("IM\udcff.dcm") == "IM\ufffd.dcm"


_CHILD = """
import os, signal, sys
from liverview.io.inputs import open_input
inp = open_input(sys.argv[1])
print(inp.root, flush=True)
if sys.argv[2] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)
"""


def _child(zip_path: Path, how: str, tmp: Path) -> Path:
    env = {**os.environ, "TMPDIR": str(tmp)}
    run = subprocess.run([sys.executable, "-c", _CHILD, str(zip_path), how], capture_output=True, text=True, env=env, timeout=60)
    if how == "kill":
        assert run.returncode == -signal.SIGKILL
    else:
        assert run.returncode == 0, run.stderr
    return Path(run.stdout.strip())


def test_extraction_folder_goes_on_close_on_exit_and_after_a_killed_run(tmp_path, exam_writer, monkeypatch):
    exam_writer(tmp_path / "exam", n=3)
    z = _zip_exam(tmp_path / "exam", tmp_path / "exam.zip")
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(inputs_module.tempfile, "tempdir", str(tmp))
    inp = open_input(z)
    assert inp.root.parent == tmp and inp.root.name.startswith(f"{TEMP_PREFIX}{os.getpid()}-")
    inp.close()
    assert not inp.root.exists()

    exited = _child(z, "exit", tmp)  # never closed: the process exit removes it
    assert exited.name.startswith(TEMP_PREFIX) and not exited.exists()

    killed = _child(z, "kill", tmp)
    assert killed.is_dir()  # nothing runs on SIGKILL
    mine = tmp / f"{TEMP_PREFIX}{os.getpid()}-live"
    mine.mkdir()  # a folder of a live process is never touched
    inp = open_input(z)
    try:
        assert not killed.exists() and mine.is_dir()
    finally:
        inp.close()
    assert remove_leftovers(str(tmp)) == []


# ---- file names and permissions ------------------------------------------------------------------
def test_non_utf8_file_name_is_named_printably(tmp_path, exam_writer, capsys):
    exam_writer(tmp_path, n=4)
    odd = os.fsdecode(b"IM\xff\xfe.dcm")
    (tmp_path / "s0" / odd).write_bytes(b"not dicom at all")
    good = _files(tmp_path)[6]
    poisoned = tmp_path / "s1" / os.fsdecode(b"P\xe9\xff.dcm")
    poisoned.write_bytes(good.read_bytes())
    _flip_study_date_vr(poisoned)
    assert main(["info", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "IM\ufffd\ufffd.dcm: not a DICOM file" in out
    assert "P\ufffd\ufffd.dcm: undecodable element StudyDate" in out


def test_unreadable_folder_is_a_named_problem(tmp_path, exam_writer, monkeypatch, capsys):
    exam_writer(tmp_path, n=4)
    locked = tmp_path / "s1"
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = scan(tmp_path)
    assert f"{locked}: folder not readable (Permission denied): its files were not looked at" in result.problems
    assert len(result.series) == 3
    assert main(["info", str(tmp_path)]) == 3
    assert "folder not readable" in capsys.readouterr().out


def test_unreadable_file_is_skipped_naming_why(tmp_path, exam_writer, monkeypatch):
    from liverview.io import headers

    exam_writer(tmp_path, n=4)
    locked = _files(tmp_path)[3]
    real_open = open

    def fake_open(path, *a, **k):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(locked))
        return real_open(path, *a, **k)

    monkeypatch.setattr(headers, "open", fake_open, raising=False)
    result = scan(tmp_path)
    assert _skipped(result, locked) == "cannot read the file: Permission denied"
    assert sorted(result.studies[0].phases) == ["A", "D", "P", "V"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads chmod 000 folders")
def test_chmod_000_phase_folder_and_file(tmp_path, exam_writer, capsys):
    exam_writer(tmp_path, n=4)
    (tmp_path / "s1").chmod(0)
    locked = _files(tmp_path)[0]
    locked.chmod(0)
    try:
        assert main(["info", str(tmp_path)]) == 3
        out = capsys.readouterr().out
        assert "folder not readable" in out and "cannot read the file" in out
    finally:
        (tmp_path / "s1").chmod(0o755)
        locked.chmod(0o644)


def test_one_file_in_a_transfer_syntax_nobody_decodes_is_left_out(tmp_path, exam_writer):
    exam_writer(tmp_path, n=4)
    bad = _files(tmp_path)[8]
    ds = pydicom.dcmread(bad)
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5"
    ds.save_as(bad)
    result = scan(tmp_path)
    s = next(s for s in result.series if any(h.path == str(bad) for h in s.headers))
    assert s.loadable and s.n_slices == 3
    assert any("in a transfer syntax that cannot be decoded here left out" in p and "unknown transfer syntax 1.2.3.4.5" in p
               for p in s.problems)
