"""`python -m training train-classifier COHORT --splits S|--fit-all --task T --out DIR`: one classifier run (resumable)."""

from __future__ import annotations

from pathlib import Path

from liverview.engine.networks import BACKBONES
from liverview.study.phases import PHASES

from training.augment import ARMS
from training.classifier import ClassifierConfig
from training.cohort import concat, load_cohort
from training.commands.common import log, phases_arg
from training.runs import classifier_run, classifier_test, write_json
from training.splits import check_cohorts_disjoint, load_splits
from training.tasks import TASKS


def add_classifier_args(p) -> None:
    d = ClassifierConfig()
    p.add_argument("--task", choices=list(TASKS), default=d.task)
    p.add_argument("--backbone", choices=list(BACKBONES), default=d.backbone)
    p.add_argument("--augmentation", choices=list(ARMS), default=d.augmentation)
    p.add_argument("--no-rebalance", action="store_true", help="PKCP without class-rebalance (K composites for every class)")
    p.add_argument("--geometric", action="store_true", help="also flip/rotate/scale every sample (on top of PKCP-MixUp)")
    p.add_argument("--phases", type=phases_arg, default=PHASES, help="phases used, e.g. AVD (others zeroed; default PAVD)")
    p.add_argument("--input-size", type=int, default=d.input_size, help=f"ROI crop size in pixels (default {d.input_size})")
    p.add_argument("--roi-margin", type=float, default=d.roi_margin)
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--momentum", type=float, default=d.momentum)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=("constant", "cosine"), default=d.schedule)
    p.add_argument("--samples-per-epoch", type=int, default=None)
    p.add_argument("--imagenet-weights", metavar="FILE", help="local torchvision ImageNet weights (.pth/.safetensors)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--seed", type=int, default=0)


def config_from(args) -> ClassifierConfig:
    return ClassifierConfig(
        task=args.task, backbone=args.backbone, augmentation=args.augmentation, rebalance=not args.no_rebalance,
        geometric=args.geometric,
        phases=tuple(args.phases), input_size=args.input_size, roi_margin=args.roi_margin, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
        schedule=args.schedule, samples_per_epoch=args.samples_per_epoch, imagenet_weights=args.imagenet_weights,
        device=args.device, seed=args.seed,
    )


def configure(p) -> None:
    p.add_argument("cohort", help="train/validation cohort cache (.npz)")
    fit = p.add_mutually_exclusive_group(required=True)
    fit.add_argument("--splits", help="splits file from `python -m training split`: train on its training split, "
                                      "keep the epoch with the best validation exam AUC")
    fit.add_argument("--fit-all", action="store_true",
                     help="train on every patient of COHORT for the fixed --epochs, no validation (the recipe's fit)")
    p.add_argument("--add", metavar="COHORT", action="append", default=[],
                   help="more training patients (e.g. a supplement of a rare type), after COHORT's; never in the "
                        "validation split; repeatable")
    p.add_argument("--out", required=True, help="run folder (checkpoints, best.safetensors, summary.json)")
    p.add_argument("--test", metavar="COHORT", help="test cohort to evaluate the best weights on")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint in --out")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for CIs (default 1000)")
    add_classifier_args(p)


def run(args) -> int:
    cohort = load_cohort(args.cohort)
    extra = [load_cohort(path) for path in args.add]
    test = load_cohort(args.test) if args.test else None
    named = {f"training cohort {args.cohort}": cohort, **{f"--add {p} (#{i + 1})": c for i, (p, c) in enumerate(zip(args.add, extra))}}
    check_cohorts_disjoint({**named, **({f"--test {args.test}": test} if test else {})})
    cfg = config_from(args)
    if args.fit_all:
        state, summary = classifier_run(concat([cohort, *extra]), None, cfg, args.out, resume=not args.fresh)
    else:
        splits = load_splits(args.splits)
        state, summary = classifier_run(concat([cohort.subset(splits["train"]), *extra]), cohort.subset(splits["validation"]),
                                        cfg, args.out, resume=not args.fresh)
    log(f"best epoch {summary['best_epoch'] + 1}: weights in {Path(args.out) / 'best.safetensors'}")
    if test is not None:
        res = classifier_test(state, summary, test, args.n_boot)
        write_json(Path(args.out) / "test_metrics.json", res)
        m = res["metrics"]
        log(f"test ({res['exams']} exams): AUC {m['auc']['value']:.4f} CI {m['auc']['ci_t']} accuracy {m['accuracy']['value']:.4f}")
    return 0
