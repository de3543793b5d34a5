"""Exam-level metrics and both kinds of 95% CI, checked against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import evaluate, exam_average, hanley_mcneil_se, t_interval


def test_paper_ci_for_accuracy_matches_the_hand_computed_t_interval():
    # 12 of 20 exams right: p = 0.6, SE = sqrt(0.6 * 0.4 / 20) = 0.109545,
    # t(0.975, df=19) = 2.093024, half width 0.229279 -> [0.370721, 0.829279]
    y = np.array([1] * 10 + [0] * 10)
    p = np.array([0.9] * 6 + [0.1] * 4 + [0.1] * 6 + [0.9] * 4)
    m = evaluate(y, p, n_boot=200)
    acc = m["accuracy"]
    assert acc["value"] == pytest.approx(0.6)
    assert acc["n"] == 20
    assert acc["se"] == pytest.approx(0.109545, abs=1e-6)
    assert acc["ci_t"] == pytest.approx([0.370721, 0.829279], abs=2e-6)
    # sensitivity 6/10: SE on the 10 positives, t(0.975, 9) = 2.262157
    sens = m["sensitivity"]
    assert sens["value"] == pytest.approx(0.6) and sens["n"] == 10
    assert sens["ci_t"] == pytest.approx([0.6 - 2.262157 * 0.154919, 0.6 + 2.262157 * 0.154919], abs=1e-5)


def test_auc_standard_error_is_hanley_mcneil():
    # A = 0.8, 10 + 10: Q1 = 2/3, Q2 = 0.711111, var = (0.16 + 9*0.026667 + 9*0.071111) / 100 = 0.0104
    assert hanley_mcneil_se(0.8, 10, 10) == pytest.approx(0.101980, abs=1e-6)
    assert t_interval(0.8, 0.101980, 20) == pytest.approx([0.586554, 1.0], abs=1e-5)


def test_bootstrap_interval_brackets_the_estimate_and_is_wider_with_fewer_exams():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    p = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    big = evaluate(y, p, n_boot=300)["auc"]
    small = evaluate(y[:40], p[:40], n_boot=300)["auc"]
    assert big["ci_bootstrap"][0] <= big["value"] <= big["ci_bootstrap"][1]
    width = lambda m: m["ci_bootstrap"][1] - m["ci_bootstrap"][0]  # noqa: E731
    assert width(small) > width(big)


def test_composites_are_averaged_per_exam():
    ids, probs, labels = exam_average(
        ["a", "a", "b", "a", "b"],
        np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1], [0.3, 0.7], [0.7, 0.3]]),
        [1, 1, 0, 1, 0],
    )
    assert ids == ["a", "b"]
    np.testing.assert_allclose(probs, [[0.3, 0.7], [0.8, 0.2]])
    assert labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="exam 'a'"):
        exam_average(["a", "a"], np.array([[0.5, 0.5], [0.5, 0.5]]), [0, 1])


def test_one_step_model_gets_macro_metrics():
    y = np.array([0, 1, 2, 3] * 5)
    probs = np.eye(4)[y] * 0.7 + 0.075
    m = evaluate(y, probs, n_boot=50)
    assert m["auc"]["value"] == pytest.approx(1.0)
    assert m["accuracy"]["value"] == pytest.approx(1.0)
    assert m["f1"]["value"] == pytest.approx(1.0)


def test_bootstrap_fast_path_agrees_with_scikit_learn():
    from training.metrics import _fast_binary, binary_point

    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # ties on purpose
    fast = _fast_binary(y, s, 0.5)
    for k, (v, _n) in binary_point(y, s, 0.5).items():
        assert fast[k] == pytest.approx(v), k
