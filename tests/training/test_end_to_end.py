"""A tiny run of the whole recipe: cohorts -> split -> detector + three classifiers -> bundle the engine loads."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from liverview.engine.analyze import Engine
from liverview.engine.bundle import load_bundle
from liverview.study.case import Box
from training.engine_cases import exam_case
from training.recipe import quick_recipe


BUILT_WITH: dict = {}  # the recipe the module's build used


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from training.recipe import build

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("work")
    out = tmp_path_factory.mktemp("bundle") / "default"
    r = quick_recipe()
    r.matrix = 64
    r.render_args = {"n_slices": 8}
    r.n_boot = 50
    r.trainval.patients, r.test17.patients, r.heldout.patients, r.stress.patients, r.untouched.patients = 12, 4, 8, 4, 4
    r.detector = dataclasses.replace(r.detector, imgsz=64, epochs=1, batch=8)
    r.classifiers = {k: dataclasses.replace(c, input_size=32, epochs=1, batch_size=16) for k, c in r.classifiers.items()}
    report = build(r, out, work, device="cpu", log=lambda s: None)
    BUILT_WITH["recipe"] = r
    return out, work, report


GROUP = {"HH": "benign", "OBHT": "benign", "HB": "malignant", "OMHT": "malignant"}


def _with_truth_boxes(case, cohort, i):
    """The exam's annotated boxes as reader boxes, so the engine classifies the crops the evaluation scored."""
    for c, p in enumerate("PAVD"):
        if p not in case.study.volumes:
            continue
        vol = case.study.volumes[p]
        for k in range(len(case.picks[p])):
            b = cohort.boxes[i, c, k]
            if not np.isnan(b).any():
                case.add_box(Box(p, vol.position_of(k), *(float(v) for v in b), origin="user"))
    return case


