"""`python -m training split COHORT --out splits.json`: stratified 70/30 patient split; test cohorts checked for leaks."""

from __future__ import annotations

from training.cohort import load_cohort
from training.commands.common import log
from training.splits import check_cohorts_disjoint, save_splits, stratified_split


def configure(p) -> None:
    p.add_argument("cohort", help="train/validation cohort cache (.npz)")
    p.add_argument("--out", required=True, help="splits file to write (JSON)")
    p.add_argument("--val-fraction", type=float, default=0.3, help="validation share of patients (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    p.add_argument("--test", nargs="*", default=[], metavar="COHORT", help="test cohort caches that must share no patient")


def run(args) -> int:
    cohort = load_cohort(args.cohort)
    tests = {f"test:{t}": load_cohort(t) for t in args.test}
    check_cohorts_disjoint({f"train/validation:{args.cohort}": cohort, **tests})
    splits = stratified_split(cohort.patient_ids, cohort.classes, args.val_fraction, args.seed)
    save_splits(args.out, splits, seed=args.seed, val_fraction=args.val_fraction, cohort=str(args.cohort),
                test_cohorts=list(args.test))
    for name, ids in splits.items():
        sub = cohort.subset(ids)
        log(f"{name}: {len(ids)} patients {sub.counts()}")
    return 0
