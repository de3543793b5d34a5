"""The cohort cache: round trip and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from training.cohort import CohortError, load_cohort, save_cohort


def test_cohort_round_trips_through_npz_and_json(tmp_path, tiny_cohort):
    tiny_cohort.meta = {"source": "test"}
    path = save_cohort(tiny_cohort, tmp_path / "c.npz")
    back = load_cohort(path)
    assert back.patient_ids == tiny_cohort.patient_ids
    assert back.classes == tiny_cohort.classes
    np.testing.assert_array_equal(back.slices, tiny_cohort.slices)
    np.testing.assert_array_equal(back.boxes, tiny_cohort.boxes)
    assert back.meta == {"source": "test"}
    sub = back.subset(["T004", "T001"])
    assert sub.classes == ["HH", "OBHT"]
    np.testing.assert_array_equal(sub.slices[1], tiny_cohort.slices[1])


def test_bad_cohort_files_give_one_line_errors_naming_the_file(tmp_path, tiny_cohort):
    with pytest.raises(CohortError, match="missing.json"):
        load_cohort(tmp_path / "missing.npz")
    path = save_cohort(tiny_cohort, tmp_path / "c.npz")
    path.write_bytes(b"not an npz")
    with pytest.raises(CohortError, match="c.npz"):
        load_cohort(path)


def test_unknown_class_and_duplicate_patient_are_refused(cohort_factory):
    with pytest.raises(CohortError, match="patient T000.*'XYZ'"):
        cohort_factory(["XYZ"])
    c = cohort_factory(["HH", "HB"])
    with pytest.raises(CohortError, match="T000.*twice"):
        type(c)(["T000", "T000"], c.classes, c.members, c.slices, c.boxes, c.present)


def test_a_cached_phantom_cohort_is_reused_only_when_the_same_phantom_code_rendered_it(tmp_path):
    from training.cohort import load_cohort, save_cohort
    from training.recipe import CohortSpec, cohort_for
    from training.sources import renderer_fingerprint

    spec = CohortSpec("c", 2, 77, {"HH": 1, "HB": 1})
    logged: list[str] = []
    first = cohort_for(spec, 64, tmp_path, 1, logged.append, {"n_slices": 8})
    assert first.meta["renderer"] == renderer_fingerprint()
    again = cohort_for(spec, 64, tmp_path, 1, logged.append, {"n_slices": 8})
    assert "cached" in logged[-1] and np.array_equal(again.slices, first.slices)
    stale = load_cohort(tmp_path / "cohorts" / "c.npz")
    stale.meta["renderer"] = "0" * 16  # as if an older phantom had rendered it
    stale.slices[:] = 0
    save_cohort(stale, tmp_path / "cohorts" / "c.npz")
    fresh = cohort_for(spec, 64, tmp_path, 1, logged.append, {"n_slices": 8})
    assert "rendering again" in " ".join(logged) and np.array_equal(fresh.slices, first.slices)


def test_concat_keeps_every_patient_in_order_and_refuses_a_patient_twice_or_two_grids(cohort_factory):
    from training.cohort import concat

    a = cohort_factory(["HH", "HB"], prefix="A")
    b = cohort_factory(["OMHT"], seed=1, prefix="B")
    both = concat([a, b])
    assert both.patient_ids == ["A000", "A001", "B000"] and both.classes == ["HH", "HB", "OMHT"]
    assert np.array_equal(both.slices[2], b.slices[0]) and np.array_equal(both.boxes[:2], a.boxes)
    with pytest.raises(CohortError, match="A000.*twice"):
        concat([a, a])
    with pytest.raises(CohortError, match="different slice grids"):
        concat([a, cohort_factory(["HB"], matrix=16, prefix="C")])


def test_a_cohort_spec_with_a_member_renders_only_that_lesion_type(tmp_path):
    from training.recipe import CohortSpec, cohort_for

    spec = CohortSpec("hcc", 2, 91, {"OMHT": 1}, member="HCC")
    c = cohort_for(spec, 64, tmp_path, 1, lambda s: None, {"n_slices": 8})
    assert c.members == ["HCC", "HCC"] and c.classes == ["OMHT", "OMHT"]
    assert c.meta["render_args"] == {"n_slices": 8, "member": "HCC"}


def test_a_recipe_whose_supplement_has_no_classifier_or_reuses_a_cohort_name_is_refused_before_rendering(tmp_path):
    import dataclasses

    from training.recipe import CohortSpec, build, quick_recipe

    r = quick_recipe()
    r.supplements = {"onestep": CohortSpec("extra", 2, 1, {"OMHT": 1})}
    with pytest.raises(ValueError, match="supplement for 'onestep'.*not one of the classifiers"):
        build(r, tmp_path / "out", tmp_path / "work", device="cpu", log=lambda s: None)
    r.supplements = {"malignant": dataclasses.replace(r.heldout, patients=3)}
    with pytest.raises(ValueError, match="cohort name 'heldout' is used twice"):
        build(r, tmp_path / "out", tmp_path / "work", device="cpu", log=lambda s: None)
    r.supplements, r.classifier_fit = {}, "best"
    with pytest.raises(ValueError, match="classifier_fit 'best': expected 'all' or 'train'"):
        build(r, tmp_path / "out", tmp_path / "work", device="cpu", log=lambda s: None)
    assert not (tmp_path / "work").exists()


def test_member_cohorts_must_have_their_members_class_as_the_whole_mix_and_one_supplement_may_serve_two_models():
    import dataclasses

    from training.recipe import CohortSpec, _check_cohort_specs, quick_recipe

    r = quick_recipe()
    sup = CohortSpec("extra", 2, 1, {"OMHT": 1})
    r.supplements = {"benign": sup, "malignant": dataclasses.replace(sup)}
    _check_cohort_specs(r)
    r.supplements = {"malignant": CohortSpec("extra", 2, 1, {"OMHT": 1}, member="HB")}
    with pytest.raises(ValueError, match="cohort 'extra': every patient is HB, so its mix must be {'HB': 1}"):
        _check_cohort_specs(r)
    r.supplements = {"malignant": CohortSpec("extra", 2, 1, {"OMHT": 1}, member="XYZ")}
    with pytest.raises(ValueError, match="member 'XYZ'"):
        _check_cohort_specs(r)


def test_cached_detector_run_is_reused_only_on_the_patients_it_was_trained_on(tmp_path):
    import json

    import torch

    from training.checkpoint import save_weights
    from training.detector import DetectorConfig
    from training.recipe import _cached_detector

    cfg = DetectorConfig(imgsz=64, epochs=1)
    folder = tmp_path / "detector"
    assert _cached_detector(folder, cfg, {"train": "a"}, lambda s: None) == (None, None)
    assert json.loads((folder / "training_data.json").read_text()) == {"train": "a"}
    save_weights(folder / "detector.safetensors", {"w": torch.ones(1)})
    (folder / "detector_train.json").write_text(json.dumps({"config": json.loads(json.dumps(dataclasses_asdict(cfg)))}))
    state, _ = _cached_detector(folder, cfg, {"train": "a"}, lambda s: None)
    assert state is not None
    logged: list[str] = []
    assert _cached_detector(folder, cfg, {"train": "b"}, logged.append) == (None, None)
    assert "other training data" in logged[0]
    assert not (folder / "detector.safetensors").exists(), "old weights must not survive beside the new marker"


def dataclasses_asdict(obj):
    import dataclasses

    return dataclasses.asdict(obj)
