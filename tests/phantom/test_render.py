"""The rendered phantom: determinism, a body around the liver, lesion kinetics, truth boxes with breathing."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from liverview.phantom import (
    DENSITY_LEVELS,
    ENHANCEMENT_PATTERNS,
    LOCATIONS,
    MEMBER_CLASS,
    generate_exam,
    render_exam,
)
from liverview.phantom.priors import AGE_PRIORS
from liverview.phantom.render import Exam
from liverview.study.phases import PHASES


def test_same_seed_gives_identical_pixels_and_truth_other_seeds_differ():
    v1, t1 = render_exam(5, 2, matrix=48, n_slices=8)
    v2, t2 = render_exam(5, 2, matrix=48, n_slices=8)
    assert t1 == t2
    for p in PHASES:
        assert np.array_equal(v1[p], v2[p])
    v3, t3 = render_exam(6, 2, matrix=48, n_slices=8)
    assert t3["phases"]["P"]["series_uid"] != t1["phases"]["P"]["series_uid"]
    assert any(v3[p].shape != v1[p].shape or not np.array_equal(v3[p], v1[p]) for p in PHASES)
    v4, _ = render_exam(5, 3, matrix=48, n_slices=8)
    assert any(v4[p].shape != v1[p].shape or not np.array_equal(v4[p], v1[p]) for p in PHASES)


def test_rerun_writes_byte_identical_files(tmp_path):
    a = generate_exam(tmp_path / "a", seed=8, patient_index=1, matrix=48, slices_only="dicom")
    b = generate_exam(tmp_path / "b", seed=8, patient_index=1, matrix=48, slices_only="dicom")
    assert a == b
    fa = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    fb = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert fa == fb and len([f for f in fa if f.suffix == ".dcm"]) == 12
    for f in fa:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_a_body_surrounds_the_liver():
    """Air outside, subcutaneous fat, muscle, bone, bowel gas: not a lesion on a blank field."""
    vols, truth = render_exam(2, 0, matrix=128)
    v = vols["V"]
    mid = v[v.shape[0] // 2]
    assert (mid[:4, :4] <= -900).all()  # air (with scanner noise) in the corner of the field
    body = ndimage.binary_fill_holes(mid > -300)
    frac = lambda lo, hi: float(((mid >= lo) & (mid < hi) & body).sum() / body.sum())  # noqa: E731
    assert frac(-140, -60) > 0.03  # fat
    assert frac(20, 90) > 0.05  # muscle, bowel and other soft tissue
    assert frac(300, 3072) > 0.003  # spine and ribs
    assert ((v < -800) & ndimage.binary_fill_holes(v > -300, structure=np.ones((1, 3, 3)))).any()  # gas in the body
    # the liver is the largest organ on its middle slice and lies on the patient's right (image left)
    roi = truth["phases"]["V"]["rois"]["liver"]
    assert roi["center"][0] < v.shape[2] / 2


def _measure(member: str, seed: int):
    """Noisy lesion and liver means per phase, and the lesion-centre mean, with the pattern."""
    exam = Exam(seed, 0, member=member, matrix=96)
    out = {}
    for p in PHASES:
        vol, t, occ = exam.render_phase(p)
        core = ndimage.binary_erosion(occ >= 0.999, structure=np.ones((1, 3, 3), bool))
        if core.sum() < 10:
            core = occ >= 0.999
        centre = None
        c = t["rois"].get("lesion_core")
        if c:
            k = t["positions"].index(c["position"])
            yy, xx = np.mgrid[: vol.shape[1], : vol.shape[2]]
            m = (yy - c["center"][1]) ** 2 + (xx - c["center"][0]) ** 2 <= max(c["radius_px"], 1.0) ** 2
            centre = float(vol[k][m].mean())
        out[p] = {"lesion": float(vol[core].mean()), "liver": t["hu"]["liver"], "centre": centre}
    return exam.lesion_spec.pattern, out


KINETIC_CASES = [(m, s) for m in ("HH", "IHH", "FNH", "HMH", "HB", "UESL", "HCC") for s in (0, 1)]


@pytest.mark.parametrize("member, seed", KINETIC_CASES)
def test_lesion_kinetics_follow_the_member_pattern(member, seed):
    pattern, m = _measure(member, seed)
    les = {p: m[p]["lesion"] for p in PHASES}
    liv = {p: m[p]["liver"] for p in PHASES}
    if member == "HB":
        assert les["P"] < liv["P"] - 5 and les["A"] > les["P"] + 20
        assert les["V"] < liv["V"] - 10 and les["D"] < liv["D"] - 5  # washout
    elif member == "HCC":
        assert les["A"] > liv["A"] + 20  # arterial hyperenhancement
        assert les["V"] < liv["V"] - 5 and les["D"] < liv["D"] - 5  # washout
    elif member == "FNH":
        assert les["A"] > liv["A"] + 30  # strong arterial enhancement
        assert abs(les["V"] - liv["V"]) < 15 and abs(les["D"] - liv["D"]) < 15  # iso later
    elif member == "HMH":
        assert les["P"] < 40 and all(les[p] < liv[p] - 15 for p in PHASES)  # cyst fluid between septa
        if pattern != "no enhancement":
            assert les["D"] > les["P"] + 5  # septa enhance progressively
    elif member == "UESL":
        assert 12 < les["P"] < 45 and les["D"] > les["P"] + 5
    elif member in ("HH", "IHH"):
        assert les["P"] < liv["P"] - 5  # hypodense before contrast
        if pattern == "obvious enhancement":
            assert les["A"] > liv["A"] + 20
        elif pattern == "delayed centripetal only":
            assert les["A"] < les["P"] + 15 and les["D"] > les["V"] + 5
        elif pattern == "peripheral early without delayed fill":
            assert les["A"] > les["P"] + 20
        elif "centripetal" in pattern:
            centre = {p: m[p]["centre"] for p in PHASES}
            assert les["V"] > les["A"] and les["D"] > les["P"] + 25
            if "non-enhancing core" not in pattern and all(v is not None for v in centre.values()):
                assert centre["D"] > centre["A"] + 15  # the centre fills last
    else:
        raise AssertionError(member)


def test_truth_boxes_hold_the_lesion_in_every_phase_with_breathing():
    seed, member = 3, "FNH"
    with_lesion = Exam(seed, 0, member=member, matrix=96)
    without = Exam(seed, 0, member=member, matrix=96, lesion=False)
    centres, shifts = {}, {}
    for p in PHASES:
        vol, t, occ = with_lesion.render_phase(p)
        bare, _, _ = without.render_phase(p)
        pos = t["positions"]
        inside = np.zeros(vol.shape, bool)
        near = np.zeros(vol.shape, bool)  # the box grown by the partial-volume fringe
        for key, (x0, y0, x1, y1) in t["slice_boxes"].items():
            k = int(np.argmin(np.abs(np.array(pos) - float(key))))
            inside[k, y0:y1, x0:x1] = True
            near[max(k - 1, 0) : k + 2, max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = True
        assert (occ > 0.5)[~inside].sum() == 0
        changed = vol != bare  # the same noise: only the lesion differs
        assert changed.any() and not (changed & ~near).any()
        (c0, r0, k0), (c1, r1, k1) = t["lesion_box_3d"]["index"]
        assert inside.any(axis=(1, 2)).nonzero()[0][[0, -1]].tolist() == [k0, k1 - 1]
        assert len(t["picks"]) == 3 and t["picks"] == sorted(t["picks"])
        assert all(f"{z:.2f}" in t["slice_boxes"] for z in t["picks"])
        pa, pb = np.array(t["lesion_box_3d"]["patient"])
        centres[p] = (pa + pb) / 2
        shifts[p] = np.array(t["shift_mm"])
    assert len({tuple(s) for s in shifts.values()}) > 1  # the phases are not all in the same breath
    g = with_lesion.grid
    for p in PHASES:
        moved = centres[p] - centres["P"]
        expected = shifts[p] - shifts["P"]
        # the box moves with the recorded breathing shift (to within the voxel its edges snap to)
        assert np.all(np.abs(moved[1:] - expected[1:]) <= np.array([g.dy, g.dz]) + 1e-6), (p, moved, expected)


@pytest.mark.parametrize("member, seed", [("HB", 0), ("HB", 3), ("IHH", 2), ("HCC", 1), ("UESL", 4), ("FNH", 5), ("HMH", 6), ("HH", 7)])
def test_report_fields_come_from_the_priors_and_match_the_lesion(member, seed):
    exam = Exam(seed, 0, member=member, matrix=96)
    _, t_p, occ = exam.render_phase("P", noise=False)
    clean, _, _ = exam.render_phase("P", noise=False)
    rep = exam.report()
    assert set(rep) == {"age_years", "sex", "calcification", "bleed", "lung_metastasis", "size_mm", "density",
                        "location", "enhancement_pattern"}
    lo = min(p[1] for p in AGE_PRIORS[member])
    hi = max(p[2] for p in AGE_PRIORS[member])
    assert lo <= rep["age_years"] <= hi and rep["sex"] in ("M", "F")
    assert rep["density"] in DENSITY_LEVELS and rep["location"] in LOCATIONS
    assert rep["enhancement_pattern"] in ENHANCEMENT_PATTERNS
    if MEMBER_CLASS[member] in ("HH", "OBHT"):
        assert rep["lung_metastasis"] is False
    lesion_px = clean[occ >= 0.999]
    if rep["calcification"]:
        assert (lesion_px > 250).any()
    else:
        assert not (lesion_px > 250).any()
    # size: the widest axial section of the lesion in the P phase, in mm
    area = (occ > 0.5).sum(axis=(1, 2))
    k = int(np.argmax(area))
    cols = np.nonzero((occ[k] > 0.5).any(axis=0))[0]
    assert abs(rep["size_mm"][0] - (cols[-1] + 1 - cols[0]) * exam.grid.dx) <= 0.051  # rounded to 0.1 mm


def test_members_get_their_age_ranges():
    for member, (lo, hi) in {"HB": (0.5, 5.0), "UESL": (4.0, 15.0), "HCC": (10.0, 17.0), "IHH": (0.0, 1.0)}.items():
        ages = [Exam(s, 0, member=member, matrix=48, n_slices=4).age for s in range(6)]
        assert all(lo <= a <= hi for a in ages), (member, ages)
