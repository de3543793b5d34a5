"""`python -m training cohort OUT.npz`: render phantom patients or read exam folders into a cohort cache."""

from __future__ import annotations

from training.cohort import save_cohort
from training.commands.common import Progress, log
from training.sources import folder_cohort, parse_mix, phantom_cohort


def configure(p) -> None:
    p.add_argument("out", help="cohort cache to write (.npz; a .json description is written beside it)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--phantom", type=int, metavar="N", help="render N phantom patients in memory")
    src.add_argument("--exams", metavar="DIR", help="folder of exam folders (DICOM + truth.json / case file, or exports)")
    p.add_argument("--labels", metavar="CSV", help="labels table patient_id,class (for exports without truth)")
    p.add_argument("--seed", type=int, default=0, help="phantom seed (default 0)")
    p.add_argument("--mix", help="phantom class mix, e.g. HH=77,OBHT=14,HB=47,OMHT=4 (default: the paper's)")
    p.add_argument("--matrix", type=int, default=256, help="slice grid of the cache in pixels (default 256)")
    p.add_argument("--workers", type=int, default=1, help="processes rendering phantom exams (default 1)")
    p.add_argument("--member", help="phantom: every patient of this lesion type (HH, IHH, FNH, HMH, HB, UESL, HCC), "
                                    "e.g. a supplement of a rare type (its class is the whole mix: not with --mix)")


def run(args) -> int:
    if args.phantom is not None:
        if args.phantom < 1:
            raise ValueError("--phantom needs at least 1 patient")
        if args.member and args.mix:
            raise ValueError("--member and --mix: a member cohort's class is the member's; give one of them")
        mix = parse_mix(args.mix)
        render_args = {}
        if args.member:
            from liverview.phantom.priors import MEMBER_CLASS

            if args.member not in MEMBER_CLASS:
                raise ValueError(f"--member {args.member!r}: expected one of {', '.join(MEMBER_CLASS)}")
            mix, render_args = {MEMBER_CLASS[args.member]: 1}, {"member": args.member}
        cohort = phantom_cohort(args.phantom, args.seed, mix, args.matrix, args.workers,
                                Progress("rendering phantom exams"), render_args)
    else:
        if args.member:
            raise ValueError("--member applies to --phantom cohorts; exams bring their own lesion types")
        cohort = folder_cohort(args.exams, args.labels, args.matrix, Progress("reading exams"))
    path = save_cohort(cohort, args.out)
    log(f"wrote {path}: {len(cohort)} patients {cohort.counts()}, slices {cohort.matrix}")
    return 0
