"""`python -m training train-detector COHORT --splits S --out DIR`: YOLOv8 on 4-channel composites (ultralytics)."""

from __future__ import annotations

from pathlib import Path

from liverview.study.phases import PHASES

from training.cohort import load_cohort
from training.commands.common import log, phases_arg
from training.detector import DetectorConfig
from training.runs import detector_run, detector_test, write_json
from training.splits import load_splits


def add_detector_args(p) -> None:
    d = DetectorConfig()
    p.add_argument("--scale", choices=list("nsmlx"), default=d.scale, help="YOLOv8 scale (default n)")
    p.add_argument("--imgsz", type=int, default=d.imgsz, help=f"training/inference image size (default {d.imgsz})")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--expansion", choices=("pkcp", "flat", "all", "slices"), default=d.expansion,
                   help="training composites: pkcp (with rebalance), flat (without), all, slices (single-slice baseline)")
    p.add_argument("--phases", type=phases_arg, default=PHASES)
    p.add_argument("--augment", choices=("pkcp-mixup", "traditional", "none"), default=d.augment)
    p.add_argument("--mixup", type=float, default=d.mixup, help="ultralytics MixUp probability (paper 0.6)")
    p.add_argument("--lr0", type=float, default=d.lr0)
    p.add_argument("--patience", type=int, default=d.patience)
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--seed", type=int, default=0)


def config_from(args) -> DetectorConfig:
    return DetectorConfig(scale=args.scale, imgsz=args.imgsz, epochs=args.epochs, batch=args.batch,
                          expansion=args.expansion, phases=tuple(args.phases), augment=args.augment, mixup=args.mixup,
                          lr0=args.lr0, patience=args.patience, device=args.device, workers=args.workers, seed=args.seed)


def configure(p) -> None:
    p.add_argument("cohort", help="train/validation cohort cache (.npz)")
    p.add_argument("--splits", required=True)
    p.add_argument("--out", required=True, help="run folder (dataset, ultralytics run, detector.safetensors)")
    p.add_argument("--test", metavar="COHORT", help="test cohort to evaluate the best weights on (IoU 0.40)")
    add_detector_args(p)


def run(args) -> int:
    cohort = load_cohort(args.cohort)
    splits = load_splits(args.splits)
    cfg = config_from(args)
    state, summary = detector_run(cohort.subset(splits["train"]), cohort.subset(splits["validation"]), cfg, args.out)
    log(f"detector: best epoch {summary['best_epoch'] + 1} of {cfg.epochs}, {summary['seconds']} s; "
        f"weights in {Path(args.out) / 'detector.safetensors'}")
    if args.test:
        m = detector_test(state, cfg, load_cohort(args.test))
        write_json(Path(args.out) / "test_metrics.json", m)
        log(f"test: mAP@0.40 {m['map']:.4f} P {m['precision']:.4f} R {m['recall']:.4f} F1 {m['f1']:.4f}")
    return 0
