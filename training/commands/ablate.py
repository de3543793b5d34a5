"""`python -m training ablate WHICH --out DIR [--quick]`: the paper's comparisons as tables (md + csv) and plots."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from training import ablate as ab
from training.cohort import load_cohort
from training.commands.common import log
from training.recipe import cohort_for, full_recipe, quick_recipe
from training.splits import check_cohorts_disjoint, load_splits, stratified_split

NOTES = {
    "augmentation": "{task}, exam-level on the test cohort; every arm sees the same number of samples per epoch.",
    "phases": "Dropped phases are zero channels in training and test.",
    "onestep": "Four-class scoring of the one-step model and of the two-stage cascade (P(group) x P(subtype | group)).",
    "detection": "IoU 0.40 on the test cohort's depth-consistent composites (single slices for the single-slice baseline).",
}


def configure(p) -> None:
    p.add_argument("which", choices=[*ab.ABLATIONS, "all"])
    p.add_argument("--out", required=True, help="folder for the tables, plots and runs")
    p.add_argument("--quick", action="store_true", help="tiny cohorts, sizes and epochs: minutes on a CPU")
    p.add_argument("--cohort", help="train/validation cohort cache (default: the build-weights phantom cohort)")
    p.add_argument("--splits", help="splits file for --cohort (default: a fresh stratified 70/30 split, seed 0)")
    p.add_argument("--test", help="test cohort cache (default: the build-weights held-out phantom cohort)")
    p.add_argument("--work", help="where phantom cohorts are cached (default build/training/<recipe>)")
    p.add_argument("--epochs", type=int, help="override the classifier epochs")
    p.add_argument("--det-epochs", type=int, help="override the detector epochs")
    p.add_argument("--input-size", type=int, help="override the classifiers' input size (px)")
    p.add_argument("--samples-per-epoch", type=int, help="override the classifiers' samples per epoch")
    p.add_argument("--det-imgsz", type=int, help="override the detector's image size (px)")
    p.add_argument("--backbones", nargs="+", default=["resnet18", "densenet121", "vit"])
    p.add_argument("--task", default="stage1", choices=["stage1", "benign", "malignant"],
                   help="the task of the augmentation ablation (default stage1, as the paper)")
    p.add_argument("--device", default="auto")
    p.add_argument("--n-boot", type=int, default=None)


def _data(args, recipe) -> ab.Data:
    work = Path(args.work) if args.work else Path("build") / "training" / recipe.name
    if args.cohort:
        trainval = load_cohort(args.cohort)
    else:
        trainval = cohort_for(recipe.trainval, recipe.matrix, work, recipe.render_workers, log, recipe.render_args)
    test = load_cohort(args.test) if args.test else cohort_for(recipe.heldout, recipe.matrix, work, recipe.render_workers, log, recipe.render_args)
    check_cohorts_disjoint({"train/validation": trainval, "test": test})
    if args.splits:
        splits = load_splits(args.splits)
    else:
        splits = stratified_split(trainval.patient_ids, trainval.classes, recipe.val_fraction, recipe.split_seed)
    return ab.Data(trainval.subset(splits["train"]), trainval.subset(splits["validation"]), test,
                   args.test or recipe.heldout.name)


# (argument, config field, how the table title names it)
CLASSIFIER_OVERRIDES = (("epochs", "epochs", "classifier epochs {}"), ("input_size", "input_size", "classifier input {} px"),
                        ("samples_per_epoch", "samples_per_epoch", "{} samples per epoch"))
DETECTOR_OVERRIDES = (("det_epochs", "epochs", "detector epochs {}"), ("det_imgsz", "imgsz", "detector {} px"))


def _override(cfg, args, specs, named: list[str]):
    """cfg with the size arguments given on the command line, and their names for the table title."""
    for arg, name, label in specs:
        value = getattr(args, arg)
        if value:
            cfg = dataclasses.replace(cfg, **{name: value})
            named = [*named, label.format(value)]
    return cfg, named


def run(args) -> int:
    recipe = quick_recipe() if args.quick else full_recipe()
    data = _data(args, recipe)
    base = dataclasses.replace(recipe.classifiers["stage1"], device=args.device)
    base, overrides = _override(base, args, CLASSIFIER_OVERRIDES, [])
    det, overrides = _override(dataclasses.replace(recipe.detector, device=args.device), args, DETECTOR_OVERRIDES,
                               overrides)
    n_boot = args.n_boot or recipe.n_boot
    out = Path(args.out)
    size = ("quick" if args.quick else "full") + (f", {', '.join(overrides)}" if overrides else "")
    for which in ab.ABLATIONS if args.which == "all" else (args.which,):
        t0 = time.time()
        runs = out / "runs" / which
        if which == "augmentation":
            rows = ab.augmentation(data, base, runs, n_boot, log, args.backbones, args.task)
        elif which == "phases":
            rows = ab.phases(data, base, runs, n_boot, log)
        elif which == "onestep":
            rows = ab.onestep(data, base, runs, n_boot, log)
        else:
            rows = ab.detection(data, det, runs, log)
        task_name = {"stage1": "Stage 1 (benign vs malignant)", "benign": "Benign subtype (HH vs OBHT)",
                     "malignant": "Malignant subtype (HB vs OMHT)"}[args.task]
        note = (f"{NOTES[which].format(task=task_name)} Size: {size} (train {len(data.train)} / validation {len(data.val)} / test "
                f"{len(data.test)} patients, test cohort {data.test_name}). Synthetic phantom: not clinical evidence. "
                f"Took {time.time() - t0:.0f} s.")
        name = which if which != "augmentation" or args.task == "stage1" else f"augmentation_{args.task}"
        ab.write_tables(rows, out, name, f"Ablation: {name} ({size})", note)
        log(ab.to_markdown(rows, f"Ablation: {name} ({size})", note))
    return 0
