"""`python -m training export --detector D --stage1 S --benign B --malignant M --out BUNDLE`: runs -> engine bundle."""

from __future__ import annotations

import json
from pathlib import Path

from training.bundle_export import classifier_manifest_entry, detector_entry, export_bundle
from training.checkpoint import load_weights
from training.commands.common import log


def configure(p) -> None:
    p.add_argument("--detector", required=True, help="train-detector run folder")
    for key in ("stage1", "benign", "malignant"):
        p.add_argument(f"--{key}", required=True, help=f"train-classifier run folder of the {key} task")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--name", default="liverview-custom")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--training-data", default="see the run folders", help="one line on the data the models saw")
    p.add_argument("--conf", type=float, default=None, help="detector confidence for the engine (default: the run's)")
    p.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")


def _read(folder: Path, name: str) -> dict:
    path = folder / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing (is {folder} a finished run folder?)") from None


def run(args) -> int:
    det_dir = Path(args.detector)
    det_cfg = _read(det_dir, "detector_train.json")["config"]
    det = (load_weights(det_dir / "detector.safetensors"),
           detector_entry(det_cfg["scale"], det_cfg["imgsz"], args.conf if args.conf is not None else det_cfg["conf"], det_cfg["iou"]))
    classifiers = {}
    for key in ("stage1", "benign", "malignant"):
        folder = Path(getattr(args, key))
        summary = _read(folder, "summary.json")
        if summary["task"] != key:
            raise ValueError(f"{folder}: is a {summary['task']!r} run, not {key!r}")
        classifiers[key] = (load_weights(folder / "best.safetensors"), classifier_manifest_entry(key, summary))
    manifest = export_bundle(args.out, args.name, args.version, det, classifiers, args.training_data,
                             {"note": "not evaluated; run `python -m training evaluate`"}, half=not args.float32)
    log(f"wrote bundle {args.out} ({len(manifest['files'])} weight files)")
    return 0
