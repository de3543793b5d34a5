"""Scanning: sorting along the slice normal, geometry problems, skipped files, refusals before decoding."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pydicom.uid import generate_uid

import liverview.io.loader as loader_module
import liverview.io.pixels as pixels_module
from liverview.io import ExamError, load_exam, scan


def _hu_slice_ids(volume) -> list[int]:
    """Which written slice (k in 1024 + 10k + col) sits at each index of a loaded volume."""
    return [int(round(float(volume.pixels[i, 0, 0]) / 10)) for i in range(volume.shape[0])]


def test_slices_sort_by_position_not_by_name_or_instance_number(tmp_path, series_writer):
    n = 9
    z = [float(v) for v in np.linspace(-40, 0, n)]
    order = list(range(n))
    random.Random(3).shuffle(order)
    names = [f"file{order[k]:02d}.dcm" for k in range(n)]
    instances = [order[(k + 4) % n] + 1 for k in range(n)]
    study = generate_uid()
    series_writer(tmp_path, study_uid=study, description="Arterial", z=z, names=names, instance_numbers=instances)
    rec = scan(tmp_path).studies[0].series[0]
    assert [round(s.z, 3) for s in rec.slices] == sorted(round(v, 3) for v in z)
    load = load_exam(tmp_path)
    vol = load.study.volumes["A"]
    # written slice k sits at position z[k]; ascending positions give ascending k here
    assert _hu_slice_ids(vol) == list(range(n))
    assert np.allclose(vol.positions, np.linspace(-40, 0, n))


def test_sorting_follows_the_normal_of_oblique_and_sagittal_series(tmp_path, series_writer):
    # sagittal: rows along y (posterior), columns along -z (feet)
    study = generate_uid()
    z = [3.0, -1.0, 7.0, 1.0, 5.0]
    series_writer(tmp_path, study_uid=study, description="Arterial", z=z, orientation=(0, 1, 0, 0, 0, -1))
    rec = scan(tmp_path).studies[0].series[0]
    # the slice normal of this orientation is (0,1,0) x (0,0,-1) = (-1, 0, 0); the writer's
    # in-plane origin (-5, -6, 0) adds 5 mm along it
    expected = [v + 5.0 for v in sorted(z)]
    assert [round(s.z, 3) for s in rec.slices] == expected
    vol = load_exam(tmp_path).study.volumes["A"]
    assert np.allclose(vol.positions, expected)
    assert np.allclose(vol.normal, [-1, 0, 0])
    assert _hu_slice_ids(vol) == [1, 3, 0, 4, 2]  # written order 3, -1, 7, 1, 5 sorted


def test_gap_in_spacing_is_reported_naming_the_series(tmp_path, series_writer):
    study = generate_uid()
    series_writer(tmp_path, study_uid=study, description="Portal venous", number=4, z=[0, 2.5, 5, 7.5, 15, 17.5])
    rec = scan(tmp_path).studies[0].series[0]
    assert not rec.uniform
    gap = [p for p in rec.problems if "non-uniform slice spacing" in p]
    assert gap and gap[0].startswith("series #4 'Portal venous'")
    load = load_exam(tmp_path)
    assert load.study.volumes["V"].meta["slice_positions"] == [0.0, 2.5, 5.0, 7.5, 15.0, 17.5]
    assert any("non-uniform slice spacing" in p for p in load.problems)


def test_duplicate_positions_are_reported_and_kept_once(tmp_path, series_writer):
    study = generate_uid()
    series_writer(tmp_path, study_uid=study, description="Delayed", number=2, z=[0, 2.5, 2.5, 5, 7.5])
    rec = scan(tmp_path).studies[0].series[0]
    assert rec.n_slices == 4 and rec.n_files == 5
    assert any(p.startswith("series #2 'Delayed'") and "duplicate the position" in p for p in rec.problems)


def test_mixed_orientation_is_reported_and_the_majority_kept(tmp_path, series_writer):
    study = generate_uid()
    uid, _ = series_writer(tmp_path / "a", study_uid=study, description="Arterial", n=5)
    # two slices of the same series tilted
    series_writer(tmp_path / "b", study_uid=study, description="Arterial", n=2, series_uid=uid,
                  z=[-20.0, -22.5], orientation=(1, 0, 0, 0, 0.8, -0.6), names=["T1.dcm", "T2.dcm"])
    rec = scan(tmp_path).studies[0].series[0]
    assert rec.n_files == 7 and rec.n_slices == 5
    assert any("mixed orientation" in p and "left out 2" in p and "'Arterial'" in p for p in rec.problems)


def test_mixed_pixel_spacing_is_reported(tmp_path, series_writer):
    study = generate_uid()
    uid, _ = series_writer(tmp_path / "a", study_uid=study, description="Arterial", n=4)
    series_writer(tmp_path / "b", study_uid=study, description="Arterial", n=1, series_uid=uid, z=[-30.0],
                  spacing=(0.9, 0.9), names=["X.dcm"])
    rec = scan(tmp_path).studies[0].series[0]
    assert rec.n_slices == 4
    assert any("mixed pixel spacing" in p for p in rec.problems)


def test_non_dicom_files_are_skipped_with_a_reason(tmp_path, exam_writer):
    exam_writer(tmp_path)
    (tmp_path / "notes.txt").write_text("radiology notes")
    (tmp_path / "s0" / "thumb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    (tmp_path / "empty.dcm").write_bytes(b"")
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
    result = scan(tmp_path)
    reasons = dict((p.rsplit("/", 1)[-1], r) for p, r in result.skipped)
    assert reasons["notes.txt"].startswith("not a DICOM file")
    assert reasons["thumb.png"].startswith("not a DICOM file")
    assert reasons["empty.dcm"] == "empty file"
    assert reasons["broken.dcm"].startswith("unreadable DICOM header")
    assert len(result.studies[0].phases) == 4


def test_non_ct_series_is_listed_but_not_offered(tmp_path, exam_writer, series_writer):
    study, _ = exam_writer(tmp_path)
    mr, _ = series_writer(tmp_path / "mr", study_uid=study, description="Arterial T1", modality="MR", number=9)
    result = scan(tmp_path)
    st = result.studies[0]
    rec = st.series_by_uid(mr)
    assert rec is not None and rec.not_offered == "modality MR, not CT"
    assert mr not in st.phases.values()
    load = load_exam(tmp_path)
    assert mr not in {s.uid for s in load.candidates}


def test_pixel_cap_refuses_before_any_decoding(tmp_path, exam_writer, monkeypatch):
    exam_writer(tmp_path)

    def forbidden(*a, **k):
        raise AssertionError("pixels decoded although the cap refuses the series")

    for name in ("read_native_int16", "read_native", "decode_file"):
        monkeypatch.setattr(loader_module, name, forbidden)
        monkeypatch.setattr(pixels_module, name, forbidden)
    cap = 1000  # bytes; each series needs 6 x 12 x 16 x 2 = 2304
    result = scan(tmp_path, max_pixel_bytes=cap)
    for s in result.series:
        assert s.refusal and "more than the" in s.refusal and "cap" in s.refusal
    with pytest.raises(ExamError) as err:
        load_exam(tmp_path, max_pixel_bytes=cap)
    assert str(tmp_path) in str(err.value)


def test_exam_total_over_the_cap_is_refused(tmp_path, exam_writer):
    exam_writer(tmp_path)
    with pytest.raises(ExamError, match="phases need"):
        load_exam(tmp_path, max_pixel_bytes=3 * 2304)  # each series fits, the four together do not


def test_missing_decoder_is_named(tmp_path):
    import importlib.util
    import shutil
    from pathlib import Path

    import pydicom.pixels

    spec = importlib.util.find_spec("data_store")
    if spec is None:
        pytest.skip("pydicom-data is not installed")
    src = Path(spec.origin).parent / "data" / "JPGLosslessP14SV1_1s_1f_8b.dcm"
    if pydicom.pixels.get_decoder("1.2.840.10008.1.2.4.70").is_available:
        pytest.skip("a JPEG Lossless decoder is installed here")
    shutil.copy(src, tmp_path / "jpegll.dcm")
    rec = scan(tmp_path).series[0]
    assert "JPEG Lossless" in rec.refusal and "pylibjpeg-libjpeg" in rec.refusal


def test_nothing_usable_is_one_line_error_naming_the_path(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ExamError) as err:
        load_exam(tmp_path)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path)) and "\n" not in msg
    with pytest.raises(ExamError, match="no such file"):
        load_exam(tmp_path / "missing")


def test_several_studies_are_listed_and_one_chosen(tmp_path, exam_writer):
    s1, _ = exam_writer(tmp_path / "one")
    s2, _ = exam_writer(tmp_path / "two", patient_id="PAT2")
    result = scan(tmp_path)
    assert {st.uid for st in result.studies} == {s1, s2}
    load = load_exam(tmp_path, study_uid=s2)
    assert load.study.study_uid == s2 and load.study.patient_id == "PAT2"
    assert any("2 studies" in p for p in load.problems)
    with pytest.raises(ExamError, match="no study"):
        load_exam(tmp_path, study_uid="9.9.9")
