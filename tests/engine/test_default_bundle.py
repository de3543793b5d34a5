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


def test_default_bundle_verifies_and_states_its_provenance():
    bundle = load_bundle(BUNDLE)  # every checksum verified
    m = bundle.manifest
    assert "phantom" in m["research_notice"] and "not clinical evidence" in m["research_notice"]
    assert m["metrics"]["heldout"]["detection_iou040"]["map"] > 0
    heldout = m["metrics"]["cohort"]
    assert int(heldout.split(": ")[1].split(" patients")[0]) >= 200, heldout
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
    ious = []
    for c in f.composites:
        assert c.roi_source == "detected"
        x0, y0, x1, y1 = c.roi_phases["V"].box
        tx0, ty0, tx1, ty1 = truth["phases"]["V"]["slice_boxes"][f"{c.positions['V']:.2f}"]
        inter = max(0.0, min(x1, tx1) - max(x0, tx0)) * max(0.0, min(y1, ty1) - max(y0, ty0))
        ious.append(inter / ((x1 - x0) * (y1 - y0) + (tx1 - tx0) * (ty1 - ty0) - inter))
    assert max(ious) >= 0.4, f"detected boxes miss the truth lesion: IoU {ious}"
