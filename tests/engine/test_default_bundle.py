"""The committed default bundle: it verifies, says what it was trained on, and finds the lesion on a phantom exam."""

from __future__ import annotations

import numpy as np
import pytest

from liverview.engine.analyze import Engine, default_bundle_dir
from liverview.engine.bundle import load_bundle
from liverview.study.case import Case, Study
from liverview.study.volume import Volume

BUNDLE = default_bundle_dir()
pytestmark = pytest.mark.skipif(not (BUNDLE / "manifest.json").exists(), reason="no default bundle committed")


# The bundle's held-out figures are meant to rest on at least this many exams (the recipe renders
# 210 so that 200 remain after exams the protocol cannot use are left out).
MIN_HELDOUT_EXAMS = 200
# Every composite's detected box must overlap the truth box this well on every phase. The bundle's
# detection metric counts a hit at IoU 0.40; 0.5 (the usual VOC bar) is stricter and still leaves
# room: this exam's boxes score 0.72 to 0.92 with the 1.2.0 weights.
MIN_IOU = 0.5


def test_default_bundle_verifies_and_states_its_provenance():
    bundle = load_bundle(BUNDLE)  # every checksum verified
    m = bundle.manifest
    assert "phantom" in m["research_notice"] and "not clinical evidence" in m["research_notice"]
    heldout = m["metrics"]["heldout"]
    assert heldout["detection_iou040"]["map"] > 0
    rendered = m["training_data"]["test_cohorts"]["heldout"]
    assert rendered["patients"] >= sum(rendered["counts"].values()) >= MIN_HELDOUT_EXAMS
    for key in ("stage1", "benign", "malignant"):
        assert heldout[key]["exams"] <= rendered["patients"], key
    # stage 1 scores every exam, benign and malignant their own group's
    assert heldout["stage1"]["exams"] >= MIN_HELDOUT_EXAMS
    assert heldout["benign"]["exams"] + heldout["malignant"]["exams"] == heldout["stage1"]["exams"]
    assert (BUNDLE / "README.md").read_text(encoding="utf-8").startswith(f"# {m['name']} {m['version']}")


def test_default_bundle_finds_the_phantom_lesion_without_a_drawn_box():
    from liverview.phantom import render_exam

    volumes, truth = render_exam(11, matrix=256)
    dy, dx = truth["pixel_spacing"]
    study = Study(study_uid="phantom-11", patient_id=truth["patient_id"])
    for p, px in volumes.items():
        affine = np.diag([dx, dy, truth["slice_thickness"], 1.0])
        affine[2, 3] = truth["phases"][p]["positions"][0]
        study.volumes[p] = Volume(px, affine)
    case = Case(study)
    case.set_all_picks({p: truth["phases"][p]["picks"] for p in study.phases})
    f = Engine(BUNDLE).analyze(case)
    assert f.bundle["name"] == load_bundle(BUNDLE).manifest["name"]
    assert sum(f.exam.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert len(f.composites) == 3
    ious = {}
    for c in f.composites:
        assert c.roi_source == "detected"
        for p in c.phases_used:  # breathing moves the lesion between phases: each phase against its own truth
            x0, y0, x1, y1 = c.roi_phases[p].box
            tx0, ty0, tx1, ty1 = truth["phases"][p]["slice_boxes"][f"{c.positions[p]:.2f}"]
            inter = max(0.0, min(x1, tx1) - max(x0, tx0)) * max(0.0, min(y1, ty1) - max(y0, ty0))
            ious[(c.index, p)] = inter / ((x1 - x0) * (y1 - y0) + (tx1 - tx0) * (ty1 - ty0) - inter)
    assert len(ious) == 12
    missed = {k: round(v, 3) for k, v in ious.items() if v < MIN_IOU}
    assert not missed, f"detected boxes miss the truth lesion (composite, phase): IoU {missed}"
