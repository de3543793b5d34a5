"""Classifier training: ROI crops of composites, the three augmentation arms, SGD, resumable checkpoints.

Inputs are made with the engine's `liverview.engine.roi.classifier_input` (mask outside the
box + margin, square crop, resize) so a model sees in training what it sees in the viewer.
Arms: "none" (K depth-consistent composites per exam), "traditional" (the same plus random
flip/rotation/scale), "pkcp-mixup" (PKCP expansion — K^P composites for minority classes,
or K for all with rebalance off — plus Balanced-MixUp with soft-label cross-entropy).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from liverview.engine.networks import build_classifier, cam_target_layer_name, resolved_arch_args
from liverview.engine.roi import classifier_input
from liverview.study.phases import PHASES

from training.augment import check_arm, traditional
from training.checkpoint import checkpoint_info, load_checkpoint, load_weights, save_checkpoint, save_weights
from training.cohort import Cohort
from training.metrics import evaluate, exam_average, point_metrics
from training.mixup import BalancedMixUp
from training.pkcp import CompositeRef, composite, expand
from training.tasks import Task, task as get_task

Rect = tuple[float, float, float, float]


@dataclass
class ClassifierConfig:
    """Everything a classifier run depends on; saved in its checkpoint and summary."""

    task: str = "stage1"
    backbone: str = "resnet18"
    arch_args: dict | None = None
    input_size: int = 64
    roi_margin: float = 0.15
    augmentation: str = "pkcp-mixup"  # none | traditional | pkcp-mixup
    rebalance: bool = True  # PKCP: K^P composites for minority classes (False: K for every class)
    # flip/rotate/scale every training sample on top of the arm (the "traditional" arm does this alone):
    # with four patients of a rare class, PKCP-MixUp recombines their slices but never shows a new pose
    geometric: bool = False
    mixup_alpha: float = 2.0
    mixup_beta: float = 2.0
    phases: tuple[str, ...] = PHASES
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "constant"  # constant | cosine
    samples_per_epoch: int | None = None  # None: one pass over the training composites
    imagenet_weights: str | None = None
    device: str = "auto"
    seed: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def expansion(self) -> str:
        return "pkcp" if self.augmentation == "pkcp-mixup" and self.rebalance else "flat"


@dataclass
class CropSet:
    """Classifier inputs in [0, 1] (not yet normalised), labels, and the exam each came from."""

    x: torch.Tensor  # (N, 4, S, S) float32
    y: np.ndarray  # (N,) int
    exams: list[str]
    refs: list[CompositeRef]

    def __len__(self) -> int:
        return len(self.y)


def crop_set(
    cohort: Cohort,
    task: Task,
    expansion: str,
    input_size: int,
    margin: float,
    phases: Sequence[str] = PHASES,
    box_of: Callable[[CompositeRef, np.ndarray, Rect | None], Rect | None] | None = None,
) -> CropSet:
    """ROI crops of every composite of the task's exams. `box_of(ref, image, truth_box)` may
    replace the truth union box (e.g. by a detection) for end-to-end evaluation."""
    exams = [i for i in range(len(cohort)) if task.label(cohort.classes[i]) is not None]
    refs = expand(cohort, expansion, exams=exams, phases=phases)
    xs = torch.empty((len(refs), len(PHASES), input_size, input_size), dtype=torch.float32)
    ys = np.empty(len(refs), dtype=np.int64)
    for j, ref in enumerate(refs):
        image, box, _ = composite(cohort, ref, phases)
        if box_of is not None:
            box = box_of(ref, image, box)
        xs[j], _square = classifier_input(image, box, margin, input_size)
        ys[j] = task.label(cohort.classes[ref.exam])
    return CropSet(xs, ys, [cohort.patient_ids[r.exam] for r in refs], refs)


def channel_stats(x: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean/std of training inputs (std 1 for an all-constant, e.g. dropped, channel)."""
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3))
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return [round(float(v), 6) for v in mean], [round(float(v), 6) for v in std]


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def make_model(cfg: ClassifierConfig, num_classes: int) -> torch.nn.Module:
    return build_classifier(
        cfg.backbone, num_classes, len(PHASES), cfg.input_size, cfg.arch_args, cfg.imagenet_weights
    )


