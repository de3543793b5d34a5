"""`python -m training train-classifier --fit-all --geometric --add`: the recipe's fit from the command line."""

from __future__ import annotations

import json

import numpy as np

from training.__main__ import main
from training.cohort import save_cohort


def test_fit_all_trains_on_every_patient_without_a_split_and_records_the_geometric_option(tmp_path, lesion_cohort_factory):
    cohort = lesion_cohort_factory(4, matrix=64, seed=5, prefix="C")
    save_cohort(cohort, tmp_path / "c.npz")
    test = lesion_cohort_factory(4, matrix=64, seed=6, prefix="T")
    save_cohort(test, tmp_path / "t.npz")
    out = tmp_path / "run"
    rc = main(["train-classifier", str(tmp_path / "c.npz"), "--fit-all", "--geometric", "--task", "stage1",
               "--epochs", "1", "--input-size", "32", "--batch-size", "16", "--samples-per-epoch", "32",
               "--device", "cpu", "--out", str(out), "--test", str(tmp_path / "t.npz"), "--n-boot", "20"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["config"]["geometric"] is True
    assert summary["val_exams"] == 0 and summary["train_exams"] == len(cohort)
    metrics = json.loads((out / "test_metrics.json").read_text(encoding="utf-8"))
    assert metrics["exams"] == len(test) and np.isfinite(metrics["metrics"]["accuracy"]["value"])


def test_add_appends_a_supplement_to_the_training_patients_and_a_test_patient_among_them_is_refused(
        tmp_path, lesion_cohort_factory, capsys):
    save_cohort(lesion_cohort_factory(4, matrix=64, seed=5, prefix="C"), tmp_path / "c.npz")
    save_cohort(lesion_cohort_factory(2, matrix=64, seed=7, prefix="S"), tmp_path / "s.npz")
    args = ["train-classifier", str(tmp_path / "c.npz"), "--fit-all", "--add", str(tmp_path / "s.npz"), "--task", "stage1",
            "--epochs", "1", "--input-size", "32", "--batch-size", "16", "--samples-per-epoch", "32", "--device", "cpu"]
    assert main(args + ["--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text(encoding="utf-8"))
    assert summary["train_exams"] == 6
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "run2"), "--test", str(tmp_path / "s.npz")]) == 1
    assert "S000" in capsys.readouterr().err
    assert not (tmp_path / "run2").exists(), "nothing is trained when the cohorts overlap"


def test_cohort_member_refuses_a_mix_or_an_exam_folder(tmp_path, capsys):
    assert main(["cohort", str(tmp_path / "c.npz"), "--phantom", "1", "--member", "HCC", "--mix", "HB=1"]) == 1
    assert "--member and --mix" in capsys.readouterr().err
    assert main(["cohort", str(tmp_path / "c.npz"), "--exams", str(tmp_path), "--member", "HCC"]) == 1
    assert "--member applies to --phantom" in capsys.readouterr().err
