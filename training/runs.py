"""One training run from cohorts: classifier or detector, with its test-time evaluation (shared by the commands)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from liverview.study.atomic import write_json_atomic

from training.checkpoint import save_weights
from training.classifier import ClassifierConfig, crop_set, exam_metrics, load_model, predict, train_classifier
from training.cohort import Cohort
from training.detector import DetectorConfig, evaluate_detector, load_detector, train_detector, write_dataset
from training.pkcp import expand
from training.tasks import task as get_task


# what train_classifier writes into a run folder (a fresh run replaces them; nothing else there is touched)
RUN_FILES = ("checkpoint.json", "checkpoint.safetensors", "best.safetensors", "summary.json")
DATA_MARKER = "training_data.json"  # which patients the run in a folder was started on


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def ran_on(folder: Path, data: dict) -> bool:
    """Whether the run in `folder` was started on `data` (False when it does not say)."""
    try:
        return json.loads((folder / DATA_MARKER).read_text(encoding="utf-8")) == data
    except (OSError, ValueError):
        return False


def start_on(folder: Path, data: dict, run_files: tuple[str, ...]) -> None:
    """Clear `run_files` of the old run (none when it is resumed), then record the data the run goes on with:
    a restart interrupted before a new run writes anything must not find old weights beside the new record."""
    for name in run_files:
        (folder / name).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / DATA_MARKER, data)


def classifier_run(train: Cohort, val: Cohort | None, cfg: ClassifierConfig, out_dir: str | Path,
                   resume: bool = True, log: Callable[[str], None] | None = None):
    """Train one classifier; validation composites are expanded the same way as training ones.

    A checkpoint in `out_dir` resumes only on the cohorts it was started on (the config does not say
    which patients a run saw); on other data the run starts afresh over it.
    """
    out_dir = Path(out_dir)
    data = {"train": train.digest(), "train_patients": len(train),
            "validation": val.digest() if val is not None else None}
    if resume and (out_dir / "checkpoint.json").exists() and not ran_on(out_dir, data):
        (log or _stderr)(f"{out_dir.name}: the run there was on other training data, starting afresh")
        resume = False
    start_on(out_dir, data, () if resume else RUN_FILES)
    tk = get_task(cfg.task)
    tr = crop_set(train, tk, cfg.expansion, cfg.input_size, cfg.roi_margin, cfg.phases)
    va = crop_set(val, tk, cfg.expansion, cfg.input_size, cfg.roi_margin, cfg.phases) if val is not None else None
    kw = {"log": log} if log else {}
    return train_classifier(tr, va, cfg, out_dir, resume=resume, **kw)


def classifier_test(state, summary: dict, cohort: Cohort, n_boot: int = 1000, seed: int = 0) -> dict:
    """Exam-level metrics on a test cohort: K depth-consistent composites, truth boxes, averaged per exam."""
    cfg = ClassifierConfig(**{**summary["config"], "phases": tuple(summary["config"]["phases"])})
    tk = get_task(cfg.task)
    data = crop_set(cohort, tk, "flat", cfg.input_size, cfg.roi_margin, cfg.phases)
    model = load_model(cfg, state, tk.num_classes)
    norm = summary["normalisation"]
    probs = predict(model, data.x, norm["mean"], norm["std"])
    return exam_metrics(probs, data, n_boot=n_boot)


def detector_run(train: Cohort, val: Cohort, cfg: DetectorConfig, out_dir: str | Path):
    """Write the YOLO dataset (train composites per cfg.expansion, validation depth-consistent), train,
    keep the best weights as detector.safetensors."""
    out_dir = Path(out_dir)
    val_mode = "slices" if cfg.expansion == "slices" else "flat"
    yaml_path = write_dataset(
        out_dir / "dataset",
        (train, expand(train, cfg.expansion, phases=cfg.phases)),
        (val, expand(val, val_mode, phases=cfg.phases)),
        cfg.phases,
    )
    state, summary = train_detector(yaml_path, out_dir, cfg)
    save_weights(out_dir / "detector.safetensors", state)
    return state, summary


def detector_test(state, cfg: DetectorConfig, cohort: Cohort) -> dict:
    """mAP/P/R/F1 at IoU 0.40 on a cohort's depth-consistent composites (single slices for that baseline)."""
    model = load_detector(state, cfg.scale)
    mode = "slices" if cfg.expansion == "slices" else "flat"
    return evaluate_detector(model, cohort, imgsz=cfg.imgsz, phases=cfg.phases, expansion=mode)


def write_json(path: str | Path, obj) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else float(o)),
                          encoding="utf-8")
