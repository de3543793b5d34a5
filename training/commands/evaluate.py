"""`python -m training evaluate BUNDLE COHORT --out DIR`: detection, classifiers and the two-stage call, with CIs."""

from __future__ import annotations

from training.cohort import load_cohort
from training.commands.common import log
from training.evaluation import evaluate_bundle, markdown


def configure(p) -> None:
    p.add_argument("bundle", help="model bundle folder (manifest.json + safetensors)")
    p.add_argument("cohort", help="test cohort cache (.npz)")
    p.add_argument("--out", help="folder for metrics.json, metrics.md and ROC PNGs")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    cohort = load_cohort(args.cohort)
    result = evaluate_bundle(args.bundle, cohort, args.out, args.n_boot, args.seed, name=str(args.cohort))
    print(markdown(result))
    if args.out:
        log(f"wrote {args.out}/metrics.json, metrics.md and ROC curves")
    return 0
