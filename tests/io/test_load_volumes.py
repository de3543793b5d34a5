"""Loading volumes: HU values as pydicom computes them, geometry, ready mask, progress, cancel, matching."""

from __future__ import annotations

import threading

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, ExplicitVRLittleEndian, RLELossless, generate_uid

from liverview.io import LoadCancelled, load_exam, match_position, match_slice, scan


def _pydicom_hu(path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return apply_modality_lut(ds.pixel_array, ds)


@pytest.mark.parametrize(
    "kw, dtype",
    [
        ({}, np.int16),
        ({"signed": True, "intercept": 0}, np.int16),
        ({"implicit": True}, np.int16),
        ({"slope": 0.5, "intercept": -100.25}, np.float32),
    ],
)
def test_hu_match_pydicom_modality_lut(tmp_path, series_writer, kw, dtype):
    _, paths = series_writer(tmp_path, study_uid=generate_uid(), description="Arterial", n=4, **kw)
    vol = load_exam(tmp_path).study.volumes["A"]
    assert vol.pixels.dtype == dtype
    assert vol.intensity == "HU"
    # writer order is z = 0, -2.5, -5, -7.5: the volume runs the other way (ascending)
    for k, p in enumerate(reversed(paths)):
        np.testing.assert_allclose(vol.pixels[k], _pydicom_hu(p), rtol=0, atol=1e-4)


def test_compressed_series_decodes_like_pydicom(tmp_path, series_writer):
    _, paths = series_writer(tmp_path / "raw", study_uid=generate_uid(), description="Arterial", n=3)
    out = tmp_path / "rle"
    out.mkdir()
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(out / p.name)
    load = load_exam(out)
    vol = load.study.volumes["A"]
    assert vol.meta["transfer_syntax"] == [RLELossless]
    for k, p in enumerate(reversed(paths)):
        np.testing.assert_array_equal(vol.pixels[k], _pydicom_hu(p))


def test_affine_maps_pixels_to_the_dicom_positions(tmp_path, series_writer):
    study = generate_uid()
    _, paths = series_writer(tmp_path, study_uid=study, description="Arterial", n=5, spacing=(0.6, 0.9),
                             orientation=(1, 0, 0, 0, 0.8, -0.6))
    vol = load_exam(tmp_path).study.volumes["A"]
    assert vol.spacing == pytest.approx((2.5, 0.6, 0.9))
    for k, p in enumerate(reversed(paths)):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        ipp = np.array(ds.ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(vol.to_patient(0, 0, k), ipp, atol=1e-6)
        # column 3, row 2: 3 x column spacing along the row direction, 2 x row spacing along the column direction
        expect = ipp + 3 * 0.9 * np.array([1, 0, 0]) + 2 * 0.6 * np.array([0, 0.8, -0.6])
        np.testing.assert_allclose(vol.to_patient(3, 2, k), expect, atol=1e-6)
    assert vol.meta["sop_instance_uids"][0] == pydicom.dcmread(paths[-1], stop_before_pixels=True).SOPInstanceUID


def test_progress_ready_mask_and_middle_slices_first(tmp_path, exam_writer):
    exam_writer(tmp_path, n=7)
    seen = []
    states = {}

    def on_study(study):
        states["phases"] = study.phases
        states["ready_at_start"] = {p: v.ready.copy() for p, v in study.volumes.items()}
        states["volumes"] = study.volumes

    def progress(done, total, message):
        vols = states.get("volumes")
        if vols is not None and message.startswith("decoding"):
            seen.append((done, total, {p: np.flatnonzero(v.ready).tolist() for p, v in vols.items()}))

    load = load_exam(tmp_path, progress=progress, on_study=on_study)
    assert states["phases"] == ["P", "A", "V", "D"]
    assert not any(r.any() for r in states["ready_at_start"].values())
    assert seen[-1][0] == seen[-1][1] == 28
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)
    # after four decodes, the middle slice (index 3 of 7) of every phase is there
    assert seen[3][2] == {"P": [3], "A": [3], "V": [3], "D": [3]}
    assert all(v.ready.all() for v in load.study.volumes.values())


@pytest.mark.parametrize("as_event, workers", [(True, 1), (False, 1), (True, 2)])
def test_cancel_stops_the_load(tmp_path, exam_writer, as_event, workers):
    exam_writer(tmp_path, n=6)
    event = threading.Event()
    calls = []

    def progress(done, total, message):
        if message.startswith("decoding"):
            calls.append(done)
            if done >= 3:
                event.set()

    cancel = event if as_event else event.is_set
    with pytest.raises(LoadCancelled):
        load_exam(tmp_path, progress=progress, cancel=cancel, workers=workers)
    assert max(calls) < 24  # stopped before the 4 x 6 slices were all decoded


def test_thread_pool_decode_gives_the_same_volumes(tmp_path, exam_writer):
    exam_writer(tmp_path, n=5)
    one = load_exam(tmp_path, workers=1).study
    two = load_exam(tmp_path, workers=3).study
    for p in one.phases:
        np.testing.assert_array_equal(one.volumes[p].pixels, two.volumes[p].pixels)
        assert two.volumes[p].ready.all()


def test_values_beyond_int16_are_clipped_and_reported(tmp_path, series_writer):
    # signed 16-bit storage with intercept -1024: the padding value -32768 would be -33792 HU
    _, paths = series_writer(tmp_path, study_uid=generate_uid(), description="Arterial", n=3, signed=True)
    ds = pydicom.dcmread(paths[0])
    arr = ds.pixel_array.copy()
    arr[0, :4] = -32768
    ds.PixelData = arr.tobytes()
    ds.save_as(paths[0])
    load = load_exam(tmp_path)
    vol = load.study.volumes["A"]
    assert vol.pixels.dtype == np.int16
    assert (vol.pixels[-1, 0, :4] == -32768).all()  # paths[0] is the highest z: last index
    assert any("4 pixel values beyond the int16 HU range were clipped" in p for p in load.problems)


def _enhanced_ct(path, study, z, intercept=-1000.0):
    rows, cols = 8, 10
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = EnhancedCTImageStorage
    fm.MediaStorageSOPInstanceUID = sop = generate_uid()
    fm.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = EnhancedCTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.Modality, ds.SeriesDescription, ds.SeriesNumber = "CT", "Portal venous", 3
    ds.Rows, ds.Columns, ds.NumberOfFrames = rows, cols, len(z)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    shared = Dataset()
    ori = Dataset()
    ori.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PlaneOrientationSequence = Sequence([ori])
    meas = Dataset()
    meas.PixelSpacing = [0.5, 0.5]
    meas.SliceThickness = 1.0
    shared.PixelMeasuresSequence = Sequence([meas])
    pvt = Dataset()
    pvt.RescaleSlope, pvt.RescaleIntercept, pvt.RescaleType = 1, intercept, "HU"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for zk in z:
        item = Dataset()
        pos = Dataset()
        pos.ImagePositionPatient = [0.0, 0.0, float(zk)]
        item.PlanePositionSequence = Sequence([pos])
        frames.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    pix = np.stack([np.full((rows, cols), 1000 + 7 * k, np.uint16) for k in range(len(z))])
    ds.PixelData = pix.tobytes()
    ds.save_as(path, enforce_file_format=True)


def test_enhanced_multiframe_ct_uses_per_frame_positions_and_rescale(tmp_path):
    _enhanced_ct(tmp_path / "enh.dcm", generate_uid(), z=[4.0, 0.0, 2.0, 6.0])
    load = load_exam(tmp_path)
    vol = load.study.volumes["V"]
    np.testing.assert_allclose(vol.positions, [0.0, 2.0, 4.0, 6.0])
    # frame k holds 1000 + 7k raw; intercept -1000; frames sorted by z: 1, 2, 0, 3
    assert [int(vol.pixels[i, 0, 0]) for i in range(4)] == [7, 14, 0, 21]
    assert vol.spacing == pytest.approx((2.0, 0.5, 0.5))


def test_match_position_between_phases_with_different_spacing(tmp_path, series_writer):
    study = generate_uid()
    series_writer(tmp_path / "a", study_uid=study, description="Arterial", z=[0, 1, 2, 3, 4, 5, 6, 7, 8], number=1)
    series_writer(tmp_path / "v", study_uid=study, description="Portal venous", z=[-1.0, 2.0, 5.0, 8.0], number=2,
                  acquisition_time="100100")
    study_obj = load_exam(tmp_path).study
    assert match_position(study_obj, "A", 4.0, "V") == pytest.approx(5.0)
    assert match_position(study_obj, "A", 0.0, "V") == pytest.approx(-1.0)
    assert match_position(study_obj, "V", 2.0, "A") == pytest.approx(2.0)
    far = match_slice(study_obj, "A", 30.0, "V")
    assert not far.inside and far.position == pytest.approx(8.0) and far.distance_mm == pytest.approx(22.0)
    with pytest.raises(KeyError, match="phase D"):
        match_position(study_obj, "A", 0.0, "D")


def test_phases_that_do_not_overlap_are_reported(tmp_path, series_writer):
    study = generate_uid()
    series_writer(tmp_path / "a", study_uid=study, description="Arterial", z=[0, 2, 4, 6], number=1)
    series_writer(tmp_path / "v", study_uid=study, description="Portal venous", z=[100, 102, 104], number=2,
                  acquisition_time="100100")
    load = load_exam(tmp_path)
    assert any("phases A and V do not overlap" in p for p in load.problems)


# 128 x 128 16-bit pixels are 32 KiB a file, twice the quick header reader's 16 KiB chunk: a header
# read stops short of the last pixel byte, and any decode (readinto, np.fromfile, pydicom) reads it.
_BIG = {"rows": 128, "cols": 128}


class _ReadTracker:
    """A file object that records how far into the file anything was read."""

    def __init__(self, fp, reached: dict) -> None:
        self._fp, self._reached = fp, reached

    def _note(self, result):
        name = getattr(self._fp, "name", None)
        if isinstance(name, str):
            self._reached[name] = max(self._reached.get(name, 0), self._fp.tell())
        return result

    def read(self, *a):
        return self._note(self._fp.read(*a))

    def readinto(self, b):
        return self._note(self._fp.readinto(b))

    def read1(self, *a):
        return self._note(self._fp.read1(*a))

    def readinto1(self, b):
        return self._note(self._fp.readinto1(b))

    def readline(self, *a):
        return self._note(self._fp.readline(*a))

    def __iter__(self):
        return iter(self.readline, b"")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fp.close()

    def __getattr__(self, name):
        return getattr(self._fp, name)


def test_scan_reads_no_pixel_bytes(tmp_path, exam_writer, monkeypatch):
    import builtins
    import io

    exam_writer(tmp_path, n=3, **_BIG)
    sizes = {str(p): p.stat().st_size for p in tmp_path.rglob("*.dcm")}
    reached: dict[str, int] = {}
    real_open = io.open

    def tracked_open(file, mode="r", *a, **k):
        fp = real_open(file, mode, *a, **k)
        return _ReadTracker(fp, reached) if "b" in mode and "r" in mode else fp

    def no_fromfile(*a, **k):
        raise AssertionError("scan read pixels with np.fromfile")

    monkeypatch.setattr(builtins, "open", tracked_open)
    monkeypatch.setattr(io, "open", tracked_open)
    monkeypatch.setattr(np, "fromfile", no_fromfile)
    monkeypatch.setattr(np, "memmap", no_fromfile)
    result = scan(tmp_path)
    monkeypatch.undo()
    assert len(result.series) == 4 and not result.all_problems()
    headers = {h.path: h for s in result.series for h in s.headers}
    assert set(headers) == set(sizes) and set(reached) == set(sizes)
    for path, size in sizes.items():
        h = headers[path]
        assert h.pixel_offset + h.pixel_length == size  # the pixels are the file's last bytes
        assert reached[path] < size, f"scan read {path} to its last pixel byte"
    # the same exam decoded: the tracker sees the pixel bytes read (so it can see a scan that does)
    reached.clear()
    monkeypatch.setattr(builtins, "open", tracked_open)
    monkeypatch.setattr(io, "open", tracked_open)
    load_exam(tmp_path)
    monkeypatch.undo()
    assert all(reached.get(p) == size for p, size in sizes.items())


def test_scan_succeeds_on_pixel_data_that_cannot_be_decoded(tmp_path, exam_writer):
    """RLE fragments garbled after writing: the headers are intact, the pixels are unreadable.
    The scan offers the four phases without a problem; only decoding finds the damage."""
    exam_writer(tmp_path, n=3)
    for p in tmp_path.rglob("*.dcm"):
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        # an RLE header that claims 200 segments (at most 15 are allowed), the rest noise
        frame = np.uint32(200).tobytes() + bytes(range(60)) + b"\xa5" * 256
        ds.PixelData = encapsulate([frame])
        ds.save_as(p)
    result = scan(tmp_path)
    assert len(result.series) == 4 and not result.all_problems()
    assert {s.guess.phase for s in result.series} == {"P", "A", "V", "D"}
    load = load_exam(tmp_path)
    assert sum("could not be decoded" in p for p in load.problems) == 4, load.problems
