"""Fixtures for the io tests: a tiny CT series writer (pydicom) whose pixels say which slice they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

ROWS, COLS = 12, 16


def write_series(
    folder: Path,
    *,
    study_uid: str,
    description: str = "",
    n: int = 6,
    z: list[float] | None = None,
    orientation: tuple[float, ...] = (1, 0, 0, 0, 1, 0),
    spacing: tuple[float, float] = (0.7, 0.8),
    acquisition_time: str | None = "100000",
    contrast: str | None = None,
    bolus_start: str | None = None,
    modality: str = "CT",
    number: int = 1,
    names: list[str] | None = None,
    instance_numbers: list[int] | None = None,
    intercept: float = -1024,
    slope: float = 1,
    signed: bool = False,
    implicit: bool = False,
    rows: int = ROWS,
    cols: int = COLS,
    series_uid: str | None = None,
    per_slice: dict[int, dict] | None = None,
    image_type: list[str] | None = None,
    patient_id: str = "PAT1",
) -> tuple[str, list[Path]]:
    """Write one series; slice k (in `z` order as given) holds raw value 1024 + 10*k + col.

    With slope 1 and intercept -1024 that is HU 10*k + col, so a loaded volume shows which
    file landed where. Returns (series uid, paths).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    z = list(z) if z is not None else [float(-2.5 * k) for k in range(n)]
    names = names or [f"IM{k:04d}.dcm" for k in range(len(z))]
    instance_numbers = instance_numbers or list(range(1, len(z) + 1))
    ori = np.asarray(orientation, dtype=float)
    normal = np.cross(ori[:3], ori[3:])
    paths = []
    for k, zk in enumerate(z):
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = CTImageStorage
        fm.MediaStorageSOPInstanceUID = sop = generate_uid()
        fm.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = fm
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=[study_uid, "frame"])
        ds.Modality = modality
        ds.PatientID = patient_id
        ds.PatientName = "Phantom^Test"
        ds.StudyDate = "20260102"
        ds.StudyTime = "095500"
        ds.StudyID = "1"
        ds.AccessionNumber = "A1"
        ds.SeriesDescription = description
        ds.SeriesNumber = number
        ds.InstanceNumber = instance_numbers[k]
        if image_type:
            ds.ImageType = image_type
        if acquisition_time:
            ds.AcquisitionDate = "20260102"
            ds.AcquisitionTime = acquisition_time
        if contrast:
            ds.ContrastBolusAgent = contrast
        if bolus_start:
            ds.ContrastBolusStartTime = bolus_start
        ds.ImagePositionPatient = [float(v) for v in np.array([-5.0, -6.0, 0.0]) + zk * normal]
        ds.ImageOrientationPatient = [float(v) for v in ori]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = 2.5
        ds.Rows, ds.Columns = rows, cols
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = slope
        for key, value in (per_slice or {}).get(k, {}).items():
            setattr(ds, key, value)
        raw = 1024 + 10 * k + np.tile(np.arange(ds.Columns), (ds.Rows, 1))
        ds.PixelData = raw.astype(np.int16 if signed else np.uint16).tobytes()
        path = folder / names[k]
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return series_uid, paths


def write_exam(
    root: Path,
    descriptions=("Pre contrast", "Arterial", "Portal venous", "Delayed"),
    contrast=(None, "IOHEXOL", "IOHEXOL", "IOHEXOL"),
    times=("100000", "100130", "100210", "100430"),
    n: int = 6,
    **kw,
) -> tuple[str, dict[str, str]]:
    """Four CT series in one study; returns (study uid, {description: series uid})."""
    study = generate_uid()
    out = {}
    for i, (desc, agent, t) in enumerate(zip(descriptions, contrast, times)):
        uid, _ = write_series(
            root / f"s{i}", study_uid=study, description=desc, contrast=agent, acquisition_time=t,
            number=i + 1, n=n, **kw,
        )
        out[desc] = uid
    return study, out


@pytest.fixture
def series_writer():
    return write_series


@pytest.fixture
def exam_writer():
    return write_exam


_CORPUS_SUMMARY: list[str] = []


@pytest.fixture
def corpus_summary() -> list[str]:
    """Lines the pydicom corpus test adds; they are shown in the test report's summary."""
    return _CORPUS_SUMMARY


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _CORPUS_SUMMARY:
        terminalreporter.section("pydicom corpus through the liverview loader")
        for line in _CORPUS_SUMMARY:
            terminalreporter.write_line(line)
