"""Shared engine fixtures: a tiny random bundle (64 px) and a synthetic four-phase case from numpy."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from liverview.study.case import Box, Case, Study
from liverview.study.volume import Volume

sys.path.insert(0, str(Path(__file__).parents[1] / "helpers"))
from bodies import make_volume  # noqa: E402  - shared with tests/findings

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory):
    from liverview.engine.bundle import make_random_bundle

    folder = tmp_path_factory.mktemp("bundle") / "random"
    make_random_bundle(folder, backbone="resnet18", input_size=64, det_input_size=64, seed=0)
    return folder


@pytest.fixture(scope="session")
def engine(random_bundle):
    from liverview.engine.analyze import Engine

    return Engine(random_bundle)


def make_study(phases=("P", "A", "V", "D"), h=64, w=80, matrices=None):
    hu = {"P": 55.0, "A": 70.0, "V": 110.0, "D": 90.0}
    vols = {}
    for i, p in enumerate(phases):
        ph, pw = (matrices or {}).get(p, (h, w))
        vols[p] = make_volume(h=ph, w=pw, phase_hu=hu[p], seed=i)
    return Study(volumes=vols, study_uid="1.2.3", patient_id="TEST")


def _make_case(phases=("P", "A", "V", "D"), user_box=False, matrices=None):
    study = make_study(phases, matrices=matrices)
    case = Case(study)
    for p in study.phases:
        vol = study.volumes[p]
        picks = [vol.position_of(k) for k in (5, 6, 7)]
        case.set_picks(p, picks)
        if user_box:
            sy = vol.pixels.shape[1] / 64
            sx = vol.pixels.shape[2] / 80
            for pos in picks:
                case.add_box(Box(p, pos, 34 * sx, 20 * sy, 54 * sx, 40 * sy, origin="user"))
    return case


@pytest.fixture
def make_case():
    """Factory: make_case(phases=..., user_box=False, matrices={phase: (rows, cols)}) -> Case."""
    return _make_case


@pytest.fixture
def case():
    return _make_case()


def write_dicom_exam(folder, study, descriptions=None):
    """Write a Study's HU volumes as CT DICOM series (one per phase) with pydicom; returns the folder."""
    import datetime

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    descriptions = descriptions or {"P": "PRE CONTRAST", "A": "ARTERIAL", "V": "PORTAL VENOUS", "D": "DELAYED 3 MIN"}
    study_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    for s_no, (phase, vol) in enumerate(study.volumes.items(), start=1):
        series_uid = generate_uid()
        n, rows, cols = vol.pixels.shape
        for k in range(n):
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = generate_uid()
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.PatientID = "ENGINE-TEST"
            ds.PatientName = "Engine^Test"
            ds.Modality = "CT"
            ds.StudyDate = datetime.date.today().strftime("%Y%m%d")
            ds.SeriesNumber = s_no
            ds.InstanceNumber = k + 1
            ds.SeriesDescription = descriptions[phase]
            ds.AcquisitionTime = f"1200{10 * s_no:02d}"
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [float(v) for v in vol.affine[:3, 3] + k * vol.affine[:3, 2]]
            ds.PixelSpacing = [float(vol.affine[1, 1]), float(vol.affine[0, 0])]
            ds.SliceThickness = float(vol.affine[2, 2])
            ds.Rows, ds.Columns = rows, cols
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = 0
            ds.RescaleSlope = 1
            ds.RescaleType = "HU"
            ds.PixelData = np.rint(vol.pixels[k]).astype(np.int16).tobytes()
            ds.save_as(folder / f"{phase}_{k:03d}.dcm", enforce_file_format=True)
    return folder


@pytest.fixture
def write_exam():
    """Factory: write_exam(folder, phases=..., z_shift={phase: mm}) -> a tiny four-phase DICOM exam folder."""

    def write(folder, phases=("P", "A", "V", "D"), z_shift=None):
        study = make_study(phases)
        for p, dz in (z_shift or {}).items():
            study.volumes[p].affine[2, 3] += dz
        return write_dicom_exam(folder, study)

    return write


@pytest.fixture(scope="session")
def four_phase_exam(tmp_path_factory):
    """A tiny four-phase DICOM exam (12 slices of 64 x 80 per phase), written once."""
    return write_dicom_exam(tmp_path_factory.mktemp("exam") / "four", make_study())


def _synthetic_study(n_slices=12, size=48, phases=("P", "A", "V", "D"), uid="1.2.826.0.1.77"):
    """A bright disc ("lesion") in a liver on every phase, in the middle third of the slices.

    The body (fat in air, 4 mm pixels: child-sized) and the liver on the patient's right let
    the liver check pass."""
    from liverview.study.case import PhaseSource

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    disc = (xx - size * 0.6) ** 2 + (yy - size * 0.4) ** 2 < (size * 0.12) ** 2
    body = ((yy - size / 2) / (size / 2 - 2)) ** 2 + ((xx - size / 2) / (size / 2 - 2)) ** 2 <= 1
    liver = ((yy - size * 0.45) / (size * 0.36)) ** 2 + ((xx - size * 0.4) / (size * 0.34)) ** 2 <= 1
    liver_hu = {"P": 55.0, "A": 75.0, "V": 110.0, "D": 95.0}
    volumes, sources = {}, {}
    for i, p in enumerate(phases):
        px = rng.normal(0.0, 10.0, (n_slices, size, size)).astype(np.float32)
        px += np.where(liver, liver_hu[p], np.where(body, -100.0, -1000.0)).astype(np.float32)
        for k in range(n_slices // 3, 2 * n_slices // 3):
            px[k][disc] += 100.0 + 20 * i
        affine = np.diag([4.0, 4.0, 2.0, 1.0])
        affine[:3, 3] = [-25.0, -25.0, -20.0]
        volumes[p] = Volume(px, affine, series_uid=f"{uid}.{i}", description=f"series {p}")
        sources[p] = PhaseSource(series_uid=f"{uid}.{i}", description=f"series {p}", evidence=["test"], confidence=1.0)
    return Study(volumes=volumes, sources=sources, study_uid=uid, patient_id="TEST", path="/nonexistent/test")


@pytest.fixture
def synthetic_study():
    """Factory: synthetic_study(n_slices=12, size=48, phases=...) -> a small Study with a bright lesion."""
    return _synthetic_study
