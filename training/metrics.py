"""Classification metrics at exam level with 95% CIs (the paper's t-interval and a patient-level bootstrap).

The paper's interval: point estimate +- t(0.975, df = n - 1) * SE. Which SE, exactly:
- accuracy, F1: binomial SE sqrt(p (1 - p) / n), n = number of exams evaluated;
- sensitivity (= recall): binomial SE, n = exams of the positive class;
- specificity: binomial SE, n = exams of the negative class;
- precision: binomial SE, n = exams predicted positive;
- AUC: Hanley & McNeil (1982) SE with n1 positives and n0 negatives, df = n - 1 (n = exams);
- multi-class (one-step) macro metrics: macro AUC uses the root-sum-square of the per-class
  one-vs-rest Hanley-McNeil SEs divided by the class count; the other macro metrics use the
  binomial SE with n = exams.
The interval is clipped to [0, 1]. When the estimate is 0 or 1 the binomial SE is 0 and the
t-interval collapses to a point; the bootstrap interval is the honest one then.
Bootstrap: resample exams (one exam per patient, so patients) with replacement, recompute
every metric, take the 2.5 and 97.5 percentiles; resamples where a metric is undefined
(e.g. AUC with one class) are skipped for that metric.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

METRICS = ("auc", "accuracy", "precision", "recall", "f1", "sensitivity", "specificity")


def exam_average(exam_ids: Sequence, probs: np.ndarray, labels: Sequence[int] | None = None):
    """Average composite probabilities per exam, in order of first appearance.

    Returns (exam ids, probs [m, C]) and, when `labels` is given, the exam labels (which
    must agree within an exam)."""
    probs = np.asarray(probs, dtype=np.float64)
    order: dict = {}
    for i, e in enumerate(exam_ids):
        order.setdefault(e, []).append(i)
    ids = list(order)
    avg = np.stack([probs[idx].mean(axis=0) for idx in order.values()])
    if labels is None:
        return ids, avg
    labels = np.asarray(labels)
    out = []
    for e, idx in order.items():
        vals = set(labels[idx].tolist())
        if len(vals) != 1:
            raise ValueError(f"exam {e!r} has composites with different labels {sorted(vals)}")
        out.append(vals.pop())
    return ids, avg, np.asarray(out)


def _binary_counts(y: np.ndarray, pred: np.ndarray) -> tuple[int, int, int, int]:
    tn, fp, fn, tp = confusion_matrix(y, pred, labels=[0, 1]).ravel()
    return int(tp), int(fp), int(tn), int(fn)


def binary_point(y: np.ndarray, p_pos: np.ndarray, threshold: float = 0.5) -> dict[str, tuple[float, int]]:
    """Every metric with the n its SE uses: {name: (value, n)}; value NaN where undefined."""
    y = np.asarray(y).astype(int)
    pred = (np.asarray(p_pos) >= threshold).astype(int)
    tp, fp, tn, fn = _binary_counts(y, pred)
    n = len(y)
    auc = roc_auc_score(y, p_pos) if len(set(y.tolist())) == 2 else float("nan")
    return {
        "auc": (float(auc), n),
        "accuracy": (float(accuracy_score(y, pred)), n),
        "precision": (float(precision_score(y, pred, zero_division=0)) if tp + fp else float("nan"), tp + fp),
        "recall": (float(recall_score(y, pred, zero_division=0)) if tp + fn else float("nan"), tp + fn),
        "f1": (float(f1_score(y, pred, zero_division=0)), n),
        "sensitivity": (tp / (tp + fn) if tp + fn else float("nan"), tp + fn),
        "specificity": (tn / (tn + fp) if tn + fp else float("nan"), tn + fp),
    }


def multiclass_point(y: np.ndarray, probs: np.ndarray) -> dict[str, tuple[float, int]]:
    """Macro-averaged metrics for the one-step model (argmax decision)."""
    y = np.asarray(y).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    c = probs.shape[1]
    pred = probs.argmax(axis=1)
    n = len(y)
    present = sorted(set(y.tolist()))
    if len(present) >= 2:
        aucs = [roc_auc_score((y == k).astype(int), probs[:, k]) for k in present]
        auc = float(np.mean(aucs))
    else:
        auc = float("nan")
    labels = list(range(c))
    cm = confusion_matrix(y, pred, labels=labels)
    spec = []
    for k in present:
        tn = cm.sum() - cm[k, :].sum() - cm[:, k].sum() + cm[k, k]
        fp = cm[:, k].sum() - cm[k, k]
        spec.append(tn / (tn + fp) if tn + fp else float("nan"))
    rec = float(recall_score(y, pred, labels=present, average="macro", zero_division=0))
    return {
        "auc": (auc, n),
        "accuracy": (float(accuracy_score(y, pred)), n),
        "precision": (float(precision_score(y, pred, labels=present, average="macro", zero_division=0)), n),
        "recall": (rec, n),
        "f1": (float(f1_score(y, pred, labels=present, average="macro", zero_division=0)), n),
        "sensitivity": (rec, n),
        "specificity": (float(np.nanmean(spec)) if spec else float("nan"), n),
    }


def _fast_binary(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, float]:
    """binary_point's values without sklearn's per-call checks (thousands of bootstrap resamples);
    AUC by the Mann-Whitney rank formula with tied ranks averaged, which equals roc_auc_score."""
    pred = s >= threshold
    pos = y == 1
    tp = int((pred & pos).sum())
    fp = int((pred & ~pos).sum())
    fn = int((~pred & pos).sum())
    tn = len(y) - tp - fp - fn
    n1, n0 = tp + fn, tn + fp
    nan = float("nan")
    if n1 and n0:
        ranks = stats.rankdata(s)
        auc = (ranks[pos].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    else:
        auc = nan
    prec = tp / (tp + fp) if tp + fp else nan
    rec = tp / n1 if n1 else nan
    return {
        "auc": float(auc),
        "accuracy": (tp + tn) / len(y),
        "precision": prec,
        "recall": rec,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
        "sensitivity": rec,
        "specificity": tn / n0 if n0 else nan,
    }


def binomial_se(p: float, n: int) -> float:
    return math.sqrt(p * (1.0 - p) / n) if n > 0 and not math.isnan(p) else float("nan")


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC (Hanley & McNeil, Radiology 1982)."""
    if n_pos < 1 or n_neg < 1 or math.isnan(auc):
        return float("nan")
    q1 = auc / (2.0 - auc)
    q2 = 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(var, 0.0))


