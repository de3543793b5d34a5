"""Fixtures for the phantom tests: small written exams and a DICOM series reader (pydicom + modality LUT)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_modality_lut

from liverview.phantom import generate_exam


def read_series(folder: Path) -> dict[float, np.ndarray]:
    """HU slices of a series keyed by position along the normal (z for axial)."""
    out = {}
    for f in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
        out[round(float(ds.ImagePositionPatient[2]), 2)] = hu
    return out


def disk(shape, center, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    c, r = center
    return (yy - r) ** 2 + (xx - c) ** 2 <= radius**2


def roi_mean(series: dict[float, np.ndarray], roi: dict) -> tuple[float, int]:
    """Mean HU in a truth ROI disk over all its slices, and the number of pixels."""
    vals = []
    for z in roi.get("positions", [roi["position"]]):
        img = series[round(z, 2)]
        vals.append(img[disk(img.shape, roi["center"], roi["radius_px"])])
    v = np.concatenate(vals)
    return float(v.mean()), int(v.size)


# The scanner noise is white noise smoothed by a 3-tap binomial kernel along rows and columns:
# neighbouring pixels are correlated and a mean over n pixels averages about n / 7.1 samples.
NOISE_CORRELATION = 1.0 / 0.375**2


def mean_tolerance(noise_sd: float, n: int, texture: float = 3.0) -> float:
    """Three standard errors of an ROI mean under the phase's noise, plus tissue texture."""
    return 3.0 * noise_sd * float(np.sqrt(NOISE_CORRELATION / n)) + texture


class DicomTools:
    """The helpers above, handed to tests as a fixture (conftest is not importable)."""

    read_series = staticmethod(read_series)
    disk = staticmethod(disk)
    roi_mean = staticmethod(roi_mean)
    mean_tolerance = staticmethod(mean_tolerance)


@pytest.fixture(scope="session")
def dicom_tools():
    return DicomTools


@pytest.fixture(scope="session")
def hb_exam(tmp_path_factory):
    """A hepatoblastoma exam written as full DICOM series (128 x 128)."""
    out = tmp_path_factory.mktemp("hb")
    truth = generate_exam(out, seed=11, patient_index=0, member="HB", matrix=128)
    return out / truth["patient_id"], truth


@pytest.fixture(scope="session")
def hh_exam(tmp_path_factory):
    """A hemangioma exam written as full DICOM series (128 x 128)."""
    out = tmp_path_factory.mktemp("hh")
    truth = generate_exam(out, seed=12, patient_index=1, member="HH", matrix=128)
    return out / truth["patient_id"], truth
