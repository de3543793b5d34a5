"""The ablation functions of training/ablate.py on a tiny cohort with tiny settings: the rows they return.

Each ablation runs once per module (a few seconds each on two CPU cores); the tests check that
the rows name the right arms, that every number lies in its range, and that the run behind each
arm was trained with that arm's setting and otherwise the same settings as the others.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from sklearn.metrics import roc_auc_score

from training import ablate
from training.checkpoint import load_weights
from training.classifier import ClassifierConfig
from training.detector import DetectorConfig
from training.pkcp import expand
from training.tasks import CLASSES, MINORITY

pytestmark = pytest.mark.slow

N_TRAIN, N_TEST = 4, 8  # one exam of each class to train on; two of each to test on
CLASSIFIER = ClassifierConfig(input_size=32, epochs=1, batch_size=32, device="cpu")
METRICS = ("auc", "accuracy", "sensitivity", "specificity", "f1")


@pytest.fixture(scope="module")
def data(lesion_cohort_factory) -> ablate.Data:
    torch.set_num_threads(1)
    return ablate.Data(lesion_cohort_factory(N_TRAIN, seed=0, prefix="TR"), lesion_cohort_factory(4, seed=1, prefix="VA"),
                       lesion_cohort_factory(N_TEST, seed=2, prefix="TE"), "tiny")


def _config(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["config"]


def _same_but(configs: list[dict], key: str) -> None:
    """The configs differ in `key` from one another and in nothing else."""
    rest = [{k: v for k, v in c.items() if k != key} for c in configs]
    assert all(r == rest[0] for r in rest), f"arms differ in more than {key}"
    assert len({json.dumps(c[key]) for c in configs}) == len(configs), f"arms share a {key}"


def _in_unit(v: float, allow_nan: bool = True) -> bool:
    return (allow_nan and math.isnan(v)) or 0.0 <= v <= 1.0


def _check_classifier_row(row: dict) -> None:
    for name in METRICS:
        assert _in_unit(row[name]), (name, row[name])
    v, lo, hi = row["auc"], row["auc_ci_t_lo"], row["auc_ci_t_hi"]
    if not math.isnan(v):
        assert lo - 1e-9 <= v <= hi + 1e-9 and 0.0 <= lo and hi <= 1.0
        assert row["auc_ci_boot_lo"] - 1e-9 <= v <= row["auc_ci_boot_hi"] + 1e-9
    # exam-level accuracy over the test exams is a whole number of exams
    assert row["accuracy"] * row["exams"] == pytest.approx(round(row["accuracy"] * row["exams"]))
    assert row["seconds"] > 0


def test_augmentation_arms_differ_only_in_their_arm_and_see_the_same_samples(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("aug")
    rows = ablate.augmentation(data, CLASSIFIER, out, n_boot=20, log=lambda s: None, backbones=("resnet18",))
    assert [(r["task"], r["backbone"], r["augmentation"]) for r in rows] == [
        ("stage1", "resnet18", "none"), ("stage1", "resnet18", "traditional"), ("stage1", "resnet18", "pkcp-mixup")]
    pkcp = len(expand(data.train, "pkcp"))
    flat = len(expand(data.train, "flat"))
    n_minority = sum(c in MINORITY for c in data.train.classes)
    assert pkcp == flat + n_minority * (3**4 - 3) > flat  # K^P = 81 composites for each minority exam instead of K = 3
    assert [r["train_composites"] for r in rows] == [flat, flat, pkcp]
    for r in rows:
        assert r["exams"] == N_TEST  # every class has a stage-1 label
        _check_classifier_row(r)
    configs = [_config(out / f"resnet18_{arm}") for arm in ("none", "traditional", "pkcp-mixup")]
    _same_but(configs, "augmentation")
    assert [c["augmentation"] for c in configs] == ["none", "traditional", "pkcp-mixup"]
    assert all(c["samples_per_epoch"] == pkcp for c in configs)  # no arm is credited with more gradient steps


def test_phase_subsets_train_on_their_phases_only(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("phases")
    base = dataclasses.replace(CLASSIFIER, samples_per_epoch=24)
    rows = ablate.phases(data, base, out, n_boot=20, log=lambda s: None, tasks=("stage1",))
    assert [(r["task"], r["phases"]) for r in rows] == [("stage1", ps) for ps in ablate.PHASE_SETS]
    flat = len(expand(data.train, "flat"))
    n_minority = sum(c in MINORITY for c in data.train.classes)
    for r in rows:
        # PKCP crosses the phases used only: K^4 composites per minority exam with four, K^3 with three
        crossed = 3 ** len(r["phases"])
        assert r["train_composites"] == flat + n_minority * (crossed - 3), r
        assert r["exams"] == N_TEST
        _check_classifier_row(r)
    configs = [_config(out / f"stage1_{ps}") for ps in ablate.PHASE_SETS]
    _same_but(configs, "phases")
    assert ["".join(c["phases"]) for c in configs] == list(ablate.PHASE_SETS)


def test_onestep_rows_are_the_four_class_model_and_the_cascade_of_the_three(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("onestep")
    base = dataclasses.replace(CLASSIFIER, samples_per_epoch=24)
    rows = ablate.onestep(data, base, out, n_boot=20, log=lambda s: None)
    assert [r["model"] for r in rows] == ["one-step 4-class", "two-step cascade"]
    tasks = {t: _config(out / t) for t in ("onestep", "stage1", "benign", "malignant")}
    _same_but(list(tasks.values()), "task")
    assert [c["task"] for c in tasks.values()] == list(tasks)
    for r in rows:
        assert r["exams"] == N_TEST
        for name in ("macro_auc", "accuracy", "macro_f1", "macro_sensitivity", "macro_specificity"):
            assert _in_unit(r[name], allow_nan=False), (r["model"], name, r[name])
        assert r["auc_ci_t_lo"] - 1e-9 <= r["macro_auc"] <= r["auc_ci_t_hi"] + 1e-9
        assert r["accuracy"] * N_TEST == pytest.approx(round(r["accuracy"] * N_TEST))

    # the cascade's row recomputed from the saved models: P(group) x P(subtype | group), macro one-vs-rest AUC
    probs = {}
    for t in tasks:
        summary = json.loads((out / t / "summary.json").read_text(encoding="utf-8"))
        ids, probs[t] = ablate._probs_on(load_weights(out / t / "best.safetensors"), summary, data.test)
    y = np.array([CLASSES.index(data.test.classes[data.test.index(e)]) for e in ids])
    pm = probs["stage1"][:, 1]
    b, m = probs["benign"], probs["malignant"]
    cascade = np.stack([(1 - pm) * b[:, 0], (1 - pm) * b[:, 1], pm * m[:, 0], pm * m[:, 1]], axis=1)
    np.testing.assert_allclose(cascade.sum(axis=1), 1.0, atol=1e-5)
    for row, p in zip(rows, (probs["onestep"], cascade)):
        auc = np.mean([roc_auc_score(y == k, p[:, k]) for k in range(len(CLASSES))])
        assert row["macro_auc"] == pytest.approx(auc, abs=1e-9), row["model"]
        assert row["accuracy"] == pytest.approx(float(np.mean(p.argmax(axis=1) == y)), abs=1e-9), row["model"]


def test_detection_configurations_train_on_their_own_images(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("detection")
    det = DetectorConfig(imgsz=64, epochs=1, batch=8, device="cpu")
    rows = ablate.detection(data, det, out, log=lambda s: None)
    assert [r["configuration"] for r in rows] == list(ablate.DETECTION_CONFIGS)
    picks = 3
    single = N_TRAIN * 4 * picks  # every picked slice of every phase on its own
    flat = N_TRAIN * picks
    assert [r["train_images"] for r in rows] == [single, flat, len(expand(data.train, "pkcp")), flat]
    assert [r["test_images"] for r in rows] == [N_TEST * 4 * picks] + [N_TEST * picks] * 3
    for r in rows:
        for name in ("map", "precision", "recall", "f1"):
            assert _in_unit(r[name], allow_nan=False), (r["configuration"], name, r[name])
        assert r["seconds"] > 0
    configs = [json.loads((out / f"config{j}" / "detector_train.json").read_text())["config"] for j in range(4)]
    for cfg, over in zip(configs, ablate.DETECTION_CONFIGS.values()):
        assert cfg["expansion"] == over["expansion"]
        assert tuple(cfg["phases"]) == tuple(over.get("phases", "PAVD"))
    # the 3-phase arm's images carry P as a zero channel; the 4-phase arms' do not
    three = [tifffile.imread(p) for p in sorted((out / "config1" / "dataset" / "images" / "train").glob("*.tif"))]
    four = [tifffile.imread(p) for p in sorted((out / "config3" / "dataset" / "images" / "train").glob("*.tif"))]
    assert all(im.shape[0] == 4 and not im[0].any() and all(im[c].any() for c in (1, 2, 3)) for im in three)
    assert all(im[0].any() for im in four)
