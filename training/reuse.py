"""Models of an earlier bundle that build-weights takes over when the recipe left them unchanged.

A new bundle should differ from the last one only where its recipe changed (the weights live
in git). A model is taken over only when every training setting its manifest entry records
equals the recipe's and, since 1.2.0, it was fitted on the same cohorts; manifests written since
1.1.0 record the whole configuration, older ones a subset, and what an old entry does not record
is listed as unchecked.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any, NamedTuple

import torch

from liverview.phantom import parse_mix

from training.classifier import ClassifierConfig
from training.detector import DetectorConfig


class Taken(NamedTuple):
    """A model build-weights takes over: its weights, a training summary, what could not be checked, and its file."""

    state: dict[str, torch.Tensor]  # float32
    summary: dict
    unchecked: list[str]
    dtype: str | None  # the earlier bundle's weights_dtype
    file: bytes  # the verified weight file as it is


class ReuseError(ValueError):
    """The earlier bundle's model was trained with other settings than the recipe asks for."""


# manifest entry field -> config field, for entries written before the whole config was recorded
_CLASSIFIER_RECORDED = {"backbone": "backbone", "input_size": "input_size", "roi_margin": "roi_margin"}
_CLASSIFIER_TRAINING = ("augmentation", "rebalance", "epochs", "lr", "schedule", "batch_size", "weight_decay")
_DETECTOR_RECORDED = {"input_size": "imgsz", "conf": "conf", "iou": "iou"}
_IGNORED = {"device"}  # where a model was trained does not change what it is
# settings added to the code together with whole-config records: a bundle that records only part of its
# settings was trained by code without them, i.e. with their defaults
_NEWER_THAN_PARTIAL_RECORDS = ("geometric",)


def config_doc(cfg: ClassifierConfig | DetectorConfig) -> dict[str, Any]:
    """The configuration as plain JSON data, without the settings that do not change the weights."""
    return {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items() if k not in _IGNORED}


def _compare(where: str, recorded: dict[str, Any], wanted: dict[str, Any]) -> None:
    diffs = [f"{k}: bundle {recorded[k]!r}, recipe {wanted[k]!r}" for k in recorded if k in wanted and recorded[k] != wanted[k]]
    if diffs:
        raise ReuseError(f"{where}: trained with other settings, retrain it ({'; '.join(diffs)})")


def _older_record(data: dict, manifest_data: dict | None) -> dict:
    """The training data of an entry written before entries recorded it (1.2.0).

    Every recipe before then fitted each model on the development cohort alone; the manifest's own
    `training_data` block says which cohort, grid and split that was; what it does not say (the fit
    mode, render arguments) is taken from the recipe.
    """
    old = {**data, "cohorts": data["cohorts"][:1]}
    tv = (manifest_data or {}).get("train_validation")
    if isinstance(tv, dict) and {"patients", "seed"} <= set(tv):
        mix = dict(parse_mix(dict(tv["mix"]) if tv.get("mix") else None))
        old["cohorts"] = [{"patients": tv["patients"], "seed": tv["seed"], "mix": mix, "member": None}]
    if manifest_data and "matrix" in manifest_data:
        old["matrix"] = manifest_data["matrix"]
    split = (manifest_data or {}).get("split")
    if "split" in old and isinstance(split, dict):
        old["split"] = {"seed": split.get("seed"), "validation_fraction": split.get("validation_fraction")}
    return old


def _check_data(where: str, training: dict, data: dict | None, manifest_data: dict | None = None) -> list[str]:
    """Compare the recorded training data with the recipe's; [] or ["training data"] when the entry does
    not record it (then it is read from the manifest's `training_data` block as far as that goes)."""
    if data is None:
        return []
    data = json.loads(json.dumps(data))  # tuples and lists compare as the manifest stores them
    recorded = training.get("data")
    if recorded is None:
        recorded = _older_record(data, manifest_data)
        unchecked = ["training data"]
    else:
        unchecked = []
    if recorded != data:
        def names(d):
            return ", ".join(f"{c['patients']} patients seed {c['seed']}" + (f" ({c['member']})" if c.get("member") else "")
                             for c in d.get("cohorts", []))
        diff = sorted(k for k in set(recorded) | set(data) if recorded.get(k) != data.get(k))
        raise ReuseError(f"{where}: trained on other data, retrain it (bundle: {names(recorded)}; recipe: "
                         f"{names(data)}; differs in {', '.join(diff)})")
    return unchecked


