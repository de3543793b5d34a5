"""Pixels that cannot be trusted are left out with a line naming the file and the field; the rest of the series loads."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from liverview.io import load_exam, scan
from liverview.io.pixels import volume_dtype

# the files are written with values the standard does not allow, on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR DS")


def _series(tmp_path, series_writer, per_slice, n=5, **kw):
    _, paths = series_writer(tmp_path, study_uid=generate_uid(), description="Arterial", n=n, per_slice=per_slice, **kw)
    return paths


def _only_problem(problems, word):
    lines = [p for p in problems if word in p]
    assert len(lines) == 1, problems
    assert "\n" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "key, value",
    [("RescaleSlope", "NaN"), ("RescaleSlope", "inf"), ("RescaleSlope", 0), ("RescaleIntercept", "inf"),
     ("RescaleIntercept", "-inf"), ("RescaleIntercept", "NaN")],
)
def test_non_finite_rescale_leaves_the_file_out_and_keeps_the_rest(tmp_path, series_writer, key, value):
    paths = _series(tmp_path, series_writer, {2: {key: value}})
    load = load_exam(tmp_path)
    line = _only_problem(load.problems, key)
    assert str(paths[2]) in line and "left out" in line
    vol = load.study.volumes["A"]
    assert vol.pixels.shape[0] == 4 and vol.ready.all()
    assert vol.pixels.dtype == np.int16  # the bad intercept no longer decides the volume's type
    assert np.isfinite(vol.pixels).all()


def test_a_series_whose_every_file_has_a_nan_slope_is_refused(tmp_path, series_writer):
    _series(tmp_path, series_writer, {k: {"RescaleSlope": "NaN"} for k in range(4)}, n=4)
    rec = scan(tmp_path).series[0]
    assert rec.refusal and "RescaleSlope" in rec.refusal and not rec.is_candidate


def test_volume_dtype_survives_an_infinite_intercept(tmp_path, series_writer):
    _series(tmp_path, series_writer, {}, n=3)
    rec = scan(tmp_path).series[0]
    rec.slices[0].plan = (1.0, float("inf"))
    assert volume_dtype(rec.slices) == "float32"


def test_bits_allocated_8_on_16_bit_data_is_left_out(tmp_path, series_writer):
    # 16-bit pixels declared as 8-bit would load as noise: twice the bytes Rows x Columns need
    paths = _series(tmp_path, series_writer, {1: {"BitsAllocated": 8, "BitsStored": 8, "HighBit": 7}})
    load = load_exam(tmp_path)
    line = _only_problem(load.problems, "BitsAllocated")
    assert str(paths[1]) in line and "16 bits a pixel" in line
    vol = load.study.volumes["A"]
    assert vol.pixels.shape[0] == 4 and vol.ready.all()
    # what is left is the writer's ramp, HU 10*k + column: no noise
    assert np.array_equal(np.diff(vol.pixels[:, 0, :].astype(int), axis=1), np.ones((4, vol.pixels.shape[2] - 1)))


def test_columns_that_do_not_divide_the_pixel_data_into_rows_leave_the_file_out(tmp_path, series_writer):
    paths = _series(tmp_path, series_writer, {})
    ds = pydicom.dcmread(paths[3])
    ds.Columns = ds.Columns - 3  # read with this width, every row would be sheared
    ds.save_as(paths[3])
    load = load_exam(tmp_path)
    line = _only_problem(load.problems, "Rows/Columns")
    assert str(paths[3]) in line and "left out" in line
    assert load.study.volumes["A"].pixels.shape[0] == 4


def test_extra_whole_rows_keep_the_declared_image_and_are_reported(tmp_path, series_writer):
    paths = _series(tmp_path, series_writer, {})
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.Rows = ds.Rows - 3  # the first Rows rows are still the image, as pydicom reads it
        ds.save_as(p)
    load = load_exam(tmp_path)
    line = _only_problem(load.problems, "more pixel data than Rows")
    assert "5 slices" in line and "3 rows more" in line
    vol = load.study.volumes["A"]
    assert vol.pixels.shape[0] == 5  # nothing left out
    assert np.array_equal(vol.pixels[-1], pydicom.dcmread(paths[0]).pixel_array.astype(int) - 1024)


def test_odd_8_bit_pixel_data_padded_to_even_length_is_fine(tmp_path, series_writer):
    rows, cols = 5, 7
    paths = _series(tmp_path, series_writer, {}, n=3, rows=rows, cols=cols)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.RescaleIntercept = 0
        ds.PixelData = np.arange(rows * cols, dtype=np.uint8).tobytes() + b"\0"
        ds.save_as(p)
    load = load_exam(tmp_path)
    assert not [p for p in load.problems if "cannot be trusted" in p]
    assert load.study.volumes["A"].pixels[0, 0, :3].tolist() == [0, 1, 2]


def _with_lut_sequence(path, items):
    ds = pydicom.dcmread(path)
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.ModalityLUTSequence = Sequence(items)
    ds.save_as(path)


def _empty_item():
    # what a real secondary capture carries: one item whose LUT Descriptor and LUT Data have no value
    item = Dataset()
    item.add_new(0x00283002, "US", None)
    item.LUTExplanation = ""
    item.ModalityLUTType = ""
    item.add_new(0x00283006, "US", None)
    return item


@pytest.mark.parametrize("items", [[], "empty item"], ids=["no items", "an empty item"])
def test_an_unusable_modality_lut_falls_back_to_the_stored_values(tmp_path, series_writer, items):
    paths = _series(tmp_path, series_writer, {}, n=3)
    for p in paths:
        _with_lut_sequence(p, [_empty_item()] if items == "empty item" else [])
    load = load_exam(tmp_path)
    line = _only_problem(load.problems, "Modality LUT Sequence")
    assert "stored values used" in line and str(paths[0]) in line and "ModalityLUTSequence" in line
    vol = load.study.volumes["A"]
    assert vol.ready.all() and not any("could not be decoded" in p for p in load.problems)
    raw = pydicom.dcmread(paths[0]).pixel_array
    assert np.array_equal(vol.pixels[-1], raw)  # the raw values, never zeros


def test_an_unusable_modality_lut_falls_back_to_the_rescale_tags(tmp_path, series_writer):
    paths = _series(tmp_path, series_writer, {}, n=3)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.ModalityLUTSequence = Sequence([_empty_item()])
        ds.save_as(p)
    load = load_exam(tmp_path)
    assert "RescaleSlope/RescaleIntercept used instead" in _only_problem(load.problems, "Modality LUT Sequence")
    ds = pydicom.dcmread(paths[0])
    assert np.array_equal(load.study.volumes["A"].pixels[-1], ds.pixel_array.astype(int) - 1024)


def test_a_valid_modality_lut_still_applies(tmp_path, series_writer):
    paths = _series(tmp_path, series_writer, {}, n=3)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.ModalityLUTType = "HU"
    item.add_new(0x00283006, "US", [max(v - 1000, 0) for v in range(4096)])  # LUTData
    for p in paths:
        _with_lut_sequence(p, [item])
    load = load_exam(tmp_path)
    assert not [p for p in load.problems if "Modality LUT" in p]
    assert np.array_equal(load.study.volumes["A"].pixels[-1], pydicom.dcmread(paths[0]).pixel_array.astype(int) - 1000)


def test_a_lut_whose_data_is_shorter_than_its_descriptor_is_not_used(tmp_path, series_writer):
    paths = _series(tmp_path, series_writer, {}, n=3)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.add_new(0x00283006, "US", [0] * 10)  # LUTData
    for p in paths:
        _with_lut_sequence(p, [item])
    load = load_exam(tmp_path)
    assert "LUTData has 10 entries" in _only_problem(load.problems, "Modality LUT Sequence")
    assert load.study.volumes["A"].pixels.any()


def test_a_frame_with_a_nan_per_frame_slope_is_left_out_and_the_other_frames_kept(tmp_path):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian

    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = EnhancedCTImageStorage
    fm.MediaStorageSOPInstanceUID = sop = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "CT", "Portal venous", 3
    ds.Rows, ds.Columns, ds.NumberOfFrames = 6, 8, 4
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    shared = Dataset()
    ori = Dataset()
    ori.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([ori])
    meas = Dataset()
    meas.PixelSpacing = [0.5, 0.5]
    shared.PixelMeasuresSequence = Sequence([meas])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in range(4):
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        item.PlanePositionSequence = Sequence([pos])
        pvt = Dataset()
        pvt.RescaleSlope, pvt.RescaleIntercept = ("NaN" if k == 2 else 1), -1000
        item.PixelValueTransformationSequence = Sequence([pvt])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack([np.full((6, 8), 1000 + 7 * k, np.uint16) for k in range(4)]).tobytes()
    ds.save_as(tmp_path / "enh.dcm", enforce_file_format=True)
    load = load_exam(tmp_path)
    line = _only_problem(load.problems, "RescaleSlope")
    assert "1 slice left out" in line and "enh.dcm" in line
    vol = load.study.volumes["V"]
    assert [int(vol.pixels[i, 0, 0]) for i in range(3)] == [0, 7, 21]
