"""Phase identification from the pixels: aorta, portal vein and liver HU on generated slices and DICOM series."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from liverview.io.kinetics import analyse_slice, phase_fit
from liverview.io.scan import scan

N, MM = 192, 1.5


def _ellipse(cy, cx, ry, rx):
    yy, xx = np.mgrid[0:N, 0:N]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def abdomen(aorta: float, liver: float, portal: float, seed: int = 0) -> np.ndarray:
    """An axial abdomen slice (HU, image left = patient right): fat, muscle, spine, liver with a portal vein, aorta."""
    rng = np.random.default_rng(seed)
    c = N / 2
    img = np.full((N, N), -1000.0)
    img[_ellipse(c, c, 60, 85)] = -100.0
    img[_ellipse(c, c, 55, 80) & ~_ellipse(c, c, 50, 75)] = 50.0
    img[_ellipse(c + 35, c, 12, 12)] = 700.0
    img[_ellipse(c - 5, c - 38, 38, 32)] = liver
    img[_ellipse(c - 2, c - 22, 5, 5)] = portal
    img[_ellipse(c + 10, c + 8, 7, 7)] = aorta
    return img + rng.normal(0, 12, img.shape)


def _affine():
    a = np.eye(4)
    a[0, 0] = a[1, 1] = MM
    a[:3, 3] = (-N * MM / 2, -N * MM / 2, 0.0)
    return a


@pytest.mark.parametrize(
    "hu, phase",
    [((45, 55, 45), "P"), ((300, 75, 120), "A"), ((170, 110, 175), "V"), ((115, 95, 120), "D"), ((230, 100, 200), "V")],
)
def test_measured_enhancement_fits_the_phase(hu, phase):
    m = analyse_slice(abdomen(*hu), _affine())
    aorta, liver, portal = hu
    assert m.liver_hu == pytest.approx(liver, abs=8)
    if phase == "P":
        assert m.aorta_hu is None and m.aorta_below is not None  # nothing enhanced in front of the spine
    else:
        assert m.aorta_hu == pytest.approx(aorta, abs=15)
    _, post = phase_fit(m.aorta_hu, m.liver_hu, m.portal_hu, m.aorta_below)
    assert max(post, key=post.get) == phase


def _write_series(folder, pixels_hu, description, number, study_uid, time, contrast=True):
    folder.mkdir(parents=True)
    series_uid = generate_uid()
    for k, hu in enumerate(pixels_hu):
        fm = FileMetaDataset()
        fm.MediaStorageSOPClassUID = CTImageStorage
        fm.MediaStorageSOPInstanceUID = sop = generate_uid()
        fm.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = fm
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = study_uid
        ds.Modality, ds.PatientID, ds.SeriesNumber, ds.InstanceNumber = "CT", "KIN", number, k + 1
        ds.SeriesDescription = description
        ds.AcquisitionTime = time
        if contrast:
            ds.ContrastBolusAgent = "IOHEXOL"
        ds.ImagePositionPatient = [-N * MM / 2, -N * MM / 2, -2.5 * k]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [MM, MM]
        ds.SliceThickness = 2.5
        ds.Rows = ds.Columns = N
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = (np.round(hu) + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"IM{k:03d}.dcm", enforce_file_format=True)


def test_a_single_contrast_series_with_liver_100_and_aorta_230_is_portal_venous(tmp_path):
    slices = [abdomen(230, 100, 200, seed=k) for k in range(5)]
    _write_series(tmp_path / "s6", slices, "Recon 3: LIVER 2 PHASE (C/A/P)", 6, generate_uid(), "101500")
    st = scan(tmp_path).studies[0]
    assert list(st.phases) == ["V"]
    guess = st.series[0].guess
    line = next(e for e in guess.evidence if e.startswith("pixels"))
    assert "aorta 2" in line and "liver 10" in line and "portal venous" in line
    assert guess.confidence >= 0.5  # not a guess: the pixels say so


def test_pixels_order_an_exam_whose_descriptions_say_nothing(tmp_path):
    uid = generate_uid()
    hu = {"P": (45, 55, 45), "A": (300, 75, 120), "V": (170, 110, 175), "D": (115, 95, 120)}
    # series numbers and times in phase order, descriptions empty of phase words; the pre-contrast has no bolus tags
    for i, (p, (a, l, v)) in enumerate(hu.items()):
        slices = [abdomen(a, l, v, seed=10 * i + k) for k in range(3)]
        _write_series(tmp_path / p, slices, "ABDOMEN", i + 1, uid, f"1000{i}0", contrast=p != "P")
    st = scan(tmp_path).studies[0]
    by_uid = {s.uid: s for s in st.series}
    for p, series_uid in st.phases.items():
        assert by_uid[series_uid].description == "ABDOMEN"
        assert any(e.startswith("pixels") for e in by_uid[series_uid].guess.evidence)
    names = {p: by_uid[u].headers[0].ds.SeriesNumber for p, u in st.phases.items()}
    assert names == {"P": 1, "A": 2, "V": 3, "D": 4}
