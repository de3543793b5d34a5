"""The engine on phantom exams (random weights): picks from truth, boxes per phase, CAMs registered to the lesion."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liverview.cli import main
from liverview.study.case import Box, Case, Study
from liverview.study.volume import Volume


def _phantom_case(seed: int, matrix: int = 64):
    from liverview.phantom import render_exam

    volumes, truth = render_exam(seed, matrix=matrix)
    dy, dx = truth["pixel_spacing"]
    study = Study(study_uid=f"phantom-{seed}", patient_id=truth["patient_id"])
    for p, px in volumes.items():
        affine = np.diag([dx, dy, truth["slice_thickness"], 1.0])
        affine[2, 3] = truth["phases"][p]["positions"][0]
        study.volumes[p] = Volume(px, affine)
        assert np.allclose(study.volumes[p].positions, truth["phases"][p]["positions"], atol=1e-3)
    return Case(study), truth


def test_cam_lies_on_the_truth_lesion_box_in_every_phase(engine):
    case, truth = _phantom_case(5)
    for p in case.study.phases:
        t = truth["phases"][p]
        case.set_picks(p, t["picks"])
        for z in t["picks"]:
            x0, y0, x1, y1 = t["slice_boxes"][f"{z:.2f}"]
            case.add_box(Box(p, z, x0, y0, x1, y1, origin="user"))
    f = engine.analyze(case)
    margin = engine.classifiers["stage1"].margin
    peak_inside = 0.0
    for c in f.composites:
        assert c.roi_source == "user"
        for p in c.phases_used:
            # the ROI (union of this composite's lesion boxes) covers this phase's truth box
            tx0, ty0, tx1, ty1 = truth["phases"][p]["slice_boxes"][f"{c.positions[p]:.2f}"]
            rx0, ry0, rx1, ry1 = c.roi_phases[p].box
            assert rx0 <= tx0 and ry0 <= ty0 and rx1 >= tx1 and ry1 >= ty1
            cam = c.explanations["stage1"].maps[p]
            assert cam.shape == case.study.volumes[p].pixels.shape[1:]
            # Grad-CAM mass sits in the lesion's square: box + margin, squared (plus one pixel of interpolation)
            side = max(rx1 - rx0, ry1 - ry0) * (1 + 2 * margin) + 2
            cx, cy = (rx0 + rx1) / 2, (ry0 + ry1) / 2
            yy, xx = np.mgrid[0 : cam.shape[0], 0 : cam.shape[1]] + 0.5
            inside = (np.abs(xx - cx) <= side / 2 + 1) & (np.abs(yy - cy) <= side / 2 + 1)
            assert cam[~inside].max(initial=0.0) < 1e-6
            peak_inside = max(peak_inside, float(cam[inside].max()))
    assert peak_inside > 0.5  # the maps are not simply empty


def test_analyze_command_on_a_phantom_dicom_exam(tmp_path, random_bundle, capsys):
    from liverview.phantom import generate_exam

    truth = generate_exam(tmp_path / "exams", seed=3, matrix=64)
    exam = tmp_path / "exams" / truth["patient_id"]
    out, png = tmp_path / "f.json", tmp_path / "png"
    rc = main(["analyze", str(exam), "--bundle", str(random_bundle), "--picks", str(exam / "truth.json"),
               "--json", str(out), "--png", str(png)])
    assert rc == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    assert d["phases_used"] == ["P", "A", "V", "D"]
    for i, c in enumerate(d["composites"]):
        assert sum(c["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert set(c["detections"][0]["phases"]) == {"P", "A", "V", "D"}
        for p in "PAVD":
            assert c["positions"][p] == pytest.approx(truth["phases"][p]["picks"][i], abs=1e-3)
    assert len(list(png.glob("*.png"))) == 24
    # auto picks on the same exam land inside every phase's volume
    rc = main(["analyze", str(exam), "--bundle", str(random_bundle), "--picks", "auto", "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    for p in "PAVD":
        zs = truth["phases"][p]["positions"]
        assert all(min(zs) - 1e-3 <= c["positions"][p] <= max(zs) + 1e-3 for c in d["composites"])
