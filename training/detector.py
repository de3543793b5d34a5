"""Detector training: a YOLO dataset of 4-channel composites, ultralytics training offline, best weights kept.

ultralytics reads a multi-page grayscale TIFF with cv2.IMREAD_UNCHANGED as one image whose
pages are the channels, in page order (ultralytics.utils.patches.imread). A single-page
RGB+extra TIFF would come back BGR-swapped (channels P and V exchanged), so composites are
written page per channel. The network is the engine's `build_detector` (the trainer's
`get_model` is overridden), so the state dict loads into the engine unchanged; it is taken
from the trainer's EMA in memory at the best validation epoch, never from ultralytics' .pt
pickles.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import tifffile
import torch

from liverview.study.phases import PHASES

from training.cohort import Cohort
from training.detection_metrics import detection_metrics
from training.pkcp import CompositeRef, composite, expand


@dataclass
class DetectorConfig:
    """Everything a detector run depends on; saved next to its weights."""

    scale: str = "n"  # YOLOv8 scale
    imgsz: int = 192
    epochs: int = 30
    batch: int = 16
    expansion: str = "flat"  # training composites: pkcp (rebalance) | flat (without rebalance) | slices
    phases: tuple[str, ...] = PHASES
    mixup: float = 0.6  # ultralytics' detection MixUp probability (the paper: 0.6)
    augment: str = "pkcp-mixup"  # pkcp-mixup | traditional | none
    lr0: float = 0.01
    optimizer: str = "SGD"
    patience: int = 50
    workers: int = 0
    device: str = "auto"
    seed: int = 0
    conf: float = 0.25  # engine default confidence recorded in the manifest
    iou: float = 0.6  # engine NMS IoU recorded in the manifest
    close_mosaic: int = 0
    mosaic: float = 0.0
    warmup_epochs: float = 3.0
    extra: dict = field(default_factory=dict)  # any further ultralytics train argument


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _yolo_line(box: tuple[float, float, float, float], w: int, h: int) -> str:
    x0, y0, x1, y1 = box
    x0, x1 = max(0.0, x0), min(float(w), x1)
    y0, y1 = max(0.0, y0), min(float(h), y1)
    return f"0 {(x0 + x1) / 2 / w:.6f} {(y0 + y1) / 2 / h:.6f} {(x1 - x0) / w:.6f} {(y1 - y0) / h:.6f}\n"


def write_tiff(path: Path, image: np.ndarray) -> None:
    """A (C, H, W) composite in [0, 1] as a C-page 8-bit grayscale TIFF (page i = channel i)."""
    tifffile.imwrite(path, np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8), photometric="minisblack")


def write_split(
    cohort: Cohort, refs: Sequence[CompositeRef], folder: Path, split: str, phases: Sequence[str] = PHASES
) -> int:
    """images/<split>/*.tif + labels/<split>/*.txt for the given composites; returns the count."""
    img_dir, lab_dir = folder / "images" / split, folder / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lab_dir.mkdir(parents=True, exist_ok=True)
    for j, ref in enumerate(refs):
        image, box, _ = composite(cohort, ref, phases)
        stem = f"{cohort.patient_ids[ref.exam]}_{''.join(map(str, ref.picks))}{ref.only or ''}_{j:05d}"
        write_tiff(img_dir / f"{stem}.tif", image)
        h, w = image.shape[-2:]
        (lab_dir / f"{stem}.txt").write_text(_yolo_line(box, w, h) if box is not None else "", encoding="utf-8")
    return len(refs)


def write_dataset(
    folder: str | Path,
    train: tuple[Cohort, Sequence[CompositeRef]],
    val: tuple[Cohort, Sequence[CompositeRef]],
    phases: Sequence[str] = PHASES,
) -> Path:
    """A YOLO detection dataset of 4-channel composites with its data YAML (`channels: 4`)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    n_train = write_split(*train, folder, "train", phases)
    n_val = write_split(*val, folder, "val", phases)
    yaml_path = folder / "data.yaml"
    yaml_path.write_text(
        f"# liverview composites: channels P, A, V, D; {n_train} train / {n_val} val images\n"
        f"path: {folder.resolve()}\ntrain: images/train\nval: images/val\n"
        f"channels: {len(PHASES)}\nnames:\n  0: tumor\n",
        encoding="utf-8",
    )
    return yaml_path


def _augment_args(cfg: DetectorConfig) -> dict:
    # HSV jitter is skipped by ultralytics for non-3-channel images anyway; set it to 0 to say so.
    base = {"hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.0, "mosaic": cfg.mosaic, "close_mosaic": cfg.close_mosaic}
    if cfg.augment == "none":
        return {**base, "mixup": 0.0, "fliplr": 0.0, "flipud": 0.0, "degrees": 0.0, "translate": 0.0, "scale": 0.0, "mosaic": 0.0}
    if cfg.augment == "traditional":
        return {**base, "mixup": 0.0, "fliplr": 0.5, "degrees": 15.0, "translate": 0.1, "scale": 0.2}
    if cfg.augment == "pkcp-mixup":
        return {**base, "mixup": cfg.mixup, "fliplr": 0.5, "degrees": 0.0, "translate": 0.1, "scale": 0.2}
    raise ValueError(f"unknown detector augmentation {cfg.augment!r}: expected none, traditional or pkcp-mixup")


def train_detector(
    data_yaml: str | Path, out_dir: str | Path, cfg: DetectorConfig, progress: bool = True
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train YOLOv8 on the dataset; returns (best EMA state dict, run summary).

    The run folder (ultralytics' own results.csv and checkpoints) is `out_dir`/run.
    """
    from training.ultra import DetectionTrainer, build_detector

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    scale = cfg.scale

    class _Trainer(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):  # the engine's architecture
            return build_detector(scale, len(PHASES), 1)

    overrides = {
        "model": f"yolov8{scale}.yaml",
        "data": str(data_yaml),
        "epochs": cfg.epochs,
        "imgsz": cfg.imgsz,
        "batch": cfg.batch,
        "workers": cfg.workers,
        "device": device,
        "amp": device != "cpu",
        "plots": False,
        "pretrained": False,
        "project": str(out_dir),
        "name": "run",
        "exist_ok": True,
        "seed": cfg.seed,
        "deterministic": True,
        "patience": cfg.patience,
        "lr0": cfg.lr0,
        "optimizer": cfg.optimizer,
        "warmup_epochs": cfg.warmup_epochs,
        "cache": "ram",
        "verbose": progress,
        "val": True,
        **_augment_args(cfg),
        **cfg.extra,
    }
    trainer = _Trainer(overrides=overrides)
    best: dict = {"state": None, "epoch": -1, "fitness": None}
    history: list[dict] = []

    def on_fit_epoch_end(tr) -> None:
        if tr.epoch >= tr.epochs or tr.epoch in {h["epoch"] for h in history}:
            return  # final_eval re-fires this hook (with epoch + 1) after training
        entry = {"epoch": int(tr.epoch), "fitness": None if tr.fitness is None else float(tr.fitness)}
        entry.update({k: float(v) for k, v in (tr.metrics or {}).items() if isinstance(v, (int, float))})
        history.append(entry)
        if progress:
            m50 = next((v for k, v in entry.items() if k.endswith("mAP50(B)")), float("nan"))
            print(f"[detector] epoch {tr.epoch + 1}/{tr.epochs} val mAP50 {m50:.4f} fitness {entry['fitness'] or 0:.4f} "
                  f"({time.time() - t0:.0f} s)", file=sys.stderr, flush=True)
        if tr.fitness is not None and tr.best_fitness is not None and float(tr.fitness) >= float(tr.best_fitness):
            best["state"] = {k: v.detach().float().cpu().clone() for k, v in tr.ema.ema.state_dict().items()}
            best["epoch"], best["fitness"] = int(tr.epoch), float(tr.fitness)

    t0 = time.time()
    trainer.add_callback("on_fit_epoch_end", on_fit_epoch_end)
    trainer.train()
    seconds = time.time() - t0
    state = best["state"]
    if state is None:  # no validation ran: keep the final EMA
        state = {k: v.detach().float().cpu().clone() for k, v in trainer.ema.ema.state_dict().items()}
    summary = {
        "config": asdict(cfg),
        "device": device,
        "seconds": round(seconds, 1),
        "best_epoch": best["epoch"],
        "best_fitness": best["fitness"],
        "history": history,
    }
    (out_dir / "detector_train.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return state, summary


def load_detector(state: dict[str, torch.Tensor], scale: str = "n"):
    """The trained detector, fused and in eval mode, built the way the engine builds it."""
    from training.ultra import detector_from_state

    return detector_from_state(f"yolov8{scale}", state, channels=len(PHASES), nc=1)


def predict_boxes(
    model, cohort: Cohort, refs: Sequence[CompositeRef], imgsz: int, conf: float = 0.001, iou: float = 0.6,
    phases: Sequence[str] = PHASES, batch: int = 32, max_det: int = 10,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Detections (n, 5: x0 y0 x1 y1 score) per composite with the engine's detect(), and the truth boxes."""
    from training.ultra import detect

    preds, truths = [], []
    for s in range(0, len(refs), batch):
        chunk = refs[s : s + batch]
        images, boxes = [], []
        for ref in chunk:
            image, box, _ = composite(cohort, ref, phases)
            images.append(image)
            boxes.append(np.asarray([box], dtype=np.float64) if box is not None else np.zeros((0, 4)))
        preds += detect(model, images, imgsz, conf, iou, max_det)
        truths += boxes
    return preds, truths


def evaluate_detector(
    model, cohort: Cohort, refs: Sequence[CompositeRef] | None = None, imgsz: int = 192, iou_match: float = 0.40,
    phases: Sequence[str] = PHASES, expansion: str = "flat",
) -> dict:
    """mAP / precision / recall / F1 at IoU `iou_match` on the cohort's composites (default: K depth-consistent)."""
    refs = list(refs) if refs is not None else expand(cohort, expansion, phases=phases)
    preds, truths = predict_boxes(model, cohort, refs, imgsz, phases=phases)
    m = detection_metrics([(p[:, :4], p[:, 4]) for p in preds], truths, iou_match)
    top = [p[0, 4] if len(p) else 0.0 for p in preds]
    m["mean_top_score"] = float(np.mean(top)) if top else float("nan")
    return m
