"""Engine.analyze on synthetic cases with a random bundle: structure, registration, sums, cancel, checks.

Random weights: nothing here says anything about accuracy, only about the machinery.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from liverview.engine.analyze import AnalysisCancelled, Engine
from liverview.engine.bundle import BundleError
from liverview.engine.compat import AnalysisError, IntensityError, MissingPhasesError, PhaseMatchError
from liverview.engine.findings import cam_for_phase
from liverview.study.case import Box


def test_probabilities_sum_to_one_per_composite_and_exam(engine, case):
    f = engine.analyze(case)
    d = json.loads(json.dumps(f.to_dict()))  # JSON-able
    assert len(d["composites"]) == 3
    for c in d["composites"]:
        assert sum(c["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert c["stage1"]["p_benign"] + c["stage1"]["p_malignant"] == pytest.approx(1.0, abs=1e-5)
        for group in c["stage2"].values():
            assert sum(group.values()) == pytest.approx(1.0, abs=1e-5)
        pm = c["stage1"]["p_malignant"]
        assert c["probabilities"]["HB"] == pytest.approx(pm * c["stage2"]["malignant"]["HB"], abs=1e-5)
        assert c["probabilities"]["HH"] == pytest.approx((1 - pm) * c["stage2"]["benign"]["HH"], abs=1e-5)
        assert c["final_class"] == max(c["probabilities"], key=c["probabilities"].get)
    exam = d["exam"]
    assert sum(exam["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    mean_hb = np.mean([c["probabilities"]["HB"] for c in d["composites"]])
    assert exam["probabilities"]["HB"] == pytest.approx(mean_hb, abs=1e-5)
    assert exam["final_class"] == max(exam["probabilities"], key=exam["probabilities"].get)
    assert exam["stage1_call"] == ("malignant" if exam["p_malignant"] >= exam["threshold"] else "benign")


def test_findings_name_the_bundle_and_its_manifest_hash(engine, case, random_bundle):
    d = engine.analyze(case).to_dict()
    sha = hashlib.sha256((random_bundle / "manifest.json").read_bytes()).hexdigest()
    assert d["bundle"]["name"] == "random-untrained"
    assert d["bundle"]["manifest_sha256"] == sha
    assert d["bundle"]["version"] == engine.bundle.version
    assert any("Research use only" in n for n in d["notes"])


def test_a_detected_box_per_composite_in_every_phase(engine, case):
    f = engine.analyze(case)
    for c in f.composites:
        assert c.detections, "the low-threshold random bundle returns boxes"
        assert c.roi_source == "detected"
        top = c.detections[0]
        assert set(top.phases) == {"P", "A", "V", "D"}
        for p, pb in top.phases.items():
            vol = case.study.volumes[p]
            assert pb.slice_index == vol.index_at(c.positions[p])
            # pixel edges: the box corner (x0, y0) lies half a pixel before pixel centre (x0, y0)
            assert np.allclose(pb.patient[0], vol.to_patient(pb.box[0] - 0.5, pb.box[1] - 0.5, pb.slice_index))


def test_user_box_drives_the_roi_and_cam_is_registered_per_phase(engine, make_case):
    # phase A is stored at twice the matrix: its boxes and CAMs live on its own pixel grid
    case = make_case(user_box=True, matrices={"A": (128, 160)})
    f = engine.analyze(case)
    d = f.to_dict()
    for c in f.composites:
        assert c.roi_source == "user"
        assert c.roi_box == pytest.approx((34, 20, 54, 40))
        assert c.roi_phases["A"].box == pytest.approx((68, 40, 108, 80))
        for stage, exp in c.explanations.items():
            for p in c.phases_used:
                cam = exp.maps[p]
                shape = case.study.volumes[p].pixels.shape[1:]
                assert cam.shape == shape
                # nothing outside the ROI square (box + margin, squared) on that phase's grid
                sx, sy = c.scale[p]
                sq = exp.square
                rows = np.nonzero(cam.max(axis=1) > 1e-6)[0]
                cols = np.nonzero(cam.max(axis=0) > 1e-6)[0]
                if rows.size:
                    assert rows.min() >= np.floor(sq.y0 / sy) - 1 and rows.max() <= np.ceil((sq.y0 + sq.side) / sy)
                    assert cols.min() >= np.floor(sq.x0 / sx) - 1 and cols.max() <= np.ceil((sq.x0 + sq.side) / sx)
                rebuilt = cam_for_phase(d, c.index, stage, p, shape)
                assert np.abs(rebuilt - cam).max() < 0.02
            assert sum(exp.attribution.values()) == pytest.approx(1.0, abs=1e-9)
    # the A map is the P map at twice the resolution
    exp = f.composites[0].explanations["stage1"]
    a_down = exp.maps["A"].reshape(64, 2, 80, 2).mean(axis=(1, 3))
    assert np.abs(a_down - exp.maps["P"]).max() < 0.05


def test_missing_phase_is_a_zero_channel_with_no_attribution(engine, make_case):
    case = make_case(phases=("P", "A", "V"))
    with pytest.raises(MissingPhasesError, match=r"missing phase\(s\) D \(delayed\)"):
        engine.analyze(case)
    f = engine.analyze(case, allow_missing=True)
    d = f.to_dict()
    assert d["phases_used"] == ["P", "A", "V"] and d["phases_missing"] == ["D"]
    assert any("phase D missing" in n for n in d["notes"])
    for c in f.composites:
        assert set(c.detections[0].phases) == {"P", "A", "V"}
        for exp in c.explanations.values():
            assert exp.attribution["D"] == 0.0
            assert sum(exp.attribution.values()) == pytest.approx(1.0)


def test_cancel_stops_and_leaves_the_case_alone(engine, case):
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) >= 3

    before = [b.id for b in case.boxes]
    with pytest.raises(AnalysisCancelled):
        engine.analyze(case, cancel=cancel, apply=True)
    assert len(calls) == 3
    assert case.findings is None and [b.id for b in case.boxes] == before


def test_progress_reports_rising_fractions(engine, case):
    seen = []
    engine.analyze(case, progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0


def test_apply_adds_unaccepted_ai_boxes_and_keeps_accepted_ones(engine, case):
    pos = case.picks["V"][0]
    accepted = case.add_box(Box("V", pos, 1, 1, 9, 9, origin="ai", score=0.9, accepted=True))
    f = engine.analyze(case, apply=True)
    assert case.findings["bundle"]["manifest_sha256"] == engine.bundle.manifest_sha256
    ai = [b for b in case.boxes if b.origin == "ai"]
    assert accepted in ai
    assert not [b for b in ai if b.phase == "V" and b.position == pos and b is not accepted]
    new = [b for b in ai if b is not accepted]
    assert new and all(not b.accepted and b.score is not None and b.patient for b in new)
    per_slice = {(b.phase, b.position) for b in new}
    assert len(per_slice) == 4 * 3 - 1  # every picked slice but the one with the accepted box
    # a reader-accepted AI box counts as the reader's box: composite 0 (that slice) uses it
    assert f.composites[0].roi_source == "user" and f.composites[0].roi_box == pytest.approx((1, 1, 9, 9))
    assert [c.roi_source for c in f.composites[1:]] == ["detected", "detected"]


def test_unmatched_phases_and_windowed_exports_are_refused(engine, make_case):
    case = make_case()
    case.study.volumes["D"].affine[2, 3] += 500.0
    with pytest.raises(PhaseMatchError, match="phase D"):
        engine.analyze(case)

    case = make_case()
    for v in case.study.volumes.values():
        v.pixels = np.clip((v.pixels + 160) / 400 * 255, 0, 255).astype(np.float32)  # exported at W400/L40: fat stays body
        v.intensity = "windowed"
    with pytest.raises(IntensityError, match="--assume-windows"):
        engine.analyze(case)
    f = engine.analyze(case, assume_windows=True)
    assert any("taken as level" in n for n in f.notes)


def test_no_picks_is_an_analysis_error(engine, make_case):
    case = make_case()
    for p in "PAVD":
        case.set_picks(p, [])
    with pytest.raises(AnalysisError, match="no slices picked"):
        engine.analyze(case)


def test_missing_default_bundle_names_the_path(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVERVIEW_BUNDLE", str(tmp_path / "absent"))
    with pytest.raises(BundleError, match="absent"):
        Engine()


def test_autopick_three_positions_per_phase_inside_the_volume(engine, make_case):
    case = make_case()
    study = case.study
    picks = engine.auto_pick(study)
    assert picks.reference == "V"
    for p, vol in study.volumes.items():
        positions = picks.picks[p]
        assert len(positions) == 3 and positions == sorted(positions) and len(set(positions)) == 3
        assert all(float(vol.positions.min()) <= z <= float(vol.positions.max()) for z in positions)
        assert all(np.isclose(vol.positions, z).any() for z in positions)
    assert picks.detections and picks.lesion_slices
    lo, hi = picks.extent
    assert all(lo - 1e-6 <= z <= hi + 1e-6 for z in picks.picks["V"]) or hi - lo < 3 * study.volumes["V"].spacing[0]
    picks.apply(case)
    assert engine.analyze(case).composites


@pytest.mark.parametrize("backbone", ["densenet121", "vit"])
def test_other_backbones_analyze_end_to_end(tmp_path, backbone, make_case):
    from liverview.engine.bundle import make_random_bundle

    make_random_bundle(tmp_path / backbone, backbone=backbone, input_size=64, det_input_size=64, seed=1)
    engine = Engine(tmp_path / backbone)
    f = engine.analyze(make_case(user_box=True))
    for c in f.composites:
        assert sum(c.probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        for exp in c.explanations.values():
            assert exp.maps["V"].shape == (64, 80)
            assert exp.maps["V"].max() <= 1.0 and exp.roi_cam.shape == (64, 64)
            assert sum(exp.attribution.values()) == pytest.approx(1.0)
    assert f.to_dict()["bundle"]["manifest_sha256"] == engine.bundle.manifest_sha256


def test_all_mode_gives_one_set_of_ai_boxes_per_slice(engine, case):
    f = engine.analyze(case, mode="all", apply=True)
    assert len(f.composites) == 81
    assert sum(f.exam.probabilities.values()) == pytest.approx(1.0)
    ai = [b for b in case.boxes if b.origin == "ai"]
    per_slice = {}
    for b in ai:
        per_slice.setdefault((b.phase, b.position), []).append(b)
    assert len(per_slice) == 12
    n_top = {len(v) for v in per_slice.values()}
    assert max(n_top) <= 10  # one composite's detections (max_det), not 27 composites' worth
