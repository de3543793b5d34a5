"""`liverview info EXAM`: print what the loader finds: studies, series, phases with evidence, problems.

Exit status: 0 when every study found has all four phases, 3 when a phase is missing,
2 when the input cannot be read (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from liverview.io.errors import ExamError
from liverview.io.messages import condense, condense_skipped, plural
from liverview.io.series import DEFAULT_MAX_PIXEL_BYTES, SeriesRecord, StudyRecord
from liverview.study.phases import PHASE_NAMES, PHASES

EXIT_ALL_PHASES = 0
EXIT_UNREADABLE = 2
EXIT_MISSING_PHASES = 3


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("exam", help="DICOM folder, DICOMDIR, file, zip, or a PACS image export folder")
    parser.add_argument(
        "--max-pixel-gib", type=float, default=DEFAULT_MAX_PIXEL_BYTES / 1024**3,
        help="refuse series whose pixels would need more than this (GiB, default %(default)g)",
    )
    parser.add_argument("--skipped", type=int, default=20, help="list at most this many skipped files (default 20)")


def _spacing(s: SeriesRecord) -> str:
    sp = s.spacing
    if sp is None:
        return "-"
    return f"{sp[0]:.3g} x {sp[1]:.3g} x {sp[2]:.3g} mm"


def _series_line(s: SeriesRecord) -> str:
    matrix = f"{s.matrix[1]}x{s.matrix[0]}" if s.matrix else "-"
    return (f"{s.label} [{s.modality or '?'}] {plural(s.n_slices, 'slice')} ({plural(s.n_files, 'file')}), "
            f"{matrix}, spacing {_spacing(s)}")


def _print_study(st: StudyRecord, out) -> None:
    who = ", ".join(x for x in (f"patient {st.patient_id}" if st.patient_id else "", st.date, st.description) if x)
    print(f"study {st.uid or '(no StudyInstanceUID)'}" + (f" ({who})" if who else ""), file=out)
    by_uid = {s.uid: s for s in st.series}
    for phase in PHASES:
        uid = st.phases.get(phase)
        if uid is None:
            print(f"  phase {phase} ({PHASE_NAMES[phase]}): not found", file=out)
            continue
        s = by_uid[uid]
        print(f"  phase {phase} ({PHASE_NAMES[phase]}): {_series_line(s)}; confidence {s.guess.confidence:.2f}", file=out)
        for line in s.guess.evidence:
            print(f"      evidence: {line}", file=out)
    others = [s for s in st.series if s.uid not in st.phases.values()]
    if others:
        print("  other series:", file=out)
        for s in others:
            why = f"not offered: {s.not_offered}" if s.not_offered else "candidate, not used"
            print(f"    {_series_line(s)}; {why}", file=out)
            if s.is_candidate:
                for line in s.guess.evidence[1:]:
                    print(f"      evidence: {line}", file=out)
    if st.phases:
        print("  uid of each phase series: " + ", ".join(f"{p}={st.phases[p]}" for p in PHASES if p in st.phases),
              file=out)


def _run_export(inp, root: Path, out) -> int:
    from liverview.io.export import load_export_input

    load = load_export_input(inp, root)
    study = load.study
    print(f"{inp.path}: PACS image export (windowed 8-bit images, not HU); patient {study.patient_id}", file=out)
    for phase in PHASES:
        vol = study.volumes.get(phase)
        if vol is None:
            print(f"  phase {phase} ({PHASE_NAMES[phase]}): not found", file=out)
            continue
        boxes = sum(1 for b in load.case_seed.boxes if b.phase == phase)
        window = f"window {vol.window[0]:g}/{vol.window[1]:g}" if vol.window else "window unknown"
        picks = len(load.case_seed.picks.get(phase, []))
        role = f"{plural(picks, 'pick')}" if picks else "a series to scroll, no picks"
        print(
            f"  phase {phase} ({PHASE_NAMES[phase]}): folder '{vol.description}', {plural(vol.shape[0], 'image')} "
            f"{vol.shape[2]}x{vol.shape[1]} ({role}), {window}, {plural(boxes, 'LabelMe box', 'LabelMe boxes')}",
            file=out,
        )
    identity = study.info.get("identity") or {}
    if identity:
        print(f"  identity: images sha256 {identity['images_sha256'][:16]}, "
              f"LabelMe files sha256 {identity['labels_sha256'][:16]}", file=out)
    _print_tail(load.scan.skipped, load.problems, 20, out)
    return EXIT_ALL_PHASES if len(study.phases) == 4 else EXIT_MISSING_PHASES


def _print_tail(skipped, problems, max_skipped: int, out) -> None:
    if skipped:
        print(f"skipped files: {len(skipped)}", file=out)
        lines = condense_skipped(skipped)
        for line in lines[:max_skipped]:
            print(f"  {line}", file=out)
        if len(lines) > max_skipped:
            print(f"  ... and {len(lines) - max_skipped} more", file=out)
    print(f"problems: {len(problems)}" + ("" if problems else " (none)"), file=out)
    for line in condense(problems):
        print(f"  - {line}", file=out)


def run(args: argparse.Namespace) -> int:
    from liverview.io.export import find_export_root
    from liverview.io.inputs import open_input
    from liverview.io.loader import image_hint
    from liverview.io.scan import scan_input

    out = sys.stdout
    try:
        inp = open_input(Path(args.exam))
    except ExamError as exc:
        print(f"liverview info: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    try:
        root = find_export_root(inp.root) if inp.kind in ("folder", "zip") else None
        if root is not None:
            return _run_export(inp, root, out)
        result = scan_input(inp, max_pixel_bytes=int(args.max_pixel_gib * 1024**3))
        kinds = {"folder": "folder", "zip": "zip archive", "dicomdir": "DICOMDIR", "file": "file"}
        print(
            f"{result.path}: {kinds.get(result.kind, result.kind)}, {plural(result.n_files, 'file')}, "
            f"{plural(len(result.studies), 'study', 'studies')}, {plural(len(result.series), 'series', 'series')}",
            file=out,
        )
        for st in result.studies:
            _print_study(st, out)
        _print_tail(result.skipped, result.all_problems(), args.skipped, out)
        if not result.studies:
            hint = image_hint(result)
            if hint is None and result.kind == "dicomdir" and not result.n_files:
                hint = "none of the files the DICOMDIR lists is here (copy the whole folder it sits in)"
            print(f"liverview info: {result.path}: no DICOM images found" + (f"; {hint}" if hint else ""),
                  file=sys.stderr)
            return EXIT_UNREADABLE
        complete = all(len(st.phases) == 4 for st in result.studies)
        return EXIT_ALL_PHASES if complete else EXIT_MISSING_PHASES
    except ExamError as exc:
        print(f"liverview info: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    finally:
        inp.close()
