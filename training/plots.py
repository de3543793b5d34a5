"""PNG plots with matplotlib's Agg backend: ROC curves and ablation bar charts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_curve  # noqa: E402


def roc_png(
    curves: Mapping[str, tuple[Sequence[int], Sequence[float]]],
    path: str | os.PathLike,
    title: str,
    note: str = "synthetic phantom data: not clinical evidence",
) -> Path:
    """ROC curve per entry {label: (binary labels, positive-class scores)} with the AUC in the legend."""
    from sklearn.metrics import roc_auc_score

    fig, ax = plt.subplots(figsize=(4.6, 4.6), dpi=110)
    for label, (y, s) in curves.items():
        y = np.asarray(y).astype(int)
        if len(set(y.tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, lw=1.6, label=f"{label} (AUC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set_xlabel("1 - specificity")
    ax.set_ylabel("sensitivity")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=7)
    if note:
        fig.text(0.01, 0.005, note, fontsize=6, color="0.4")
    return _save(fig, path)


def bar_png(
    rows: Sequence[Mapping],
    group: str,
    series: str,
    value: str,
    path: str | os.PathLike,
    title: str,
    lo: str | None = None,
    hi: str | None = None,
) -> Path:
    """Grouped bars: x = distinct `group`, one bar per `series`, height `value`, optional CI whiskers."""
    groups = list(dict.fromkeys(r[group] for r in rows))
    names = list(dict.fromkeys(r[series] for r in rows))
    width = 0.8 / max(len(names), 1)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(groups) + 1.5), 3.6), dpi=110)
    for j, name in enumerate(names):
        xs, ys, err = [], [], [[], []]
        for i, g in enumerate(groups):
            for r in rows:
                if r[group] == g and r[series] == name and r.get(value) is not None:
                    v = float(r[value])
                    if np.isnan(v):
                        continue
                    xs.append(i + (j - (len(names) - 1) / 2) * width)
                    ys.append(v)
                    if lo and hi:
                        err[0].append(max(0.0, v - float(r[lo])) if r.get(lo) is not None else 0.0)
                        err[1].append(max(0.0, float(r[hi]) - v) if r.get(hi) is not None else 0.0)
        ax.bar(xs, ys, width=width * 0.95, label=str(name), yerr=np.nan_to_num(err) if lo and hi and xs else None, capsize=2)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([str(g) for g in groups], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(value)
    ax.set_title(title, fontsize=10)
    if len(names) > 1:
        ax.legend(fontsize=7, loc="lower right")
    fig.text(0.01, 0.005, "synthetic phantom data: not clinical evidence", fontsize=6, color="0.4")
    return _save(fig, path)


def _save(fig, path) -> Path:
    """Lay out, write (creating the folder) and close a figure."""
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
