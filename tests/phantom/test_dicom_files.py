"""The written DICOM: HU of liver, aorta and lesion per phase against the tissue table, headers, dciodvfy."""

from __future__ import annotations

import io
import re
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from scipy import ndimage

from liverview.phantom.dicom_series import SeriesWriter
from liverview.phantom.render import Exam
from liverview.phantom.tissues import TABLE, VARIATION
from liverview.study.phases import PHASES, WINDOWS

def _within_table(value: float, tissue: str, phase: str, extra: float = 0.0) -> bool:
    ref = TABLE[tissue][PHASES.index(phase)]
    return abs(value - ref) <= VARIATION * abs(ref) + extra + 1e-6


@pytest.mark.parametrize("which", ["hb_exam", "hh_exam"])
def test_liver_and_aorta_hu_per_phase_match_the_table(which, request, dicom_tools):
    read_series, roi_mean, tol = dicom_tools.read_series, dicom_tools.roi_mean, dicom_tools.mean_tolerance
    folder, truth = request.getfixturevalue(which)
    for p in PHASES:
        t = truth["phases"][p]
        series = read_series(folder / t["folder"])
        liver, n_liver = roi_mean(series, t["rois"]["liver"])
        aorta, n_aorta = roi_mean(series, t["rois"]["aorta"])
        assert n_liver >= 200 and n_aorta >= 50
        liver_tol, aorta_tol = tol(t["noise_sd"], n_liver), tol(t["noise_sd"], n_aorta, texture=1.0)
        assert liver_tol < 10 and aorta_tol < 14  # the ROIs are big enough to say something
        # the drawn per-case values stay within +-15 % of the tissue table, the pixels carry them
        assert _within_table(t["hu"]["liver"], "liver", p) and _within_table(t["hu"]["aorta"], "aorta", p)
        assert abs(liver - t["hu"]["liver"]) <= liver_tol, (p, liver, t["hu"]["liver"], liver_tol)
        assert abs(aorta - t["hu"]["aorta"]) <= aorta_tol, (p, aorta, t["hu"]["aorta"], aorta_tol)
        assert _within_table(liver, "liver", p, liver_tol) and _within_table(aorta, "aorta", p, aorta_tol)
    # contrast arrives: the aorta peaks in the arterial phase, the liver in the portal phase
    hu = {p: truth["phases"][p]["hu"] for p in PHASES}
    assert max(PHASES, key=lambda p: hu[p]["aorta"]) == "A"
    assert max(PHASES, key=lambda p: hu[p]["liver"]) == "V"


def _lesion_core(truth, phase: str, member: str, seed: int, index: int):
    """Lesion voxels (eroded away from its edge) of a phase, from the renderer's occupancy."""
    exam = Exam(seed, index, member=member, matrix=128)
    _, _, occ = exam.render_phase(phase, noise=False)
    core = ndimage.binary_erosion(occ >= 0.999, structure=np.ones((1, 3, 3), bool))
    pos = truth["phases"][phase]["positions"]
    return core, pos


@pytest.mark.parametrize("which, member, seed, index", [("hb_exam", "HB", 11, 0), ("hh_exam", "HH", 12, 1)])
def test_lesion_hu_in_the_dicom_matches_the_truth(which, member, seed, index, request, dicom_tools):
    read_series = dicom_tools.read_series
    folder, truth = request.getfixturevalue(which)
    means = {}
    for p in PHASES:
        t = truth["phases"][p]
        series = read_series(folder / t["folder"])
        core, pos = _lesion_core(truth, p, member, seed, index)
        vol = np.stack([series[round(z, 2)] for z in pos])
        assert core.sum() >= 30
        means[p] = float(vol[core].mean())
        clean = Exam(seed, index, member=member, matrix=128).render_phase(p, noise=False)[0]
        assert abs(means[p] - float(clean[core].mean())) <= 3.0, p  # zero-mean noise, exact encoding
    liver = {p: truth["phases"][p]["hu"]["liver"] for p in PHASES}
    if member == "HB":
        assert means["P"] < liver["P"] - 5  # hypodense before contrast
        assert means["A"] > means["P"] + 20  # enhances in the arterial phase
        assert means["V"] < liver["V"] - 10 and means["D"] < liver["D"] - 5  # washes out
    else:
        assert abs(means["P"] - 40.0) <= 40.0 * VARIATION + 6.0  # HH: ~40 HU before contrast
        assert means["D"] > means["P"] + 25  # fills in


