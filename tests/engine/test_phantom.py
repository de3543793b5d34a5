"""The engine on phantom exams (random weights): picks from truth, boxes per phase, CAMs registered across phases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from liverview.cli import main
from liverview.study.case import Box, Case, Study
from liverview.study.volume import Volume


def _phantom_case(seed: int, matrix: int = 64, upsample: dict[str, float] | None = None):
    """A phantom exam as a Case with the truth picks; phases in `upsample` are resampled onto a finer
    grid over the same field of view (pixel edges aligned), so their pixels differ from the composite's."""
    from liverview.phantom import render_exam

    volumes, truth = render_exam(seed, matrix=matrix)
    dy, dx = truth["pixel_spacing"]
    study = Study(study_uid=f"phantom-{seed}", patient_id=truth["patient_id"])
    for p, px in volumes.items():
        f = (upsample or {}).get(p, 1.0)
        if f != 1.0:
            n, h, w = px.shape
            px = F.interpolate(torch.from_numpy(px)[:, None], size=(round(h * f), round(w * f)), mode="bilinear",
                               align_corners=False)[:, 0].numpy()
        affine = np.diag([dx / f, dy / f, truth["slice_thickness"], 1.0])
        # pixel centre 0 of the finer grid sits half a fine pixel inside the shared outer edge
        affine[0, 3], affine[1, 3] = (dx / f - dx) / 2, (dy / f - dy) / 2
        affine[2, 3] = truth["phases"][p]["positions"][0]
        study.volumes[p] = Volume(px, affine)
        assert np.allclose(study.volumes[p].positions, truth["phases"][p]["positions"], atol=1e-3)
    return Case(study), truth


def _mass_centre(m: np.ndarray) -> tuple[float, float] | None:
    """(col, row) of a map's mass centre in pixel-centre coordinates; None for an all-zero map."""
    total = float(m.sum())
    if total <= 0:
        return None
    yy, xx = np.mgrid[0 : m.shape[0], 0 : m.shape[1]]
    return float((xx * m).sum() / total), float((yy * m).sum() / total)


def test_cam_is_registered_to_the_same_patient_place_in_every_phase(engine):
    """Each phase's CAM is the one ROI CAM placed back through the ROI square, the composite grid
    and that phase's own pixel grid. Phase A is on a 1.5x finer grid, so its map is resampled.

    Its mass centre, in patient mm, must be where the ROI CAM's mass centre maps through the
    square, and the same in every phase, to a quarter of a composite pixel: a map placed a pixel
    off (2.8 mm here) fails. This is registration, not localisation: random weights put the CAM
    anywhere inside the ROI square."""
    up = {"A": 1.5}
    case, truth = _phantom_case(5, upsample=up)
    for p in case.study.phases:
        t, f = truth["phases"][p], up.get(p, 1.0)
        case.set_picks(p, t["picks"])
        for z in t["picks"]:
            x0, y0, x1, y1 = t["slice_boxes"][f"{z:.2f}"]
            case.add_box(Box(p, z, x0 * f, y0 * f, x1 * f, y1 * f, origin="user"))
    findings = engine.analyze(case)
    dx = truth["pixel_spacing"][1]
    tol = 0.25 * dx
    checked = 0
    for c in findings.composites:
        assert c.roi_source == "user" and c.phases_used == ("P", "A", "V", "D")
        assert c.scale["A"] == pytest.approx((1 / 1.5, 1 / 1.5))
        corners = {}
        for p in c.phases_used:
            f = up.get(p, 1.0)
            # the ROI (union of this composite's boxes) covers this phase's truth box on its own grid
            tx0, ty0, tx1, ty1 = (v * f for v in truth["phases"][p]["slice_boxes"][f"{c.positions[p]:.2f}"])
            rx0, ry0, rx1, ry1 = c.roi_phases[p].box
            assert rx0 <= tx0 + 1e-6 and ry0 <= ty0 + 1e-6 and rx1 >= tx1 - 1e-6 and ry1 >= ty1 - 1e-6
            corners[p] = np.asarray(c.roi_phases[p].patient)[:, :2]
        for p in c.phases_used:  # the ROI box itself lies at the same patient place in every phase
            np.testing.assert_allclose(corners[p], corners["P"], atol=1e-6)
        for stage, e in c.explanations.items():
            roi_centre = _mass_centre(e.roi_cam)
            if roi_centre is None:
                continue  # an all-zero CAM (possible with random weights) has no place to check
            gx, gy = e.square.to_composite(roi_centre[0] + 0.5, roi_centre[1] + 0.5)  # composite pixel edges
            places = {}
            for p in c.phases_used:
                vol = case.study.volumes[p]
                k = vol.index_at(c.positions[p])
                cam = e.maps[p]
                assert cam.shape == vol.pixels.shape[1:]
                sx, sy = c.scale[p]
                expected = vol.to_patient(gx / sx - 0.5, gy / sy - 0.5, k)[:2]
                col, row = _mass_centre(cam)
                places[p] = vol.to_patient(col, row, k)[:2]
                assert np.abs(places[p] - expected).max() <= tol, (c.index, stage, p, places[p], expected)
            for p in c.phases_used:
                assert np.abs(places[p] - places["P"]).max() <= tol, (c.index, stage, p, places)
            checked += stage == "stage1"
    assert checked == len(findings.composites) == 3  # every stage-1 map was there to check


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