def _check_exam_decision(findings) -> None:
    """The exam's final class is the argmax of its four probabilities, which are the composites' mean;
    its group and the stage-1 call agree exactly when the stored consistency field says so."""
    exam = findings.exam
    mean = {k: float(np.mean([c.probabilities[k] for c in findings.composites])) for k in GROUP}
    assert exam.probabilities == pytest.approx(mean, abs=1e-9)
    assert sum(exam.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert exam.final_class == max(mean, key=mean.get)
    assert exam.stage1_call == ("malignant" if exam.p_malignant >= exam.threshold else "benign")
    assert exam.p_malignant == pytest.approx(mean["HB"] + mean["OMHT"], abs=1e-6)
    d = findings.to_dict()["exam"]
    assert d["final_class"] == exam.final_class and d["final_group"] == GROUP[exam.final_class]
    assert d["consistent_with_stage1"] is (GROUP[exam.final_class] == exam.stage1_call)


def test_build_writes_a_bundle_that_the_engine_verifies_and_analyses_with(built):
    out, work, report = built
    bundle = load_bundle(out)  # checksums verified
    m = bundle.manifest
    assert set(m["models"]) >= {"detector", "stage1", "benign", "malignant"}
    assert "phantom" in m["research_notice"]
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "trained on synthetic phantom data" in card and "python -m training build-weights" in card
    assert m["weights_dtype"] in ("float16", "float32")
    from training.cohort import load_cohort

    heldout = load_cohort(work / "cohorts" / "heldout.npz")
    engine = Engine(out)
    findings = engine.analyze(exam_case(heldout, 0))  # no boxes: the engine detects them itself
    assert len(findings.composites) == 3 and all(c.roi_source in ("detected", "none") for c in findings.composites)
    assert findings.bundle["name"] == m["name"]
    _check_exam_decision(findings)

    # the held-out stage-1 AUC recomputed outside training/: the engine on every held-out exam with its
    # annotated boxes, P(malignant) averaged over the exam's composites, sklearn's AUC
    scores, labels = [], []
    for i in range(len(heldout)):
        f = engine.analyze(_with_truth_boxes(exam_case(heldout, i), heldout, i))
        assert all(c.roi_source == "user" for c in f.composites)
        _check_exam_decision(f)
        scores.append(f.exam.p_malignant)
        labels.append(GROUP[heldout.classes[i]] == "malignant")
    assert 0 < sum(labels) < len(labels), "the held-out cohort needs both groups for an AUC"
    auc = roc_auc_score(labels, scores)
    reported = report["heldout"]["classifiers"]["stage1"]["truth_boxes"]
    assert reported["exams"] == len(heldout)
    assert reported["auc"]["value"] == pytest.approx(auc, abs=1e-6)
    assert m["metrics"]["heldout"]["stage1"]["auc"]["value"] == pytest.approx(auc, abs=1e-6)


def test_runs_are_resumable_and_reports_are_complete(built):
    out, work, report = built
    ckpt = json.loads((work / "classifier_stage1" / "checkpoint.json").read_text())
    assert ckpt["epoch"] == 0 and ckpt["config"]["task"] == "stage1"
    assert (work / "classifier_stage1" / "checkpoint.safetensors").exists()
    assert (work / "splits.json").exists()
    assert set(report["heldout"]["classifiers"]) == {"stage1", "benign", "malignant"}
    for key in ("stage1", "benign", "malignant"):
        m = report["heldout"]["classifiers"][key]["truth_boxes"]["auc"]
        assert 0.0 <= m["value"] <= 1.0 and len(m["ci_t"]) == 2 and len(m["ci_bootstrap"]) == 2
    assert list(out.glob("heldout_roc_*.png"))


def test_model_card_states_each_target_and_can_be_rewritten_from_the_report(built):
    from training.commands.build_weights import rewrite_card
    from training.recipe import TARGETS, quick_recipe

    out, work, report = built
    card = (out / "README.md").read_text(encoding="utf-8")
    for name in TARGETS:
        assert f"| {name} |" in card, f"the card must say whether {name} meets its target"
    (out / "README.md").write_text("stale", encoding="utf-8")
    assert rewrite_card(BUILT_WITH["recipe"], out, work) == 0
    assert (out / "README.md").read_text(encoding="utf-8") == card
    assert rewrite_card(quick_recipe(), out, work) == 2, "a report from another recipe must be refused"


def test_a_rebuild_takes_over_unchanged_models_byte_for_byte_and_retrains_the_changed_one(built, tmp_path):
    from training.recipe import build

    out, work, report = built
    r = dataclasses.replace(BUILT_WITH["recipe"])
    r.classifiers = dict(r.classifiers)
    was = r.classifiers["malignant"].geometric
    r.classifiers["malignant"] = dataclasses.replace(r.classifiers["malignant"], geometric=not was)
    out2 = tmp_path / "bundle2"
    logged: list[str] = []
    report2 = build(r, out2, work, device="cpu", log=logged.append, reuse=out)
    old, new = load_bundle(out).manifest, load_bundle(out2).manifest
    assert set(report2["reused"]) == {"detector", "stage1", "benign"}
    a, b = load_bundle(out), load_bundle(out2)
    for key in ("detector", "stage1", "benign"):
        if old["weights_dtype"] == new["weights_dtype"]:  # the dtype is chosen per bundle (the float16 check)
            assert (out2 / f"{key}.safetensors").read_bytes() == (out / f"{key}.safetensors").read_bytes(), key
        sa, sb = a.state_dict(key), b.state_dict(key)
        assert all(torch.equal(sa[n].float(), sb[n].float()) for n in sa), key
        assert new["models"][key]["training"]["reused_from"]["manifest_sha256"] == a.manifest_sha256
    assert (out2 / "malignant.safetensors").read_bytes() != (out / "malignant.safetensors").read_bytes()
    assert new["models"]["malignant"]["training"]["config"]["geometric"] is (not was)
    assert old["models"]["malignant"]["training"]["config"]["geometric"] is was
    assert any("reuse malignant" in line and "geometric" in line for line in logged), logged
    assert "Taken over unchanged" in (out2 / "README.md").read_text(encoding="utf-8")


def _malignant_exams(cohort) -> int:
    return sum(c in ("HB", "OMHT") for c in cohort.classes)


def test_only_the_malignant_model_trains_on_the_supplement_and_it_stays_out_of_the_split(built):
    from training.cohort import load_cohort

    out, work, report = built
    trainval = load_cohort(work / "cohorts" / "trainval.npz")
    sup = load_cohort(work / "cohorts" / "supplement_omht.npz")
    assert len(sup) >= 1 and set(sup.classes) == {"OMHT"} and set(sup.members) <= {"HCC", "UESL"}
    assert report["classifiers"]["malignant"]["train_exams"] == _malignant_exams(trainval) + len(sup)
    assert report["classifiers"]["stage1"]["train_exams"] == len(trainval)
    models = load_bundle(out).manifest["models"]
    assert [c["seed"] for c in models["malignant"]["training"]["data"]["cohorts"]] == [1001, 9119]
    assert len(models["stage1"]["training"]["data"]["cohorts"]) == 1
    assert models["detector"]["training"]["data"]["fit"] == "split"
    splits = json.loads((work / "splits.json").read_text())["splits"]
    assert not set(sup.patient_ids) & {p for ids in splits.values() for p in ids}
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "- malignant supplement: 2 phantom patients, seed 9119, mix {'OMHT': 1}, used by the malignant classifier only" in card


def test_a_rebuild_on_other_training_data_retrains_that_model_though_its_settings_are_the_same(built, tmp_path):
    from training.cohort import load_cohort
    from training.recipe import build

    out, work, report = built
    r = dataclasses.replace(BUILT_WITH["recipe"])
    r.supplements = {}
    logged: list[str] = []
    report3 = build(r, tmp_path / "bundle3", work, device="cpu", log=logged.append, reuse=out)
    assert set(report3["reused"]) == {"detector", "stage1", "benign"}
    assert any(line.startswith("reuse malignant") and "other data" in line for line in logged), logged
    assert any("on other training data, starting afresh" in line for line in logged), logged
    trainval = load_cohort(work / "cohorts" / "trainval.npz")
    assert report3["classifiers"]["malignant"]["train_exams"] == _malignant_exams(trainval)
