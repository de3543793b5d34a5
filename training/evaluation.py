"""Evaluate a model bundle on a cohort: detection at IoU 0.40, each classifier at exam level, the two-stage call.

Test protocol (docs/method.md, section 4): only the K depth-consistent composites of each exam, their
predictions averaged per exam. Classifiers are scored twice: on crops around the annotated
(truth) boxes, as the paper reports them, and end to end on the detector's top box with the
engine's rule (the top detection, else the whole image).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from liverview.engine.bundle import load_bundle
from liverview.engine.diagnosis import load_classifier
from liverview.engine.roi import classifier_input
from liverview.findings.vocabulary import CLASSES_OF
from liverview.study.phases import PHASES

from training.cohort import Cohort
from training.detection_metrics import detection_metrics
from training.metrics import evaluate, exam_average, format_metric
from training.pkcp import composite, expand
from training.plots import roc_png
from training.tasks import CLASSES, TASKS

CLASSIFIER_KEYS = ("stage1", "benign", "malignant")


def load_models(folder: str | Path):
    """(bundle, detector, {key: engine Classifier}) from a verified bundle."""
    from training.ultra import detector_from_state

    bundle = load_bundle(folder)
    det = bundle.model("detector")
    detector = detector_from_state(det.get("yaml") or det["arch"], bundle.state_dict("detector"), int(det["channels"]), int(det.get("nc", 1)))
    return bundle, detector, {k: load_classifier(bundle, k) for k in CLASSIFIER_KEYS}


@torch.no_grad()
def _probs(clf, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    out = []
    for s in range(0, len(x), batch):
        out.append(torch.softmax(clf.net(clf.normalise(x[s : s + batch])).float(), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 2))


def run_bundle(folder: str | Path, cohort: Cohort, phases: Sequence[str] = PHASES, chunk: int = 48) -> dict:
    """Every prediction the evaluation needs, per depth-consistent composite of every exam."""
    from training.ultra import detect

    bundle, detector, clfs = load_models(folder)
    det = bundle.model("detector")
    refs = expand(cohort, "flat", phases=phases)
    preds, truths = [], []
    probs = {k: {"truth": [], "detected": []} for k in clfs}
    for s in range(0, len(refs), chunk):
        part = refs[s : s + chunk]
        built = [composite(cohort, r, phases) for r in part]
        images = [b[0] for b in built]
        found = detect(detector, images, int(det["input_size"]), 0.001, float(det["iou"]), 10)
        preds += found
        truths += [np.asarray([b[1]]) if b[1] is not None else np.zeros((0, 4)) for b in built]
        conf = float(det["conf"])
        top = [f[0, :4].tolist() if len(f) and f[0, 4] >= conf else None for f in found]
        for key, clf in clfs.items():
            for kind, boxes in (("truth", [b[1] for b in built]), ("detected", top)):
                x = torch.stack([classifier_input(im, bx, clf.margin, clf.input_size)[0] for im, bx in zip(images, boxes)])
                probs[key][kind].append(_probs(clf, x))
    return {
        "bundle": bundle,
        "refs": refs,
        "exams": [cohort.patient_ids[r.exam] for r in refs],
        "classes": [cohort.classes[r.exam] for r in refs],
        "members": {cohort.patient_ids[i]: cohort.members[i] or cohort.classes[i] for i in range(len(cohort))},
        "preds": preds,
        "truths": truths,
        "probs": {k: {kind: np.concatenate(v) for kind, v in d.items()} for k, d in probs.items()},
        "conf": float(det["conf"]),
    }


def _task_eval(run: dict, key: str, kind: str, n_boot: int, seed: int, threshold: float = 0.5):
    tk = TASKS[key]
    keep = [i for i, c in enumerate(run["classes"]) if tk.label(c) is not None]
    if not keep:
        return None
    ids, avg, labels = exam_average(
        [run["exams"][i] for i in keep], run["probs"][key][kind][keep], [tk.label(run["classes"][i]) for i in keep]
    )
    return {"exams": len(ids), "labels": labels, "scores": avg[:, 1], "metrics": evaluate(labels, avg, threshold, n_boot, seed)}


def two_stage(run: dict, threshold: float = 0.5) -> dict:
    """The engine's exam-level decision on detected boxes: stage 1 mean, then the chosen branch's mean."""
    ids, pred = _two_stage_calls(run, threshold)
    truth = dict(zip(run["exams"], run["classes"]))
    y = [truth[e] for e in ids]
    cm = [[sum(1 for t, p in zip(y, pred) if t == a and p == b) for b in CLASSES] for a in CLASSES]
    return {
        "exams": len(ids),
        "accuracy": float(np.mean([a == b for a, b in zip(y, pred)])) if ids else float("nan"),
        "classes": list(CLASSES),
        "confusion": cm,
        "note": "rows: truth, columns: two-stage call on detected boxes",
    }


def per_member(run: dict, threshold: float = 0.5) -> list[dict]:
    """Per lesion type (phantom member): exams, mean stage-1 P(malignant) and how often stage 1
    (annotated boxes) and the two-stage call (detected boxes) are right."""
    ids, p1 = exam_average(run["exams"], run["probs"]["stage1"]["truth"])
    truth = dict(zip(run["exams"], run["classes"]))
    calls = dict(zip(*_two_stage_calls(run, threshold)))
    rows = []
    for member in sorted(set(run["members"].values())):
        sel = [i for i, e in enumerate(ids) if run["members"][e] == member]
        if not sel:
            continue
        malignant = [TASKS["stage1"].label(truth[ids[i]]) == 1 for i in sel]
        right1 = [(p1[i, 1] >= threshold) == m for i, m in zip(sel, malignant)]
        rows.append({"member": member, "class": truth[ids[sel[0]]], "exams": len(sel),
                     "mean_p_malignant": float(np.mean(p1[sel, 1])), "stage1_correct": float(np.mean(right1)),
                     "two_stage_correct": float(np.mean([calls[ids[i]] == truth[ids[i]] for i in sel]))})
    return rows


def _two_stage_calls(run: dict, threshold: float) -> tuple[list, list]:
    s1 = run["probs"]["stage1"]["detected"]
    ids, p1 = exam_average(run["exams"], s1)
    calls = {}
    for branch, names in CLASSES_OF.items():
        _, p2 = exam_average(run["exams"], run["probs"][branch]["detected"])
        for e, a, b in zip(ids, p1[:, 1], p2[:, 1]):
            if (a >= threshold) == (branch == "malignant"):
                calls[e] = names[int(b >= 0.5)]
    return ids, [calls[e] for e in ids]


def evaluate_bundle(
    folder: str | Path,
    cohort: Cohort,
    out_dir: str | Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    name: str = "test",
) -> dict:
    """Metrics of a bundle on a cohort (JSON-ready); with `out_dir`, also metrics.json, metrics.md and ROC PNGs."""
    run = run_bundle(folder, cohort)
    det = detection_metrics([(p[:, :4], p[:, 4]) for p in run["preds"]], run["truths"], 0.40)
    result: dict = {
        "cohort": {"name": name, "patients": len(cohort), "counts": cohort.counts(), "composites": len(run["refs"]),
                   "protocol": "K=3 depth-consistent composites per exam, predictions averaged per exam"},
        "detection": det,
        "classifiers": {},
    }
    curves = {}
    threshold = float(run["bundle"].model("stage1").get("threshold", 0.5))
    for key in CLASSIFIER_KEYS:
        entry = {}
        for kind in ("truth", "detected"):
            ev = _task_eval(run, key, kind, n_boot, seed, threshold if key == "stage1" else 0.5)
            if ev is None:
                continue
            entry[f"{kind}_boxes"] = {"exams": ev["exams"], **ev["metrics"]}
            if kind == "truth":
                curves[key] = (ev["labels"], ev["scores"])
        result["classifiers"][key] = entry
    result["two_stage"] = two_stage(run, threshold)
    result["per_member"] = per_member(run, threshold)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
        (out / "metrics.md").write_text(markdown(result), encoding="utf-8")
        for key, (y, s) in curves.items():
            roc_png({f"{key} ({TASKS[key].description.split(':')[0]})": (y, s)}, out / f"roc_{key}.png",
                    f"{name}: {TASKS[key].description}")
    return result


def markdown(result: dict) -> str:
    c = result["cohort"]
    d = result["detection"]
    lines = [
        f"## {c['name']}: {c['patients']} patients {c['counts']}",
        "",
        "Metrics on the synthetic phantom; not clinical evidence. 95% CI: t-interval (paper) | patient bootstrap.",
        "",
        f"Detection at IoU {d['iou']:.2f} on {d['images']} composites: mAP {d['map']:.3f}, precision "
        f"{d['precision']:.3f}, recall {d['recall']:.3f}, F1 {d['f1']:.3f}",
        "",
        "| task | boxes | exams | AUC | accuracy | sensitivity | specificity | F1 | AUC bootstrap CI |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in result["classifiers"].items():
        for kind, m in entry.items():
            b = m["auc"]["ci_bootstrap"]
            boot = "n/a" if any(math.isnan(v) for v in b) else f"{b[0]:.3f}-{b[1]:.3f}"
            lines.append(
                f"| {key} | {kind.split('_')[0]} | {m['exams']} | {format_metric(m['auc'])} | {format_metric(m['accuracy'])} | "
                f"{format_metric(m['sensitivity'])} | {format_metric(m['specificity'])} | {format_metric(m['f1'])} | {boot} |"
            )
    t = result.get("two_stage")
    if t:
        lines += ["", f"Two-stage call on detected boxes: accuracy {t['accuracy']:.3f} over {t['exams']} exams", "",
                  "| truth \\ call | " + " | ".join(t["classes"]) + " |", "|---" * (len(t["classes"]) + 1) + "|"]
        for name, row in zip(t["classes"], t["confusion"]):
            lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    rows = result.get("per_member")
    if rows:
        lines += ["", "| lesion type | class | exams | mean P(malignant) | stage 1 right | two-stage right |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['member']} | {r['class']} | {r['exams']} | {r['mean_p_malignant']:.3f} | "
                  f"{r['stage1_correct']:.2f} | {r['two_stage_correct']:.2f} |" for r in rows]
    return "\n".join(lines) + "\n"