def _norm(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


@torch.no_grad()
def predict(
    model: torch.nn.Module, x: torch.Tensor, mean: Sequence[float], std: Sequence[float], device=None, batch: int = 256
) -> np.ndarray:
    """Softmax probabilities [N, C] for inputs in [0, 1]."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    for s in range(0, len(x), batch):
        xb = _norm(x[s : s + batch].to(device), mean, std)
        out.append(torch.softmax(model(xb).float(), dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2))


def exam_metrics(probs: np.ndarray, data: CropSet, n_boot: int = 1000, threshold: float = 0.5) -> dict:
    ids, avg, labels = exam_average(data.exams, probs, data.y)
    return {"exams": len(ids), "metrics": evaluate(labels, avg, threshold, n_boot=n_boot), "ids": ids,
            "probs": avg.tolist(), "labels": labels.tolist()}


def _batches(cfg: ClassifierConfig, n: int, epoch: int) -> list[np.ndarray]:
    rng = np.random.default_rng([cfg.seed, epoch, 1])
    if cfg.samples_per_epoch:
        order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(cfg.samples_per_epoch / n))])
        order = order[: cfg.samples_per_epoch]
    else:
        order = rng.permutation(n)
    return [order[s : s + cfg.batch_size] for s in range(0, len(order), cfg.batch_size)]


def _lr_at(cfg: ClassifierConfig, epoch: int) -> float:
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(cfg.epochs, 1)))
    if cfg.schedule == "constant":
        return cfg.lr
    raise ValueError(f"unknown schedule {cfg.schedule!r}: expected constant or cosine")


def _same_run(a: dict, b: dict) -> bool:
    """Checkpoints resume when only the epoch count (extend a run) or the device differ."""
    skip = {"epochs", "device"}
    return {k: v for k, v in a.items() if k not in skip} == {k: v for k, v in b.items() if k not in skip}


def train_classifier(
    train: CropSet,
    val: CropSet | None,
    cfg: ClassifierConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool | None = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train on `train`, pick the epoch with the best exam-level validation AUC (lower loss on ties).

    Writes `out_dir`/checkpoint.{safetensors,json} after every epoch (resumed when `resume` and
    the config matches), best.safetensors and summary.json. Returns (best state dict, summary).
    """
    check_arm(cfg.augmentation)
    tk = get_task(cfg.task)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = make_model(cfg, tk.num_classes).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    mean, std = channel_stats(train.x)
    cfg_doc = json.loads(json.dumps(asdict(cfg)))
    start, history, best = 0, [], {"epoch": -1, "auc": -1.0, "loss": float("inf")}
    best_state = None
    info = checkpoint_info(out_dir) if resume else None
    if info is not None and _same_run(info.get("config") or {}, cfg_doc):
        load_checkpoint(out_dir, model, opt)
        start, history, best = int(info["epoch"]) + 1, info["history"], info["best"]
        if (out_dir / "best.safetensors").exists():
            best_state = load_weights(out_dir / "best.safetensors")
        log(f"[{cfg.task}] resuming {out_dir}: {start} of {cfg.epochs} epochs already done")
    mixer = None
    if cfg.augmentation == "pkcp-mixup":
        mixer = BalancedMixUp(lambda i: train.x[i].numpy(), train.y, tk.num_classes, cfg.mixup_alpha, cfg.mixup_beta)
    t0 = time.time() - (history[-1]["seconds"] if history else 0.0)  # seconds count across resumed invocations
    show = sys.stderr.isatty() if progress is None else progress
    for epoch in range(start, cfg.epochs):
        for g in opt.param_groups:
            g["lr"] = _lr_at(cfg, epoch)
        if mixer is not None:
            mixer.rng = np.random.default_rng([cfg.seed, epoch, 2])
            mixer.partners.rng = mixer.rng
        aug_rng = np.random.default_rng([cfg.seed, epoch, 3])
        model.train()
        losses = []
        batches = _batches(cfg, len(train), epoch)
        for idx in tqdm(batches, desc=f"{cfg.task} {epoch + 1}/{cfg.epochs}", disable=not show, leave=False):
            if mixer is not None:
                parts = [mixer.sample(int(i)) for i in idx]
                xs = [p[0] for p in parts]
                if cfg.geometric:
                    xs = [traditional(x, aug_rng) for x in xs]
                xb = torch.from_numpy(np.stack(xs))
                yb = torch.from_numpy(np.stack([p[1] for p in parts]))
            else:
                if cfg.augmentation == "traditional" or cfg.geometric:
                    xb = torch.from_numpy(np.stack([traditional(train.x[int(i)].numpy(), aug_rng) for i in idx]))
                else:
                    xb = train.x[torch.as_tensor(idx)]
                yb = F.one_hot(torch.as_tensor(train.y[idx]), tk.num_classes).float()
            if len(idx) < 2:  # BatchNorm cannot train on one sample
                continue
            xb, yb = _norm(xb.to(device), mean, std), yb.to(device)
            loss = F.cross_entropy(model(xb), yb)  # probability targets: soft-label CE
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        entry = {"epoch": epoch, "train_loss": float(np.mean(losses)) if losses else float("nan"),
                 "lr": opt.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
        if val is not None and len(val):
            probs = predict(model, val.x, mean, std, device)
            ids, avg, labels = exam_average(val.exams, probs, val.y)
            vloss = float(F.nll_loss(torch.log(torch.from_numpy(avg).clamp_min(1e-7)), torch.from_numpy(labels)).item())
            auc = point_metrics(labels, avg)["auc"][0]
            entry.update({"val_auc": auc, "val_loss": vloss})
            better = (not math.isnan(auc) and auc > best["auc"]) or (
                (math.isnan(auc) or auc == best["auc"]) and vloss < best["loss"]
            )
        else:
            better = True
        if better:
            best = {"epoch": epoch, "auc": entry.get("val_auc", float("nan")), "loss": entry.get("val_loss", float("nan"))}
            if isinstance(best["auc"], float) and math.isnan(best["auc"]):
                best["auc"] = -1.0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            save_weights(out_dir / "best.safetensors", best_state)
        history.append(entry)
        log(
            f"[{cfg.task}/{cfg.backbone}/{cfg.augmentation}] epoch {epoch + 1}/{cfg.epochs} "
            f"loss {entry['train_loss']:.4f}"
            + (f" val AUC {entry['val_auc']:.4f} val loss {entry['val_loss']:.4f}" if "val_auc" in entry else "")
            + f" ({entry['seconds']} s)"
        )
        save_checkpoint(out_dir, model, opt, {"config": cfg_doc, "epoch": epoch, "history": history, "best": best})
    if best_state is None:
        best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    summary = {
        "config": cfg_doc,
        "task": tk.name,
        "classes": list(tk.classes),
        "device": str(device),
        "train_composites": len(train),
        "train_exams": len(set(train.exams)),
        "val_composites": 0 if val is None else len(val),
        "val_exams": 0 if val is None else len(set(val.exams)),
        "normalisation": {"mean": mean, "std": std},
        "arch_args": resolved_arch_args(cfg.backbone, cfg.arch_args),
        "cam_target_layer": cam_target_layer_name(cfg.backbone, model),
        "best_epoch": best["epoch"],
        "seconds": round(time.time() - t0, 1),
        "history": history,
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return best_state, summary


def load_model(cfg: ClassifierConfig, state: dict[str, torch.Tensor], num_classes: int) -> torch.nn.Module:
    model = build_classifier(cfg.backbone, num_classes, len(PHASES), cfg.input_size, cfg.arch_args)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    return model.eval()
