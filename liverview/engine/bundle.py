"""Model bundles: manifest.json (plain data) + safetensors weights, each file checked by size and sha256.

Nothing is ever unpickled: a manifest that names a pickle-based weight file (.pt, .pth,
.pkl, ...) is refused before any byte of it is read, and weights are read from the very
bytes that were hashed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from liverview.engine.errors import BundleError
from liverview.findings.vocabulary import MODEL_CLASSES
from liverview.study.atomic import write_bytes_atomic, write_json_atomic
from liverview.study.phases import PHASES, WINDOWS

MANIFEST = "manifest.json"
TASK = "liver-tumor-two-stage"
MODEL_KEYS = ("detector", "stage1", "benign", "malignant")
CLASSES = {k: list(v) for k, v in MODEL_CLASSES.items()}  # lists: compared with the manifest's JSON arrays
INTENSITIES = ("HU", "windowed")
WEIGHT_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
RESEARCH_NOTICE = "Research use only; not for clinical decisions."


@dataclass
class Bundle:
    """A verified bundle: its manifest, the manifest's sha256, and the verified weight bytes."""

    folder: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    paths: dict[str, Path]
    _blobs: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    def model(self, key: str) -> dict[str, Any]:
        return self.manifest["models"][key]

    def state_dict(self, key: str) -> dict[str, torch.Tensor]:
        """The weights of model `key` (detector, stage1, benign, malignant) from the verified bytes."""
        filename = self.model(key)["file"]
        if filename not in self._blobs:
            raise BundleError(f"{self.folder / filename}: weights already released; load the bundle again")
        try:
            return _st_load(self._blobs[filename])
        except Exception as exc:  # safetensors raises its own error types
            raise BundleError(f"{self.folder / filename}: not a readable safetensors file ({exc})") from None

    def file_bytes(self, key: str) -> bytes:
        """The verified bytes of model `key`'s weight file."""
        filename = self.model(key)["file"]
        if filename not in self._blobs:
            raise BundleError(f"{self.folder / filename}: weights already released; load the bundle again")
        return self._blobs[filename]

    def release(self) -> None:
        """Drop the weight bytes once the networks are built (state_dict() is unavailable after)."""
        self._blobs.clear()

    def describe(self) -> dict[str, Any]:
        """Who produced a finding: name, version, manifest hash, folder, training data, notice."""
        m = self.manifest
        return {
            "name": self.name,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "folder": str(self.folder),
            "task": m.get("task"),
            "training_data": m.get("training_data"),
            "training_summary": training_summary(m.get("training_data")),
            "intended_use": m.get("intended_use"),
            "research_notice": m.get("research_notice"),
        }


def training_summary(data: Any) -> str:
    """One line a reader can take in: the manifest's training data, a free text or the training module's record."""
    if not data:
        return "not stated"
    if not isinstance(data, Mapping):
        return str(data)
    parts = [str(data.get("source") or "source not stated")]
    tv = data.get("train_validation")
    if isinstance(tv, Mapping):
        counts = tv.get("counts")
        n = sum(counts.values()) if isinstance(counts, Mapping) else tv.get("patients")
        what = f"{n} patients"
        if isinstance(counts, Mapping):
            what += " (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
        if tv.get("train_patients") is not None:
            what += f", {tv['train_patients']} train / {tv.get('validation_patients')} validation"
        parts.append(what)
    tests = data.get("test_cohorts")
    if isinstance(tests, Mapping) and tests:
        parts.append("tested on " + ", ".join(
            f"{name} ({sum(c['counts'].values()) if isinstance(c, Mapping) and isinstance(c.get('counts'), Mapping) else '?'})"
            for name, c in tests.items()))
    return "; ".join(parts)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tensors_for_file(state: Mapping[str, torch.Tensor], half: bool) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise BundleError(f"state dict entry {key!r} is not a tensor ({type(value).__name__})")
        t = value.detach().cpu()
        if half and t.is_floating_point():
            t = t.to(torch.float16)
        out[key] = t.contiguous().clone()  # own storage: safetensors refuses shared tensors
    return out


