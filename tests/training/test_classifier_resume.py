"""Classifier checkpoints: an interrupted run resumes where it stopped and ends where an uninterrupted one does.

Every epoch's randomness is seeded from (seed, epoch) — batch order, MixUp partners and weights,
traditional augmentation — and the checkpoint holds the weights, BatchNorm statistics and SGD
momentum, so on one CPU thread "1 epoch, then resume to 2" must equal "2 epochs" exactly.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from training.classifier import ClassifierConfig
from training.runs import classifier_run

# one-block ResNet stages, 32 px inputs, 48 samples per epoch: each epoch is a few seconds on one thread
BASE = ClassifierConfig(task="stage1", backbone="resnet18", arch_args={"layers": [1, 1, 1, 1]}, input_size=32,
                        batch_size=16, samples_per_epoch=48, epochs=2, device="cpu", seed=3)


@pytest.fixture(scope="module")
def cohorts(lesion_cohort_factory):
    torch.set_num_threads(1)
    # 4 exams: HH, OBHT, HB, OMHT (two minority exams expand to 81 PKCP composites each)
    return lesion_cohort_factory(4, matrix=64, seed=1, prefix="R"), lesion_cohort_factory(4, matrix=64, seed=2, prefix="V")


def _epochs_logged(lines: list[str]) -> list[str]:
    return [line.split(" epoch ")[1].split()[0] for line in lines if " epoch " in line]


def _ckpt(folder) -> dict:
    return json.loads((folder / "checkpoint.json").read_text(encoding="utf-8"))


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


@pytest.mark.parametrize("augmentation", ["pkcp-mixup", "traditional"])
def test_an_interrupted_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, cohorts, augmentation):
    train, val = cohorts
    cfg = dataclasses.replace(BASE, augmentation=augmentation)

    straight_log: list[str] = []
    straight, straight_summary = classifier_run(train, val, cfg, tmp_path / "straight", log=straight_log.append)
    assert _epochs_logged(straight_log) == ["1/2", "2/2"]

    # "interrupted" after epoch 1: a run asked for 1 epoch leaves the epoch-0 checkpoint
    first_log: list[str] = []
    classifier_run(train, val, dataclasses.replace(cfg, epochs=1), tmp_path / "resumed", log=first_log.append)
    assert _epochs_logged(first_log) == ["1/1"]
    assert _ckpt(tmp_path / "resumed")["epoch"] == 0
    epoch0 = _ckpt(tmp_path / "resumed")["history"][0]

    resumed_log: list[str] = []
    resumed, resumed_summary = classifier_run(train, val, cfg, tmp_path / "resumed", resume=True,
                                              log=resumed_log.append)
    assert any("resuming" in line and "1 of 2 epochs already done" in line for line in resumed_log)
    assert _epochs_logged(resumed_log) == ["2/2"], "epoch 1 must not be trained again"
    ckpt = _ckpt(tmp_path / "resumed")
    assert ckpt["epoch"] == 1 and [h["epoch"] for h in ckpt["history"]] == [0, 1]
    assert ckpt["history"][0] == epoch0, "the first epoch's record is carried over, not redone"

    # the same end state as the uninterrupted run: returned best weights, last checkpoint, and history
    _assert_same_state(resumed, straight)
    from training.checkpoint import load_weights

    _assert_same_state(load_weights(tmp_path / "resumed" / "checkpoint.safetensors"),
                       load_weights(tmp_path / "straight" / "checkpoint.safetensors"))
    for got, want in zip(resumed_summary["history"], straight_summary["history"]):
        assert {k: v for k, v in got.items() if k != "seconds"} == {k: v for k, v in want.items() if k != "seconds"}
    assert resumed_summary["best_epoch"] == straight_summary["best_epoch"]
    # seconds count the whole run across invocations, so a manifest never records only the last piece
    assert ckpt["history"][1]["seconds"] >= epoch0["seconds"] and resumed_summary["seconds"] >= ckpt["history"][1]["seconds"]


def test_a_finished_run_is_not_retrained_and_a_changed_config_starts_over(tmp_path, cohorts):
    train, val = cohorts
    cfg = dataclasses.replace(BASE, epochs=1, augmentation="none")
    first, _ = classifier_run(train, val, cfg, tmp_path / "run", log=lambda s: None)

    again_log: list[str] = []
    again, again_summary = classifier_run(train, val, cfg, tmp_path / "run", resume=True, log=again_log.append)
    assert _epochs_logged(again_log) == [], "all epochs were done: nothing to train"
    _assert_same_state(again, first)
    assert again_summary["seconds"] >= _ckpt(tmp_path / "run")["history"][-1]["seconds"] > 0, \
        "a finished run taken up again still reports its training time"

    # another learning rate is another run: the checkpoint is not reused
    other_log: list[str] = []
    classifier_run(train, val, dataclasses.replace(cfg, lr=1e-2), tmp_path / "run", resume=True,
                   log=other_log.append)
    assert not any("resuming" in line for line in other_log)
    assert _epochs_logged(other_log) == ["1/1"]
    assert _ckpt(tmp_path / "run")["config"]["lr"] == 1e-2

    # resume=False retrains even with a matching checkpoint
    fresh_log: list[str] = []
    classifier_run(train, val, dataclasses.replace(cfg, lr=1e-2), tmp_path / "run", resume=False,
                   log=fresh_log.append)
    assert _epochs_logged(fresh_log) == ["1/1"]


def test_a_finished_run_on_other_patients_is_trained_again(tmp_path, cohorts, lesion_cohort_factory):
    from training.cohort import concat

    train, val = cohorts
    cfg = dataclasses.replace(BASE, epochs=1, augmentation="none")
    classifier_run(train, val, cfg, tmp_path / "run", log=lambda s: None)
    more = concat([train, lesion_cohort_factory(2, matrix=64, seed=5, prefix="S")])
    logged: list[str] = []
    _, summary = classifier_run(more, val, cfg, tmp_path / "run", resume=True, log=logged.append)
    assert any("other training data, starting afresh" in line for line in logged), logged
    assert _epochs_logged(logged) == ["1/1"] and summary["train_exams"] == 6
    same: list[str] = []
    classifier_run(more, val, cfg, tmp_path / "run", resume=True, log=same.append)
    assert _epochs_logged(same) == [], "the same patients again: the finished run is taken up"


def test_a_switch_to_other_patients_interrupted_before_its_first_epoch_does_not_resume_the_old_run(
        tmp_path, cohorts, lesion_cohort_factory, monkeypatch):
    import training.runs as runs
    from training.cohort import concat

    train, val = cohorts
    cfg = dataclasses.replace(BASE, epochs=1, augmentation="none")
    classifier_run(train, val, cfg, tmp_path / "run", log=lambda s: None)
    more = concat([train, lesion_cohort_factory(2, matrix=64, seed=5, prefix="S")])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(runs, "train_classifier", interrupted)
        with pytest.raises(KeyboardInterrupt):
            classifier_run(more, val, cfg, tmp_path / "run", log=lambda s: None)
    logged: list[str] = []
    _, summary = classifier_run(more, val, cfg, tmp_path / "run", resume=True, log=logged.append)
    assert _epochs_logged(logged) == ["1/1"], "the old run's checkpoint must not be taken up for the new patients"
    assert summary["train_exams"] == 6


def test_geometric_augmentation_on_top_of_pkcp_mixup_changes_what_the_model_sees_and_is_reproducible(tmp_path, cohorts):
    from training.classifier import crop_set, train_classifier
    from training.tasks import task

    train, _ = cohorts
    cfg = dataclasses.replace(BASE, epochs=1)
    geo = dataclasses.replace(cfg, geometric=True)
    data = crop_set(train, task("stage1"), "pkcp", cfg.input_size, cfg.roi_margin, cfg.phases)
    seen: list[torch.Tensor] = []

    def spy(c, n):  # records the first batch each model is trained on
        model = real(c, n)
        first = len(seen)
        model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone())
                                        if m.training and len(seen) == first else None)
        return model

    import training.classifier as clf

    real = clf.make_model
    try:
        clf.make_model = spy
        plain_state, _ = train_classifier(data, None, cfg, tmp_path / "plain", resume=False, log=lambda s: None)
        geo_state, _ = train_classifier(data, None, geo, tmp_path / "geo", resume=False, log=lambda s: None)
        geo_again, _ = train_classifier(data, None, geo, tmp_path / "geo2", resume=False, log=lambda s: None)
    finally:
        clf.make_model = real
    plain_batch, geo_batch, geo_batch2 = seen
    assert plain_batch.shape == geo_batch.shape
    assert not torch.equal(plain_batch, geo_batch), "geometric=True must flip/rotate/scale the MixUp samples"
    assert torch.equal(geo_batch, geo_batch2), "seeded: the same run sees the same samples"
    _assert_same_state(geo_state, geo_again)
    assert any(not torch.equal(plain_state[k], geo_state[k]) for k in plain_state)
