"""The paper's ablations, each one function returning table rows (written as markdown, CSV and a PNG).

- augmentation: none / traditional / PKCP-MixUp x ResNet18 / DenseNet121 / ViT, stage 1. Every arm
  gets the same number of training samples per epoch (the PKCP set's size; the smaller sets are
  resampled), so PKCP-MixUp is not credited for merely taking more gradient steps.
- phases: PAVD, AVD, PVD, PAD, PAV (dropped phases are zero channels) for stage 1, benign and
  malignant subtypes.
- onestep: a one-step 4-class model against the two-stage cascade (stage 1, then the subtype
  model of the predicted group), both scored on the four classes.
- detection: single-phase single-slice, 3-phase (AVD) composites, 4-phase PKCP with and without
  class-rebalance; mAP / precision / recall / F1 at IoU 0.40.
Classifier metrics are exam-level on the test cohort's depth-consistent composites with the
annotated boxes, with the paper's t-interval and the patient bootstrap.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from training.classifier import ClassifierConfig, crop_set, load_model, predict
from training.cohort import Cohort
from training.detector import DetectorConfig
from training.metrics import evaluate, exam_average
from training.pkcp import expand
from training.plots import bar_png
from training.runs import classifier_run, classifier_test, detector_run, detector_test
from training.tasks import CLASSES, task as get_task

ABLATIONS = ("augmentation", "phases", "onestep", "detection")
PHASE_SETS = ("PAVD", "AVD", "PVD", "PAD", "PAV")
Log = Callable[[str], None]


@dataclasses.dataclass
class Data:
    train: Cohort
    val: Cohort
    test: Cohort
    test_name: str


def _metric_cols(m: dict, prefix: str = "") -> dict:
    row = {}
    for name in ("auc", "accuracy", "sensitivity", "specificity", "f1"):
        v = m[name]
        row[prefix + name] = v["value"]
        if name == "auc":
            row[prefix + "auc_ci_t_lo"], row[prefix + "auc_ci_t_hi"] = v["ci_t"]
            row[prefix + "auc_ci_boot_lo"], row[prefix + "auc_ci_boot_hi"] = v["ci_bootstrap"]
    return row


def _train_eval(data: Data, cfg: ClassifierConfig, out: Path, n_boot: int, log: Log) -> dict:
    state, summary = classifier_run(data.train, data.val, cfg, out, log=log)
    res = classifier_test(state, summary, data.test, n_boot)
    return {"exams": res["exams"], "train_composites": summary["train_composites"], "seconds": summary["seconds"],
            **_metric_cols(res["metrics"])}


def augmentation(data: Data, base: ClassifierConfig, out: Path, n_boot: int, log: Log,
                 backbones: Sequence[str] = ("resnet18", "densenet121", "vit"), task: str = "stage1") -> list[dict]:
    tk = get_task(task)
    exams = [i for i in range(len(data.train)) if tk.label(data.train.classes[i]) is not None]
    # every arm sees the same samples per epoch: the base config's, else one PKCP pass
    steps = base.samples_per_epoch or len(expand(data.train, "pkcp", exams=exams))
    rows = []
    for backbone in backbones:
        for arm in ("none", "traditional", "pkcp-mixup"):
            cfg = dataclasses.replace(base, task=task, backbone=backbone, augmentation=arm, samples_per_epoch=steps)
            log(f"ablation augmentation ({task}): {backbone} / {arm}")
            rows.append({"task": task, "backbone": backbone, "augmentation": arm,
                         **_train_eval(data, cfg, out / (f"{backbone}_{arm}" if task == "stage1" else f"{task}_{backbone}_{arm}"), n_boot, log)})
    return rows


def phases(data: Data, base: ClassifierConfig, out: Path, n_boot: int, log: Log,
           tasks: Sequence[str] = ("stage1", "benign", "malignant")) -> list[dict]:
    rows = []
    for t in tasks:
        for ps in PHASE_SETS:
            cfg = dataclasses.replace(base, task=t, phases=tuple(p for p in "PAVD" if p in ps))
            log(f"ablation phases: {t} / {ps}")
            rows.append({"task": t, "phases": ps, **_train_eval(data, cfg, out / f"{t}_{ps}", n_boot, log)})
    return rows


def _probs_on(state, summary, cohort: Cohort) -> tuple[list[str], np.ndarray]:
    cfg = ClassifierConfig(**{**summary["config"], "phases": tuple(summary["config"]["phases"])})
    tk = get_task(cfg.task)
    # every exam, whatever its class: the cascade applies each model to all exams
    from training.tasks import Task

    everyone = Task(tk.name, tk.classes, {c: 0 for c in CLASSES}, tk.description)
    d = crop_set(cohort, everyone, "flat", cfg.input_size, cfg.roi_margin, cfg.phases)
    p = predict(load_model(cfg, state, tk.num_classes), d.x, summary["normalisation"]["mean"], summary["normalisation"]["std"])
    ids, avg = exam_average(d.exams, p)
    return ids, avg


def onestep(data: Data, base: ClassifierConfig, out: Path, n_boot: int, log: Log) -> list[dict]:
    runs = {}
    for t in ("onestep", "stage1", "benign", "malignant"):
        cfg = dataclasses.replace(base, task=t)
        log(f"ablation onestep: training {t}")
        runs[t] = classifier_run(data.train, data.val, cfg, out / t, log=log)
    probs = {t: _probs_on(s, summ, data.test) for t, (s, summ) in runs.items()}
    ids = probs["onestep"][0]
    y = np.array([CLASSES.index(data.test.classes[data.test.index(e)]) for e in ids])
    one = probs["onestep"][1]
    pm = probs["stage1"][1][:, 1]
    b, m = probs["benign"][1], probs["malignant"][1]
    # the cascade's four-class probabilities: P(group) x P(subtype | group)
    two = np.stack([(1 - pm) * b[:, 0], (1 - pm) * b[:, 1], pm * m[:, 0], pm * m[:, 1]], axis=1)
    rows = []
    for name, p in (("one-step 4-class", one), ("two-step cascade", two)):
        ev = evaluate(y, p, n_boot=n_boot)
        rows.append({"model": name, "exams": len(ids), "macro_" + "auc": ev["auc"]["value"],
                     "auc_ci_t_lo": ev["auc"]["ci_t"][0], "auc_ci_t_hi": ev["auc"]["ci_t"][1],
                     "auc_ci_boot_lo": ev["auc"]["ci_bootstrap"][0], "auc_ci_boot_hi": ev["auc"]["ci_bootstrap"][1],
                     "accuracy": ev["accuracy"]["value"], "macro_f1": ev["f1"]["value"],
                     "macro_sensitivity": ev["sensitivity"]["value"], "macro_specificity": ev["specificity"]["value"]})
    return rows


DETECTION_CONFIGS = {
    "single-phase single-slice": {"expansion": "slices"},
    "3-phase (AVD) PKCP, no rebalance": {"expansion": "flat", "phases": ("A", "V", "D")},
    "4-phase PKCP, with rebalance": {"expansion": "pkcp"},
    "4-phase PKCP, no rebalance": {"expansion": "flat"},
}


def detection(data: Data, base: DetectorConfig, out: Path, log: Log) -> list[dict]:
    rows = []
    for j, (name, over) in enumerate(DETECTION_CONFIGS.items()):
        cfg = dataclasses.replace(base, **over)
        log(f"ablation detection: {name}")
        state, summary = detector_run(data.train, data.val, cfg, out / f"config{j}")
        m = detector_test(state, cfg, data.test)
        rows.append({"configuration": name, "train_images": _count_images(out / f"config{j}"), "test_images": m["images"],
                     "map": m["map"], "precision": m["precision"], "recall": m["recall"], "f1": m["f1"],
                     "seconds": summary["seconds"]})
    return rows


def _count_images(run_dir: Path) -> int:
    return len(list((run_dir / "dataset" / "images" / "train").glob("*.tif")))


# ---- output --------------------------------------------------------------------------------------
def _fmt(v) -> str:
    if isinstance(v, float):
        return "n/a" if math.isnan(v) else f"{v:.3f}"
    return str(v)


def to_markdown(rows: list[dict], title: str, note: str = "") -> str:
    if not rows:
        return f"## {title}\n\n(no rows)\n"
    cols = list(rows[0])
    lines = [f"## {title}", ""]
    if note:
        lines += [note, ""]
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_tables(rows: list[dict], out: Path, which: str, title: str, note: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{which}.md").write_text(to_markdown(rows, title, note), encoding="utf-8")
    (out / f"{which}.csv").write_text(to_csv(rows), encoding="utf-8")
    if which.startswith("augmentation"):
        task = rows[0].get("task", "stage1") if rows else "stage1"
        bar_png(rows, "backbone", "augmentation", "auc", out / f"{which}.png", f"{task} AUC by augmentation",
                "auc_ci_t_lo", "auc_ci_t_hi")
    elif which == "phases":
        bar_png(rows, "task", "phases", "auc", out / f"{which}.png", "AUC by phase subset", "auc_ci_t_lo", "auc_ci_t_hi")
    elif which == "onestep":
        bar_png(rows, "model", "model", "macro_auc", out / f"{which}.png", "one-step vs two-step (4 classes)",
                "auc_ci_t_lo", "auc_ci_t_hi")
    elif which == "detection":
        bar_png(rows, "configuration", "configuration", "map", out / f"{which}.png", "detection mAP at IoU 0.40")
