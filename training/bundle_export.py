"""Write trained weights as an engine model bundle (manifest + safetensors) through the engine's write_bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from liverview.engine.bundle import TASK, classifier_entry, default_windows, write_bundle
from liverview.study.phases import PHASES

PHANTOM_NOTICE = (
    "Research use only — trained on synthetic phantom data; metrics on the phantom are not clinical evidence."
)


def detector_entry(scale: str, input_size: int, conf: float, iou: float, summary: Mapping[str, Any] | None = None,
                   data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The models.detector entry; with a training summary, also how it was trained (the whole config) and,
    with `data`, on which cohorts."""
    entry: dict[str, Any] = {
        "arch": f"yolov8{scale}",
        "channels": len(PHASES),
        "nc": 1,
        "classes": ["tumor"],
        "input_size": int(input_size),
        "conf": float(conf),
        "iou": float(iou),
    }
    if summary is not None:
        entry["training"] = {
            "best_epoch": summary.get("best_epoch"),
            "seconds": summary.get("seconds"),
            "device": summary.get("device"),
            "config": {k: v for k, v in (summary.get("config") or {}).items() if k != "device"},
        }
        if data is not None:
            entry["training"]["data"] = dict(data)
        if summary.get("reused_from"):
            entry["training"]["reused_from"] = summary["reused_from"]
    return entry


def classifier_manifest_entry(key: str, summary: Mapping[str, Any], threshold: float | None = None,
                              data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The models.<key> entry from a train_classifier summary (backbone, input, normalisation, ROI margin);
    `data` describes the cohorts it was fitted on (a later build compares it before taking the model over)."""
    cfg = summary["config"]
    entry = classifier_entry(
        key,
        cfg["backbone"],
        int(cfg["input_size"]),
        summary.get("arch_args") or cfg.get("arch_args"),
        list(summary["normalisation"]["mean"]),
        list(summary["normalisation"]["std"]),
        float(cfg["roi_margin"]),
        threshold,
    )
    entry["training"] = {
        "augmentation": cfg["augmentation"],
        "rebalance": cfg["rebalance"],
        "epochs": cfg["epochs"],
        "best_epoch": summary.get("best_epoch"),
        "train_composites": summary.get("train_composites"),
        "train_exams": summary.get("train_exams"),
        "lr": cfg["lr"],
        "schedule": cfg["schedule"],
        "batch_size": cfg["batch_size"],
        "weight_decay": cfg["weight_decay"],
        "seconds": summary.get("seconds"),
        "config": {k: v for k, v in cfg.items() if k != "device"},  # all of it, so a later build can reuse the model
    }
    if data is not None:
        entry["training"]["data"] = dict(data)
    if summary.get("reused_from"):
        entry["training"]["reused_from"] = summary["reused_from"]
    return entry


def _weights(state):
    """A state dict, or the bytes of a weight file taken over from an earlier bundle."""
    return bytes(state) if isinstance(state, (bytes, bytearray)) else dict(state)


def export_bundle(
    folder: str | Path,
    name: str,
    version: str,
    detector: tuple[Mapping[str, torch.Tensor], dict[str, Any]],
    classifiers: Mapping[str, tuple[Mapping[str, torch.Tensor], dict[str, Any]]],
    training_data: Any,
    metrics: Any,
    intended_use: str = "research and software development; not for clinical decisions",
    notice: str = PHANTOM_NOTICE,
    half: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the bundle: weights {detector, stage1, benign, malignant} with their manifest entries."""
    models = {"detector": dict(detector[1])}
    weights = {"detector": _weights(detector[0])}
    for key in ("stage1", "benign", "malignant"):
        state, entry = classifiers[key]
        models[key] = dict(entry)
        weights[key] = _weights(state)
    manifest = {
        "name": name,
        "version": version,
        "task": TASK,
        "phase_order": list(PHASES),
        "windows": default_windows(),
        "intensity": "HU",
        "intended_use": intended_use,
        "training_data": training_data,
        "research_notice": notice,
        "metrics": metrics,
        "weights_dtype": "float16" if half else "float32",
        "models": models,
        **dict(extra or {}),
    }
    return write_bundle(folder, manifest, weights, half=half)