def test_headers_say_phase_contrast_time_geometry_and_patient(hb_exam):
    folder, truth = hb_exam
    keywords = {"P": r"pre|plain|non.?contrast|\bnc\b", "A": r"arterial|\bart\b|\bap\b",
                "V": r"portal|venous|\bpv\b", "D": r"delayed|equilibrium|late"}
    times, study_uids, frame_uids, sops = {}, set(), set(), set()
    shuffled = []
    for p in PHASES:
        t = truth["phases"][p]
        files = sorted((folder / t["folder"]).glob("*.dcm"))
        assert len(files) == len(t["positions"])
        dss = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
        z = sorted(float(ds.ImagePositionPatient[2]) for ds in dss)
        assert np.allclose(z, t["positions"], atol=1e-3)
        for ds in dss:
            assert ds.SOPClassUID == pydicom.uid.CTImageStorage
            assert ds.SeriesInstanceUID == t["series_uid"] and ds.SeriesDescription == t["series_description"]
            assert re.search(keywords[p], ds.SeriesDescription, re.I), ds.SeriesDescription
            assert (float(ds.WindowCenter), float(ds.WindowWidth)) == WINDOWS[p]
            assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1 and ds.PixelRepresentation == 1
            assert [float(v) for v in ds.PixelSpacing] == truth["pixel_spacing"]
            assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == truth["slice_thickness"]
            assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
            assert ds.PatientID == truth["patient_id"] and ds.PatientSex == truth["sex"]
            assert ("ContrastBolusAgent" in ds) == (p != "P") and ("ContrastBolusRoute" in ds) == (p != "P")
            study_uids.add(ds.StudyInstanceUID)
            frame_uids.add(ds.FrameOfReferenceUID)
            sops.add(ds.SOPInstanceUID)
        age = dss[0].PatientAge
        unit = {"D": 1 / 365.25, "M": 1 / 12, "Y": 1.0}[age[-1]]
        assert abs(int(age[:3]) * unit - truth["age_years"]) < (1.0 if age[-1] == "Y" else 0.1)
        times[p] = float(dss[0].SeriesTime)
        by_z = [int(ds.InstanceNumber) for ds in sorted(dss, key=lambda d: float(d.ImagePositionPatient[2]))]
        shuffled.append(by_z not in (sorted(by_z), sorted(by_z, reverse=True)))
    assert len(study_uids) == 1 and len(frame_uids) == 1
    assert len(sops) == sum(len(truth["phases"][p]["positions"]) for p in PHASES)
    assert times["P"] < times["A"] < times["V"] < times["D"]
    assert sum(shuffled) == 1  # one series per patient numbers its instances out of position order


def test_fast_encoder_writes_what_pydicom_writes(tmp_path):
    exam = Exam(3, 0, matrix=48, n_slices=6)
    vol, _, _ = exam.render_phase("V")
    writer = SeriesWriter(exam, "V", exam.study)
    path = writer.write(tmp_path, vol, [2])[0]
    buf = io.BytesIO()
    writer.pydicom_dataset(vol, 2).save_as(buf, enforce_file_format=True)
    assert path.read_bytes() == buf.getvalue()


@pytest.mark.external
def test_every_written_file_passes_dciodvfy(hb_exam, tmp_path):
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy not installed (Debian package dicom3tools)")
    from liverview.phantom import generate_exam

    picked = generate_exam(tmp_path, seed=4, patient_index=3, member="FNH", matrix=64, slices_only="dicom")
    files = sorted(hb_exam[0].rglob("*.dcm")) + sorted((tmp_path / picked["patient_id"]).rglob("*.dcm"))
    assert len(files) > 100
    errors = []
    for f in files:
        res = subprocess.run([exe, str(f)], capture_output=True, text=True, timeout=60)
        errors += [f"{f.name}: {line}" for line in (res.stdout + res.stderr).splitlines() if "Error" in line]
    assert not errors, "\n".join(errors[:20])