def write_bundle(
    folder: str | os.PathLike,
    manifest: dict[str, Any],
    weights: Mapping[str, Mapping[str, torch.Tensor] | bytes],
    half: bool = True,
) -> dict[str, Any]:
    """Write each weights[name] as <name>.safetensors (float16 where `half`; integer buffers as
    they are; bytes: an encoded file written as it is), record every file's sha256 and size, and
    write manifest.json atomically last.

    When manifest["models"] has an entry `name` without a "file", it is set to the file written.
    Returns the manifest as written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(json.dumps(manifest))  # plain data, and a copy
    manifest.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    manifest.setdefault("research_notice", RESEARCH_NOTICE)
    files = manifest.setdefault("files", {})
    models = manifest.get("models") or {}
    for name, state in weights.items():
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise BundleError(f"bad weight name {name!r}: use a plain file stem")
        filename = f"{name}{WEIGHT_SUFFIX}"
        if isinstance(state, (bytes, bytearray)):  # a file taken over as it is from a verified bundle
            data = bytes(state)
        else:
            # one metadata key: safetensors writes a map's keys in no fixed order, and equal weights must give equal bytes
            data = _st_save(_tensors_for_file(state, half), metadata={"format": "pt"})
        write_bytes_atomic(folder / filename, data)
        files[filename] = {"sha256": sha256_bytes(data), "size": len(data)}
        if isinstance(models.get(name), dict):
            models[name].setdefault("file", filename)
    validate_manifest(manifest, folder / MANIFEST)
    write_json_atomic(folder / MANIFEST, manifest)
    return manifest


def _fail(where: Path, field_name: str, why: str) -> BundleError:
    return BundleError(f"{where}: {field_name}: {why}")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _prob(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= float(value) <= 1.0


def validate_manifest(m: Any, where: Path) -> None:
    """Raise BundleError naming the first manifest field that is missing or wrong."""
    if not isinstance(m, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object")
    for key in ("name", "version", "task", "phase_order", "windows", "intensity", "models", "files"):
        if key not in m:
            raise _fail(where, key, "missing")
    if m["task"] != TASK:
        raise _fail(where, "task", f"expected {TASK!r}, got {m['task']!r}")
    if list(m["phase_order"]) != list(PHASES):
        raise _fail(where, "phase_order", f"expected {list(PHASES)}, got {m['phase_order']!r}")
    if m["intensity"] not in INTENSITIES:
        raise _fail(where, "intensity", f"expected one of {list(INTENSITIES)}, got {m['intensity']!r}")
    windows = m["windows"]
    if not isinstance(windows, dict) or set(windows) != set(PHASES):
        raise _fail(where, "windows", f"expected [level, width] for each of {list(PHASES)}")
    for p, lw in windows.items():
        if not (isinstance(lw, (list, tuple)) and len(lw) == 2 and float(lw[1]) > 0):
            raise _fail(where, f"windows.{p}", f"expected [level, width > 0], got {lw!r}")
    files = m["files"]
    if not isinstance(files, dict):
        raise _fail(where, "files", "expected an object {filename: {sha256, size}}")
    models = m["models"]
    if not isinstance(models, dict):
        raise _fail(where, "models", "expected an object")
    for key in MODEL_KEYS:
        entry = models.get(key)
        if not isinstance(entry, dict):
            raise _fail(where, f"models.{key}", "missing")
        if "file" not in entry:
            raise _fail(where, f"models.{key}.file", "missing")
        if entry["file"] not in files:
            raise _fail(where, f"models.{key}.file", f"{entry['file']!r} is not listed in files")
        if not _positive_int(entry.get("input_size")):
            raise _fail(where, f"models.{key}.input_size", f"expected a positive integer, got {entry.get('input_size')!r}")
    det = models["detector"]
    if not str(det.get("arch", "")).startswith("yolov8"):
        raise _fail(where, "models.detector.arch", f"expected yolov8n/s/m/l/x, got {det.get('arch')!r}")
    if det.get("channels") != len(PHASES):
        raise _fail(where, "models.detector.channels", f"expected {len(PHASES)}, got {det.get('channels')!r}")
    if det["input_size"] % 32:
        raise _fail(where, "models.detector.input_size", f"must be a multiple of 32 (YOLOv8 stride), got {det['input_size']}")
    for k in ("conf", "iou"):
        if not _prob(det.get(k)):
            raise _fail(where, f"models.detector.{k}", f"expected a number in [0, 1], got {det.get(k)!r}")
    from liverview.engine.networks import BACKBONES  # torchvision only when a manifest is checked

    for key, classes in CLASSES.items():
        entry = models[key]
        if entry.get("backbone") not in BACKBONES:
            raise _fail(where, f"models.{key}.backbone", f"expected one of {list(BACKBONES)}, got {entry.get('backbone')!r}")
        if list(entry.get("classes") or []) != classes:
            raise _fail(where, f"models.{key}.classes", f"expected {classes}, got {entry.get('classes')!r}")
        norm = entry.get("normalisation")
        if not (
            isinstance(norm, dict)
            and len(norm.get("mean") or []) == len(PHASES)
            and len(norm.get("std") or []) == len(PHASES)
            and all(float(s) > 0 for s in norm["std"])
        ):
            raise _fail(where, f"models.{key}.normalisation", "expected {mean: [4 numbers], std: [4 positive numbers]}")
        margin = entry.get("roi_margin")
        if not (isinstance(margin, (int, float)) and not isinstance(margin, bool) and margin >= 0):
            raise _fail(where, f"models.{key}.roi_margin", f"expected a number >= 0, got {margin!r}")
        if not isinstance(entry.get("cam_target_layer"), str):
            raise _fail(where, f"models.{key}.cam_target_layer", "expected a module name")
        if not isinstance(entry.get("arch_args", {}), dict):
            raise _fail(where, f"models.{key}.arch_args", "expected an object")
    if not _prob(models["stage1"].get("threshold")):
        raise _fail(where, "models.stage1.threshold", f"expected a number in [0, 1], got {models['stage1'].get('threshold')!r}")


def _check_filename(folder: Path, filename: str) -> Path:
    pure = PurePosixPath(filename)
    if pure.is_absolute() or len(pure.parts) != 1 or filename in (".", "..") or "\\" in filename:
        raise BundleError(f"{folder / MANIFEST}: files: {filename!r} must be a plain file name inside the bundle")
    suffix = pure.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise BundleError(
            f"{folder / filename}: refused: {suffix} weight files are Python pickles that can run code "
            f"when loaded; bundles carry {WEIGHT_SUFFIX} weights only (the file was not read)"
        )
    if suffix != WEIGHT_SUFFIX:
        raise BundleError(f"{folder / filename}: refused: weight files must be {WEIGHT_SUFFIX}, not {suffix or 'no suffix'}")
    return folder / filename


def load_bundle(folder: str | os.PathLike) -> Bundle:
    """Read manifest.json, check it, and verify every listed file's size and sha256.

    Raises BundleError naming the folder or file: missing bundle, unreadable or invalid
    manifest, pickle-based weights (refused unread), size or sha256 mismatch (both hashes).
    """
    folder = Path(folder)
    mpath = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"{folder}: no model bundle folder here")
    try:
        raw = mpath.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{mpath}: missing; a bundle folder holds manifest.json and its weight files") from None
    except OSError as exc:
        raise BundleError(f"{mpath}: cannot be read ({exc.strerror or exc})") from None
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{mpath}: not valid JSON ({exc})") from None
    if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
        for filename in manifest["files"]:  # refuse pickles before anything else is looked at
            _check_filename(folder, str(filename))
    validate_manifest(manifest, mpath)
    paths, blobs = {}, {}
    for filename, meta in manifest["files"].items():
        path = _check_filename(folder, filename)
        if not isinstance(meta, dict) or "sha256" not in meta or "size" not in meta:
            raise BundleError(f"{mpath}: files.{filename}: expected {{sha256, size}}")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BundleError(f"{path}: listed in the manifest but missing") from None
        except OSError as exc:
            raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        digest = sha256_bytes(data)
        if len(data) != meta["size"] or digest != meta["sha256"]:
            raise BundleError(
                f"{path}: checksum mismatch, refusing the bundle: manifest says sha256 {meta['sha256']} "
                f"({meta['size']} bytes), file has sha256 {digest} ({len(data)} bytes)"
            )
        paths[filename] = path
        blobs[filename] = data
    return Bundle(folder, manifest, sha256_bytes(raw), paths, blobs)


def default_windows() -> dict[str, list[float]]:
    return {p: [float(WINDOWS[p][0]), float(WINDOWS[p][1])] for p in PHASES}


def classifier_entry(
    key: str,
    backbone: str,
    input_size: int,
    arch_args: dict | None = None,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    roi_margin: float = 0.15,
    threshold: float | None = None,
) -> dict[str, Any]:
    """A manifest models.<key> entry for a classifier built with networks.build_classifier."""
    from liverview.engine.networks import build_classifier, cam_target_layer_name, resolved_arch_args

    args = resolved_arch_args(backbone, arch_args)
    model = build_classifier(backbone, 2, len(PHASES), input_size, args)
    entry = {
        "backbone": backbone,
        "arch_args": args,
        "classes": list(CLASSES[key]),
        "input_size": int(input_size),
        "normalisation": {"mean": list(mean or [0.5] * 4), "std": list(std or [0.25] * 4)},
        "roi_margin": float(roi_margin),
        "cam_target_layer": cam_target_layer_name(backbone, model),
    }
    if key == "stage1":
        entry["threshold"] = 0.5 if threshold is None else float(threshold)
    return entry


def make_random_bundle(
    folder: str | os.PathLike,
    backbone: str = "resnet18",
    input_size: int = 64,
    det_input_size: int = 64,
    seed: int = 0,
    det_arch: str = "yolov8n",
    arch_args: dict | None = None,
    conf: float = 0.001,
    iou: float = 0.7,
    name: str = "random-untrained",
    half: bool = True,
) -> dict[str, Any]:
    """A bundle of randomly initialised networks, written through the same `write_bundle` path.

    For tests and benchmarks: its outputs carry no meaning. `conf` defaults low because an
    untrained detector scores everything near zero and tests need boxes to flow through.
    """
    from liverview.engine.networks import build_classifier
    from liverview.engine.yolo import build_detector

    torch.manual_seed(seed)
    weights = {"detector": build_detector(det_arch[-1], len(PHASES), 1).state_dict()}
    models: dict[str, Any] = {
        "detector": {
            "arch": det_arch,
            "channels": len(PHASES),
            "nc": 1,
            "classes": ["tumor"],
            "input_size": int(det_input_size),
            "conf": float(conf),
            "iou": float(iou),
        }
    }
    for key in CLASSES:
        entry = classifier_entry(key, backbone, input_size, arch_args)
        weights[key] = build_classifier(backbone, 2, len(PHASES), input_size, entry["arch_args"]).state_dict()
        models[key] = entry
    manifest = {
        "name": name,
        "version": f"0.0.0+seed{seed}",
        "task": TASK,
        "phase_order": list(PHASES),
        "windows": default_windows(),
        "intensity": "HU",
        "intended_use": "software tests and benchmarks only",
        "training_data": "none: randomly initialised weights",
        "research_notice": RESEARCH_NOTICE + " Untrained random weights: outputs carry no meaning.",
        "metrics": {"cohort": "none", "note": "untrained"},
        "models": models,
    }
    return write_bundle(folder, manifest, weights, half=half)
