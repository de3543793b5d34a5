"""build-weights --reuse: which models of an earlier bundle may be taken over, and what is checked."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from training.classifier import ClassifierConfig
from training.detector import DetectorConfig
from training.reuse import ReuseError, classifier_from_bundle, config_doc, detector_from_bundle


class FakeBundle:
    """The parts of liverview.engine.bundle.Bundle that reuse reads."""

    def __init__(self, models):
        self.folder = "old-bundle"
        self.manifest = {"name": "old", "version": "1.0.0", "models": models}
        self.manifest_sha256 = "ab" * 32

    def model(self, key):
        return self.manifest["models"][key]

    def state_dict(self, key):
        return {"w": torch.ones(2, dtype=torch.float16), "n": torch.tensor(3)}


def _entry(cfg: ClassifierConfig, full: bool = True) -> dict:
    training = {"augmentation": cfg.augmentation, "rebalance": cfg.rebalance, "epochs": cfg.epochs, "lr": cfg.lr,
                "schedule": cfg.schedule, "batch_size": cfg.batch_size, "weight_decay": cfg.weight_decay,
                "best_epoch": cfg.epochs - 1, "train_composites": 10, "train_exams": 5, "seconds": 1.0}
    if full:
        training["config"] = config_doc(cfg)
    return {"backbone": cfg.backbone, "input_size": cfg.input_size, "roi_margin": cfg.roi_margin, "classes": ["HB", "OMHT"],
            "normalisation": {"mean": [0.5] * 4, "std": [0.2] * 4}, "training": training}


def test_same_settings_are_taken_over_as_float32_with_the_old_normalisation():
    cfg = ClassifierConfig(task="malignant", input_size=48, epochs=3)
    state, summary, unchecked = classifier_from_bundle(FakeBundle({"malignant": _entry(cfg)}), "malignant", cfg)
    assert state["w"].dtype == torch.float32 and state["n"].dtype == torch.int64
    assert summary["normalisation"]["mean"] == [0.5] * 4 and summary["reused_from"]["version"] == "1.0.0"
    assert unchecked == []


def test_a_changed_setting_is_refused_and_named():
    old = ClassifierConfig(task="malignant", input_size=48)
    with pytest.raises(ReuseError, match="input_size: bundle 48, recipe 64"):
        classifier_from_bundle(FakeBundle({"malignant": _entry(old)}), "malignant", ClassifierConfig(task="malignant", input_size=64))


def test_a_setting_added_after_the_bundle_counts_as_its_default_then():
    cfg = ClassifierConfig(task="benign")
    entry = _entry(cfg)
    del entry["training"]["config"]["geometric"]  # the bundle predates the option
    classifier_from_bundle(FakeBundle({"benign": entry}), "benign", cfg)
    with pytest.raises(ReuseError, match="geometric"):
        classifier_from_bundle(FakeBundle({"benign": copy.deepcopy(entry)}), "benign", ClassifierConfig(task="benign", geometric=True))


def test_an_old_style_entry_is_checked_as_far_as_it_records_and_the_rest_is_listed():
    cfg = ClassifierConfig(task="stage1", momentum=0.5)
    _, _, unchecked = classifier_from_bundle(FakeBundle({"stage1": _entry(cfg, full=False)}), "stage1", cfg)
    assert "momentum" in unchecked and "input_size" not in unchecked
    assert "geometric" not in unchecked, "code that wrote partial records had no such option: it trained without it"
    with pytest.raises(ReuseError, match="geometric"):
        classifier_from_bundle(FakeBundle({"stage1": _entry(cfg, full=False)}), "stage1",
                               ClassifierConfig(task="stage1", momentum=0.5, geometric=True))
    with pytest.raises(ReuseError, match="epochs"):
        classifier_from_bundle(FakeBundle({"stage1": _entry(cfg, full=False)}), "stage1", ClassifierConfig(task="stage1", epochs=99))


def test_detector_entries_are_checked_the_same_way():
    cfg = DetectorConfig(imgsz=128, epochs=2)
    full = {"arch": "yolov8n", "input_size": 128, "conf": 0.25, "iou": 0.6,
            "training": {"config": json.loads(json.dumps(config_doc(cfg))), "best_epoch": 1}}
    _, summary, unchecked = detector_from_bundle(FakeBundle({"detector": full}), cfg)
    assert unchecked == [] and summary["best_epoch"] == 1
    with pytest.raises(ReuseError, match="epochs"):
        detector_from_bundle(FakeBundle({"detector": full}), DetectorConfig(imgsz=128, epochs=5))
    old = {"arch": "yolov8n", "input_size": 128, "conf": 0.25, "iou": 0.6}
    _, _, unchecked = detector_from_bundle(FakeBundle({"detector": old}), cfg)
    assert "epochs" in unchecked and "imgsz" not in unchecked
    with pytest.raises(ReuseError, match="scale"):
        detector_from_bundle(FakeBundle({"detector": old}), DetectorConfig(scale="s", imgsz=128))


def _data(*cohorts) -> dict:
    return {"fit": "all", "matrix": 256, "render_args": {},
            "cohorts": [{"patients": n, "seed": s, "mix": {"HH": 0.0, "OBHT": 0.0, "HB": 0.0, "OMHT": 1.0}, "member": m}
                        for n, s, m in cohorts]}


def test_a_model_fitted_on_other_patients_is_refused_and_the_cohorts_named():
    cfg = ClassifierConfig(task="malignant")
    dev, sup = (148, 1001, None), (6, 9009, "HCC")
    entry = _entry(cfg)
    entry["training"]["data"] = _data(dev)
    with pytest.raises(ReuseError, match=r"other data.*bundle: 148 patients seed 1001; recipe: 148 patients seed 1001, 6 patients seed 9009 \(HCC\)"):
        classifier_from_bundle(FakeBundle({"malignant": entry}), "malignant", cfg, _data(dev, sup))
    entry["training"]["data"] = _data(dev, sup)
    _, _, unchecked = classifier_from_bundle(FakeBundle({"malignant": entry}), "malignant", cfg, _data(dev, sup))
    assert unchecked == []


def test_an_entry_without_a_data_record_counts_as_fitted_on_the_development_cohort_alone():
    cfg = ClassifierConfig(task="malignant")
    dev, sup = (148, 1001, None), (6, 9009, "HCC")
    _, _, unchecked = classifier_from_bundle(FakeBundle({"malignant": _entry(cfg)}), "malignant", cfg, _data(dev))
    assert unchecked == ["training data"]
    with pytest.raises(ReuseError, match="other data"):
        classifier_from_bundle(FakeBundle({"malignant": _entry(cfg)}), "malignant", cfg, _data(dev, sup))


def test_an_entry_without_a_data_record_is_checked_against_the_manifests_training_data_block():
    cfg = ClassifierConfig(task="stage1")
    bundle = FakeBundle({"stage1": _entry(cfg)})
    bundle.manifest["training_data"] = {"train_validation": {"patients": 148, "seed": 1001, "mix": {"OMHT": 1}},
                                        "matrix": 256}
    _, _, unchecked = classifier_from_bundle(bundle, "stage1", cfg, _data((148, 1001, None)))
    assert unchecked == ["training data"]
    with pytest.raises(ReuseError, match="seed 1001; recipe: 148 patients seed 1002; differs in cohorts"):
        classifier_from_bundle(bundle, "stage1", cfg, _data((148, 1002, None)))
    other_grid = {**_data((148, 1001, None)), "matrix": 128}
    with pytest.raises(ReuseError, match="differs in matrix"):
        classifier_from_bundle(bundle, "stage1", cfg, other_grid)


def test_a_detector_trained_on_other_patients_is_refused():
    cfg = DetectorConfig(imgsz=128, epochs=2)
    entry = {"arch": "yolov8n", "input_size": 128, "conf": 0.25, "iou": 0.6,
             "training": {"config": json.loads(json.dumps(config_doc(cfg))), "best_epoch": 1,
                          "data": _data((148, 1001, None))}}
    _, _, unchecked = detector_from_bundle(FakeBundle({"detector": entry}), cfg, _data((148, 1001, None)))
    assert unchecked == []
    with pytest.raises(ReuseError, match="detector: trained on other data"):
        detector_from_bundle(FakeBundle({"detector": entry}), cfg, _data((100, 1001, None)))