def classifier_from_bundle(bundle, key: str, cfg: ClassifierConfig,
                           data: dict | None = None) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """(float32 state, train_classifier-like summary, settings not checked) of `key` in `bundle`.

    `data` is the recipe's training data for the model (Recipe.training_data). Raises ReuseError
    naming the first differing settings or the differing data.
    """
    entry = bundle.model(key)
    training = entry.get("training") or {}
    wanted = config_doc(cfg)
    where = f"{bundle.folder}: {key}"
    data_unchecked = _check_data(where, training, data, bundle.manifest.get("training_data"))
    if isinstance(training.get("config"), dict):
        # a setting added to the code after the bundle was built had its default then
        recorded = {**config_doc(ClassifierConfig(task=key)), **training["config"]}
        _compare(where, {k: v for k, v in recorded.items() if k not in _IGNORED}, wanted)
        unchecked = []
    else:
        recorded = {cf: entry[mf] for mf, cf in _CLASSIFIER_RECORDED.items() if mf in entry}
        recorded.update({k: training[k] for k in _CLASSIFIER_TRAINING if k in training})
        if "arch_args" in entry and wanted.get("arch_args") is not None:
            recorded["arch_args"] = entry["arch_args"]
        recorded["task"] = key
        defaults = config_doc(ClassifierConfig(task=key))
        recorded.update({k: defaults[k] for k in _NEWER_THAN_PARTIAL_RECORDS})
        _compare(where, recorded, wanted)
        unchecked = sorted(k for k in wanted if k not in recorded and k != "arch_args")
    unchecked += data_unchecked
    state = {k: v.float() if v.is_floating_point() else v for k, v in bundle.state_dict(key).items()}
    summary = {
        "config": {**wanted, "device": cfg.device},
        "task": key,
        "classes": list(entry.get("classes") or []),
        "train_composites": training.get("train_composites"),
        "train_exams": training.get("train_exams"),
        "val_composites": 0,
        "val_exams": 0,
        "normalisation": dict(entry["normalisation"]),
        "arch_args": entry.get("arch_args"),
        "cam_target_layer": entry.get("cam_target_layer"),
        "best_epoch": training.get("best_epoch", cfg.epochs - 1),
        "seconds": training.get("seconds"),
        "history": [],
        "reused_from": reused_from(bundle),
    }
    return state, summary, unchecked


def detector_from_bundle(bundle, cfg: DetectorConfig,
                         data: dict | None = None) -> tuple[dict[str, torch.Tensor], dict, list[str]]:
    """(float32 state, detector summary, settings not checked) of the bundle's detector; `data` is the
    recipe's training data for it (Recipe.training_data("detector"))."""
    entry = bundle.model("detector")
    training = entry.get("training") or {}
    wanted = config_doc(cfg)
    where = f"{bundle.folder}: detector"
    data_unchecked = _check_data(where, training, data, bundle.manifest.get("training_data"))
    if isinstance(training.get("config"), dict):
        recorded = {**config_doc(DetectorConfig()), **training["config"]}
        _compare(where, {k: v for k, v in recorded.items() if k not in _IGNORED}, wanted)
        unchecked = []
    else:
        recorded = {cf: entry[mf] for mf, cf in _DETECTOR_RECORDED.items() if mf in entry}
        if "arch" in entry:
            recorded["scale"] = str(entry["arch"]).removeprefix("yolov8")
        _compare(where, recorded, wanted)
        unchecked = sorted(k for k in wanted if k not in recorded)
    unchecked += data_unchecked
    state = {k: v.float() if v.is_floating_point() else v for k, v in bundle.state_dict("detector").items()}
    summary = {"config": {**wanted, "device": cfg.device}, "best_epoch": training.get("best_epoch", cfg.epochs - 1),
               "seconds": training.get("seconds"), "device": training.get("device"), "reused_from": reused_from(bundle)}
    return state, summary, unchecked


def reused_from(bundle) -> dict[str, Any]:
    m = bundle.manifest
    return {"name": m.get("name"), "version": m.get("version"), "manifest_sha256": bundle.manifest_sha256}