def t_interval(value: float, se: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """value +- t(1 - (1 - level) / 2, df = n - 1) * se, clipped to [0, 1]."""
    if n < 2 or math.isnan(value) or math.isnan(se):
        return (float("nan"), float("nan"))
    h = float(stats.t.ppf(1.0 - (1.0 - level) / 2.0, n - 1)) * se
    return (max(0.0, value - h), min(1.0, value + h))


def _paper_se(name: str, value: float, n: int, y: np.ndarray, probs: np.ndarray | None) -> float:
    if name != "auc":
        return binomial_se(value, n)
    if probs is None or probs.ndim == 1 or probs.shape[1] == 2:
        n_pos = int((y == 1).sum())
        return hanley_mcneil_se(value, n_pos, len(y) - n_pos)
    ses = []
    for k in sorted(set(y.tolist())):
        n_pos = int((y == k).sum())
        auc_k = roc_auc_score((y == k).astype(int), probs[:, k])
        ses.append(hanley_mcneil_se(auc_k, n_pos, len(y) - n_pos))
    return math.sqrt(sum(s * s for s in ses)) / len(ses)


def point_metrics(y: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, tuple[float, int]]:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim == 2 and probs.shape[1] > 2:
        return multiclass_point(y, probs)
    p_pos = probs[:, 1] if probs.ndim == 2 else probs
    return binary_point(y, p_pos, threshold)


def evaluate(
    y: Sequence[int],
    probs: np.ndarray,
    threshold: float = 0.5,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, dict]:
    """Exam-level metrics: {name: {value, n, se, ci_t: [lo, hi], ci_bootstrap: [lo, hi]}}.

    `probs` is [n, C] class probabilities (C = 2: binary with positive class 1, threshold;
    C > 2: macro metrics, argmax) or [n] positive-class probabilities.
    """
    y = np.asarray(y).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    point = point_metrics(y, probs, threshold)
    rng = np.random.default_rng(seed)
    boot: dict[str, list[float]] = {k: [] for k in point}
    binary = probs.ndim == 1 or probs.shape[1] == 2
    for _ in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        if binary:
            values = _fast_binary(y[idx], (probs[:, 1] if probs.ndim == 2 else probs)[idx], threshold)
        else:
            values = {k: v for k, (v, _n) in multiclass_point(y[idx], probs[idx]).items()}
        for k, v in values.items():
            if not math.isnan(v):
                boot[k].append(v)
    a = (1.0 - level) / 2.0
    out = {}
    for k, (v, n) in point.items():
        se = _paper_se(k, v, n, y, probs)
        b = boot[k]
        out[k] = {
            "value": v,
            "n": n,
            "se": se,
            "ci_t": list(t_interval(v, se, n, level)),
            "ci_bootstrap": [float(np.quantile(b, a)), float(np.quantile(b, 1 - a))] if b else [float("nan")] * 2,
        }
    return out


def format_metric(m: dict, digits: int = 3) -> str:
    """'0.987 (0.970-1.000)' with the t-interval."""
    v = m["value"]
    lo, hi = m["ci_t"]
    if math.isnan(v):
        return "n/a"
    if math.isnan(lo):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ({lo:.{digits}f}-{hi:.{digits}f})"
