"""Model bundles: manifest.json (plain data, sealed by manifest.sha256) + safetensors weights, each checked by size and sha256.

A bundle is input like any other: the manifest is read with size and nesting caps and every
field is checked (liverview.engine.manifest) before anything is built from it. Nothing is ever
unpickled: a manifest that names a pickle-based weight file (.pt, .pth, .pkl, ...) is refused
before any byte of it is read; weight files must be regular files (no links, FIFOs or devices),
their size is compared before they are read, and weights come from the very bytes that were hashed.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load as _st_load
from safetensors.torch import save as _st_save

from liverview.engine import manifest as _m
from liverview.engine.errors import BundleError
from liverview.engine.manifest import (  # noqa: F401  (names callers take from here)
    CLASSES,
    INTENSITIES,
    MANIFEST,
    MODEL_KEYS,
    PICKLE_SUFFIXES,
    SEAL,
    TASK,
    WEIGHT_SUFFIX,
    seal_manifest,
)
from liverview.study.atomic import write_bytes_atomic
from liverview.study.phases import PHASES, WINDOWS

RESEARCH_NOTICE = "Research use only; not for clinical decisions."
UNSEALED_NOTE = f"manifest not sealed: the bundle has no {SEAL}, so a change to its manifest cannot be told"
MAX_PARAMETERS = 200_000_000  # per classifier; the largest the allowed arch_args build is ~110 M


@dataclass
class Bundle:
    """A verified bundle: its manifest, the manifest's sha256, and the verified weight bytes."""

    folder: Path
    manifest: dict[str, Any]
    manifest_sha256: str
    paths: dict[str, Path]
    _blobs: dict[str, bytes] = field(default_factory=dict, repr=False)
    sealed: bool = False  # manifest.sha256 present and matching (a bundle without one still loads, with a note)

    @property
    def name(self) -> str:
        return str(self.manifest["name"])

    @property
    def notes(self) -> list[str]:
        """What a reader should know about how far the bundle could be verified."""
        return [] if self.sealed else [UNSEALED_NOTE]

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
            "manifest_seal": f"{SEAL} verified" if self.sealed else UNSEALED_NOTE,
            "folder": str(self.folder),
            "task": m.get("task"),
            "training_data": m.get("training_data"),
            "training_summary": training_summary(m.get("training_data")),
            "intended_use": m.get("intended_use"),
            "research_notice": m.get("research_notice"),
        }


def _total(counts: Mapping) -> int | str:
    """The sum of a cohort's class counts; '?' where the manifest holds something else than counts."""
    values = list(counts.values())
    ok = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    return sum(values) if ok else "?"


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
        n = _total(counts) if isinstance(counts, Mapping) else tv.get("patients")
        what = f"{n} patients"
        if isinstance(counts, Mapping):
            what += " (" + ", ".join(f"{k} {v}" for k, v in counts.items()) + ")"
        if tv.get("train_patients") is not None:
            what += f", {tv['train_patients']} train / {tv.get('validation_patients')} validation"
        parts.append(what)
    tests = data.get("test_cohorts")
    if isinstance(tests, Mapping) and tests:
        parts.append("tested on " + ", ".join(
            f"{name} ({_total(c['counts']) if isinstance(c, Mapping) and isinstance(c.get('counts'), Mapping) else '?'})"
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
    Returns the manifest as written; manifest.sha256 beside it seals those bytes.
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
    raw = json.dumps(manifest, indent=2, sort_keys=False).encode("utf-8")
    # the seal first: an interrupted write leaves a seal the old manifest does not match (refused), never an unsealed new one
    write_bytes_atomic(folder / SEAL, _m.seal_text(raw).encode("ascii"))
    write_bytes_atomic(folder / MANIFEST, raw)
    return manifest


def check_networks(m: dict, where: Path) -> None:
    """What needs the networks to check: each cam_target_layer names a module of its network (built on
    torch's meta device: no memory), the network is of a sane size, and a detector description
    ("yaml") is the engine's own network for the named arch."""
    from liverview.engine.networks import build_classifier

    models = m["models"]
    for key in CLASSES:
        entry = models[key]
        try:
            with torch.device("meta"):
                net = build_classifier(entry["backbone"], 2, len(PHASES), entry["input_size"], entry.get("arch_args") or {})
        except (ValueError, TypeError, RuntimeError) as exc:
            raise _m._fail(where, f"models.{key}.arch_args", f"{entry['backbone']} cannot be built ({_m.show(str(exc), 120)[1:-1]})") from None
        n = sum(p.numel() for p in net.parameters())
        if n > MAX_PARAMETERS:
            raise _m._fail(where, f"models.{key}.arch_args", f"the network would have {n:,} parameters, more than {MAX_PARAMETERS:,}")
        layer = entry["cam_target_layer"]
        try:
            net.get_submodule(layer)
        except AttributeError:
            raise _m._fail(where, f"models.{key}.cam_target_layer", f"{layer!r} is not a module of the {entry['backbone']} network") from None
    det = models["detector"]
    if isinstance(det.get("yaml"), dict):
        from liverview.engine.yolo import described_arch

        try:
            described_arch(det["yaml"], det["arch"])
        except ValueError as exc:
            raise _m._fail(where, "models.detector.yaml", f"not the engine's {det['arch']} ({exc}); "
                           "detectors are built from the engine's own description only") from None


def validate_manifest(m: Any, where: Path) -> None:
    """Raise BundleError naming the first manifest field that is missing, of the wrong type or out of range."""
    _m.validate_manifest(m, where)
    check_networks(m, where)


def load_bundle(folder: str | os.PathLike) -> Bundle:
    """Read manifest.json (capped), check its seal and every field, then read and verify each listed file.

    Raises BundleError naming the folder, file or manifest field: missing bundle, unreadable,
    oversized, too deeply nested or invalid manifest, a manifest that does not match its seal,
    pickle-based weights (refused unread), links, FIFOs and devices (refused unread), size
    mismatch (before reading), sha256 mismatch (both hashes).
    """
    folder = Path(folder)
    mpath = folder / MANIFEST
    raw, manifest, sealed = _m.read_manifest(folder)
    if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
        for filename in manifest["files"]:  # refuse pickles before anything else is looked at
            _m.check_filename(folder, filename, mpath)
    validate_manifest(manifest, mpath)
    paths, blobs = {}, {}
    for filename, meta in manifest["files"].items():
        blobs[filename] = _m.read_weight(folder, filename, meta, mpath)
        paths[filename] = folder / filename
    return Bundle(folder, manifest, sha256_bytes(raw), paths, blobs, sealed=sealed)


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
