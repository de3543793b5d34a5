"""Is this a liver CT: synthetic abdomen, chest, heart, head and pelvis slices, and a phantom exam."""

from __future__ import annotations

import numpy as np
import pytest

from liverview.engine.compat import check_case
from liverview.engine.errors import LiverDoubtful, NotLiverError
from liverview.engine.liver_check import DOUBTFUL, LIVER, NO_LIVER, liver_report, read_slice
from liverview.io.kinetics import analyse_slice
from liverview.study.case import Case, Study
from liverview.study.volume import Volume

N = 192
MM = 1.5  # pixel size: a 288 mm field of view
LIVER_HU = {"P": 55.0, "A": 75.0, "V": 110.0, "D": 95.0}


def affine(mm: float = MM) -> np.ndarray:
    a = np.eye(4)
    a[0, 0] = a[1, 1] = mm  # column -> patient left, row -> patient back: image left is the patient's right
    a[2, 2] = 2.5
    a[:3, 3] = (-N * mm / 2, -N * mm / 2, 0.0)
    return a


def _ellipse(cy, cx, ry, rx):
    yy, xx = np.mgrid[0:N, 0:N]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def body_slice(kind: str, phase: str = "V", seed: int = 0) -> np.ndarray:
    """One synthetic axial slice in HU: 'abdomen', 'chest', 'heart', 'head', 'pelvis', 'doubtful' (a small liver tip)."""
    rng = np.random.default_rng(seed)
    img = np.full((N, N), -1000.0)
    c = N / 2
    if kind == "head":
        img[_ellipse(c, c, 60, 50)] = 900.0  # skull
        img[_ellipse(c, c, 55, 45)] = 35.0  # brain
    else:
        img[_ellipse(c, c, 60, 85)] = -100.0  # fat
        img[_ellipse(c, c, 55, 80) & ~_ellipse(c, c, 50, 75)] = 50.0  # muscle wall
        img[_ellipse(c + 35, c, 12, 12)] = 700.0  # vertebra
        if kind == "abdomen":
            img[_ellipse(c - 5, c - 38, 38, 32)] = LIVER_HU[phase]  # liver on the patient's right (image left)
            img[_ellipse(c + 10, c + 40, 15, 12)] = LIVER_HU[phase] - 5  # spleen
        if kind == "doubtful":
            img[_ellipse(c - 5, c - 45, 16, 16)] = LIVER_HU[phase]  # the liver's lowest tip
        if kind in ("chest", "heart"):
            img[_ellipse(c - 5, c - 40, 38, 30)] = -850.0  # lungs
            img[_ellipse(c - 5, c + 40, 38, 30)] = -850.0
        if kind == "heart":
            img[_ellipse(c - 10, c + 10, 25, 28)] = 40.0
        if kind == "pelvis":
            img[_ellipse(c + 5, c - 45, 22, 12)] = 800.0  # iliac bones
            img[_ellipse(c + 5, c + 45, 22, 12)] = 800.0
            img[_ellipse(c + 25, c, 14, 30)] = 800.0  # sacrum
            img[_ellipse(c - 15, c, 18, 25)] = 10.0  # bladder
            img[_ellipse(c + 10, c - 30, 14, 10) & (img < 100)] = 45.0  # gluteal muscle
        img[_ellipse(c + 10, c + 8, 6, 6)] = {"P": 45.0, "A": 300.0, "V": 170.0, "D": 115.0}[phase]  # aorta
    return img + rng.normal(0, 12, img.shape)


def case_of(slices: dict[str, np.ndarray]) -> Case:
    """A case with one 3-slice volume per phase (the given slice repeated), each slice picked."""
    vols = {p: Volume(np.stack([s, s, s]).astype(np.float32), affine()) for p, s in slices.items()}
    case = Case(Study(volumes=vols, study_uid="1.2.3"))
    for p, v in vols.items():
        case.set_picks(p, [v.position_of(k) for k in range(3)])
    return case


@pytest.mark.parametrize("phase", ["P", "A", "V", "D"])
def test_a_synthetic_abdomen_shows_a_liver_at_every_phase(phase):
    m = analyse_slice(body_slice("abdomen", phase), affine())
    outcome, reason = read_slice(m, phase)
    assert outcome == LIVER, reason
    assert m.liver_hu == pytest.approx(LIVER_HU[phase], abs=8)


@pytest.mark.parametrize(
    "kind, words", [("chest", "lungs"), ("heart", "lungs"), ("head", "bone"), ("pelvis", "bone")]
)
def test_chest_heart_head_and_pelvis_are_refused_with_the_reason(kind, words):
    case = case_of({p: body_slice(kind, p, seed=i) for i, p in enumerate("PAVD")})
    with pytest.raises(NotLiverError) as err:
        check_case(case, allow_doubtful=True)  # not even a doubtful liver: allowing doubt does not let it through
    assert "not a liver CT" in str(err.value) and words in str(err.value)
    assert err.value.exit_code == 10


def test_a_slice_below_the_liver_is_doubtful_and_passes_once_accepted():
    case = case_of({p: body_slice("doubtful", p) for p in "PAVD"})
    report = liver_report(case)
    assert report.outcome == DOUBTFUL
    assert all("cm2" in line for line in report.lines()[1:])
    with pytest.raises(LiverDoubtful) as err:
        check_case(case)
    assert err.value.exit_code == 11
    warnings = check_case(case, allow_doubtful=True)
    assert any("doubtful" in w for w in warnings)
    assert check_case(case, allow_doubtful=True, pixels=False) == []  # the quick check leaves the pixels to the engine


def test_the_patient_right_comes_from_the_affine_not_the_image_side():
    flipped = affine()
    flipped[0, 0] = -MM  # columns now run to the patient's right
    flipped[0, 3] = N * MM / 2
    img = body_slice("abdomen")[:, ::-1]  # the liver drawn on the image's right: still the patient's right
    outcome, reason = read_slice(analyse_slice(img, flipped), "V")
    assert outcome == LIVER, reason
    mirrored = body_slice("abdomen")[:, ::-1]  # same picture, the standard affine: the liver is on the patient's left
    assert read_slice(analyse_slice(mirrored, affine()), "V")[0] != LIVER


def test_a_phantom_exam_passes_and_its_heart_level_slices_are_refused(tmp_path):
    from liverview.io.loader import load_exam
    from liverview.phantom import generate_exam

    truth = generate_exam(tmp_path, seed=3, matrix=128)
    study = load_exam(tmp_path / truth["patient_id"]).study
    case = Case(study)
    for p, t in truth["phases"].items():
        case.set_picks(p, t["picks"])
    assert check_case(case) == []
    top = Case(study)
    for p, v in study.volumes.items():
        top.set_picks(p, [v.position_of(v.shape[0] - 1 - k) for k in range(3)])  # the slices through the heart
    with pytest.raises(NotLiverError, match="lungs"):
        check_case(top)
    assert liver_report(top).outcome == NO_LIVER
