"""`liverview phantom`: write a cohort of synthetic four-phase phantom exams (DICOM or PNG export)."""

from __future__ import annotations

import argparse
import sys
import time

from liverview.phantom.priors import CLASSES, MEMBER_CLASS, PAPER_COUNTS, parse_mix


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Write synthetic four-phase (P, A, V, D) pediatric liver CT exams with ground truth: "
        "OUT/<patient_id>/dicom/... (or export/ with --slices-only png), OUT/<patient_id>/truth.json "
        "and OUT/cohort.csv. Synthetic data, not patient data."
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--patients", type=int, default=1, metavar="N", help="number of patients (default 1)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="cohort seed (default 0)")
    paper = ",".join(f"{c}={n}" for c, n in PAPER_COUNTS.items())
    parser.add_argument("--mix", metavar="MIX",
                        help=f"class shares or counts, e.g. HH=0.25,OBHT=0.25,HB=0.25,OMHT=0.25 (default the paper's {paper})")
    parser.add_argument("--member", choices=sorted(MEMBER_CLASS), help="give every patient this lesion type")
    parser.add_argument("--matrix", type=int, default=256, help="rows and columns per slice (default 256)")
    parser.add_argument("--slice-thickness", type=float, default=2.5, metavar="MM", help="slice thickness and spacing (default 2.5)")
    parser.add_argument("--slices", type=int, metavar="N", help="slices per phase (default: the liver with margins)")
    parser.add_argument("--pixel-spacing", type=float, metavar="MM", help="pixel spacing (default: the child's field of view / matrix)")
    parser.add_argument("--slices-only", choices=("dicom", "png"),
                        help="write only the 12 picked slices per patient, as DICOM or as PNG + LabelMe export")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="patients generated in parallel (default 1)")


def _line(t: dict, started: float) -> str:
    rep = t["report"]
    n = {p: len(t["phases"][p]["positions"]) for p in t["phases"]}
    size = rep.get("size_mm") or [0, 0]
    return (
        f"{t['patient_id']}  {t['class']:<4} {t['member']:<4}  {t['age_years']:5.2f} y {t['sex']}  "
        f"slices P/A/V/D {n['P']}/{n['A']}/{n['V']}/{n['D']}  lesion {size[0]:.0f}x{size[1]:.0f} mm "
        f"{rep.get('location')}  ({time.perf_counter() - started:.1f} s)"
    )


def run(args: argparse.Namespace) -> int:
    from liverview.phantom.cohort import class_counts, generate_cohort

    try:
        mix = parse_mix(args.mix)
    except ValueError as exc:
        print(f"liverview phantom: error: --mix: {exc}", file=sys.stderr)
        return 2
    for name, value, low in (("--patients", args.patients, 1), ("--matrix", args.matrix, 32), ("--workers", args.workers, 1)):
        if value < low:
            print(f"liverview phantom: error: {name} {value}: must be at least {low}", file=sys.stderr)
            return 2
    started = time.perf_counter()
    try:
        truths = generate_cohort(
            args.out,
            args.patients,
            seed=args.seed,
            mix=mix,
            workers=args.workers,
            progress=lambda t: print(_line(t, started), flush=True),
            member=args.member,
            matrix=args.matrix,
            slice_thickness=args.slice_thickness,
            n_slices=args.slices,
            slices_only=args.slices_only,
            pixel_spacing=args.pixel_spacing,
        )
    except (ValueError, OSError) as exc:
        print(f"liverview phantom: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    counts = class_counts(truths)
    summary = ", ".join(f"{c} {counts[c]}" for c in CLASSES)
    print(f"wrote {len(truths)} exams to {args.out} in {time.perf_counter() - started:.1f} s ({summary}); cohort.csv lists them")
    print("synthetic phantom data: not patient data, not clinical evidence")
    return 0
