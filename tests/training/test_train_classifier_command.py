"""`python -m training train-classifier --fit-all --geometric`: the recipe's fit from the command line."""

from __future__ import annotations

import json

import numpy as np

from training.__main__ import main
from training.cohort import save_cohort


def test_fit_all_trains_on_every_patient_without_a_split_and_records_the_geometric_option(tmp_path, lesion_cohort_factory):
    cohort = lesion_cohort_factory(4, matrix=64, seed=5, prefix="C")
    save_cohort(cohort, tmp_path / "c.npz")
    out = tmp_path / "run"
    rc = main(["train-classifier", str(tmp_path / "c.npz"), "--fit-all", "--geometric", "--task", "stage1",
               "--epochs", "1", "--input-size", "32", "--batch-size", "16", "--samples-per-epoch", "32",
               "--device", "cpu", "--out", str(out), "--test", str(tmp_path / "c.npz"), "--n-boot", "20"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["config"]["geometric"] is True
    assert summary["val_exams"] == 0 and summary["train_exams"] == len(cohort)
    metrics = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert metrics["exams"] == len(cohort) and np.isfinite(metrics["metrics"]["accuracy"]["value"])
