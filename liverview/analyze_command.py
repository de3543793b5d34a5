"""`liverview analyze EXAM`: load an exam, pick slices, run the engine, print the diagnosis table, write JSON/PNGs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from liverview.engine import errors as E
from liverview.engine.errors import AnalysisCancelled

# exit codes: each refusal's own, defined with its error class in engine/errors.py
EXIT_OK = 0
EXIT_INPUT = E.AnalysisError.exit_code  # exam or picks file unreadable
EXIT_MISSING_PHASES = E.MissingPhasesError.exit_code  # fewer than four phases and no --allow-missing
EXIT_UNMATCHED = E.PhaseMatchError.exit_code  # phases that share no z range
EXIT_BUNDLE = E.BundleError.exit_code  # bundle missing or failing verification
EXIT_INTENSITY = E.IntensityError.exit_code  # windowed exports without window, bundle wants HU
EXIT_NO_LESION = E.AutoPickError.exit_code  # automatic picking found no lesion
EXIT_NO_EVIDENCE = E.EvidenceError.exit_code  # a slice to analyse was not decoded, is constant, or is air
EXIT_NOT_LIVER = E.NotLiverError.exit_code  # the picked slices show no liver
EXIT_DOUBTFUL_ANATOMY = E.LiverDoubtful.exit_code  # may not show a liver, and no --accept-doubtful-anatomy
EXIT_GUESSED_PHASES = E.GuessedPhasesError.exit_code  # a phase assigned on too little evidence
EXIT_CANCELLED = AnalysisCancelled.exit_code

PROG = "liverview analyze"
# what lifts a refusal the reader may override (the viewer asks instead)
HINTS = {
    EXIT_MISSING_PHASES: "; pass --allow-missing to go on",
    EXIT_INTENSITY: "; pass --assume-windows to go on",
    EXIT_GUESSED_PHASES: "; pass --accept-guessed-phases to go on",
    EXIT_DOUBTFUL_ANATOMY: "; pass --accept-doubtful-anatomy to go on",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("exam", help="exam to analyse: DICOM folder, DICOMDIR, zip, or PACS image export")
    parser.add_argument("--bundle", metavar="DIR", help="model bundle folder (default: liverview/resources/models/default)")
    parser.add_argument(
        "--picks",
        default=None,
        metavar="auto|exam|FILE",
        help="slice picks: 'auto' (detect the dominant lesion), 'exam' (the picks an image export brings), "
        "or a liverview case JSON / phantom truth.json (default: exam picks when there are any, else auto)",
    )
    parser.add_argument("--json", metavar="OUT", help="write the findings JSON here")
    parser.add_argument("--png", metavar="DIR", help="write overlay PNGs (boxes + Grad-CAM) per composite, phase and stage")
    parser.add_argument("--allow-missing", action="store_true", help="analyse with fewer than four phases (missing ones are zero channels)")
    parser.add_argument(
        "--assume-windows",
        action="store_true",
        help="take windowed exports without window metadata as exported with the bundle's windows",
    )
    parser.add_argument(
        "--accept-guessed-phases",
        action="store_true",
        help="analyse even when a phase was only guessed (e.g. from the series order alone)",
    )
    parser.add_argument(
        "--accept-doubtful-anatomy",
        action="store_true",
        help="analyse even when the picked slices may not show a liver (the result says so)",
    )
    parser.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def truth_picks(data: dict) -> dict[str, list[float]]:
    """Picks from a phantom truth.json ({"phases": {phase: {"picks": [mm, ...]}}}) or a plain
    picks file ({"picks": {phase: [mm, ...]}}); positions are slice positions in mm."""
    phases = data.get("phases")
    if isinstance(phases, dict) and any(isinstance(v, dict) and "picks" in v for v in phases.values()):
        picks = {p: v.get("picks") or [] for p, v in phases.items() if isinstance(v, dict)}
    elif isinstance(data.get("picks"), dict):
        picks = data["picks"]
    else:
        raise ValueError("no picks (phases.<phase>.picks or picks.<phase>: slice positions in mm)")
    out = {}
    for phase, items in picks.items():
        if not isinstance(items, list):
            raise ValueError(f"picks of phase {phase}: expected a list of positions, got {items!r}")
        positions = []
        for z in items:
            if isinstance(z, bool) or not isinstance(z, (int, float)):
                raise ValueError(f"picks of phase {phase}: expected slice positions in mm, got {z!r}")
            positions.append(float(z))
        out[phase] = positions
    return out


def picks_from_file(path: Path, study):
    """A Case with the picks (and, for a case file, the boxes) a file gives; raises ValueError."""
    from liverview.study.case import Case, nearest_positions
    from liverview.study.persist import CaseFileError, load_case

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such picks file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable JSON file ({exc})") from None
    if isinstance(data, dict) and data.get("schema") == "liverview.case":
        try:
            case = load_case(path, study)
        except CaseFileError as exc:
            raise ValueError(str(exc)) from None
        case.study = study
        return case, "case file"
    if not isinstance(data, dict):
        raise ValueError(f"{path}: neither a liverview case file nor a phantom truth.json")
    try:
        picks = truth_picks(data)
    except ValueError as exc:
        raise ValueError(f"{path}: not a liverview case file; as a truth.json: {exc}") from None
    case = Case(study)
    for phase, positions in picks.items():
        if phase in study.volumes and positions:
            case.set_picks(phase, nearest_positions(study.volumes[phase], positions))
    return case, "truth.json"


def _table(d: dict, picks_source: str, load_seconds: float) -> str:
    from liverview.engine.bundle import training_summary

    b = d["bundle"]
    lines = [
        f"bundle: {b['name']} {b['version']}  manifest sha256 {b['manifest_sha256'][:16]}…  (loaded in {load_seconds:.2f} s)",
        f"trained on: {b.get('training_summary') or training_summary(b.get('training_data'))}",
        f"picks: {picks_source}; phases used: {' '.join(d['phases_used'])}"
        + (f"; missing (zero channel): {' '.join(d['phases_missing'])}" if d["phases_missing"] else ""),
        "",
        f"{'comp':>4}  {'slices ' + '/'.join(d['phases_used']):<20} {'ROI':<9} {'det':>5} {'p(mal)':>7} "
        f"{'p(HH)':>7} {'p(OBHT)':>7} {'p(HB)':>7} {'p(OMHT)':>7} {'class':>6} {'sum':>6}",
    ]
    for c in d["composites"]:
        slices = "/".join(str(c["slice_index"][p]) for p in c["phases_used"])
        det = f"{c['detections'][0]['score']:.2f}" if c["detections"] else "-"
        pr = c["probabilities"]
        lines.append(
            f"{c['index'] + 1:>4}  {slices:<20} {c['roi']['source']:<9} {det:>5} {c['stage1']['p_malignant']:>7.3f} "
            f"{pr['HH']:>7.3f} {pr['OBHT']:>7.3f} {pr['HB']:>7.3f} {pr['OMHT']:>7.3f} {c['final_class']:>6} {sum(pr.values()):>6.3f}"
        )
    e = d["exam"]
    pr = e["probabilities"]
    lines.append(
        f"{'exam':>4}  {'mean of composites':<20} {'':<9} {'':>5} {e['p_malignant']:>7.3f} "
        f"{pr['HH']:>7.3f} {pr['OBHT']:>7.3f} {pr['HB']:>7.3f} {pr['OMHT']:>7.3f} {e['final_class']:>6} {sum(pr.values()):>6.3f}"
    )
    op = ">=" if e["stage1_call"] == "malignant" else "<"
    lines += [
        "",
        f"stage 1: {e['stage1_call']} (p(malignant) {e['p_malignant']:.3f} {op} {e['threshold']:.2f}); "
        f"stage 2: {e['stage2_call']}; final class: {e['final_class']} ({e['final_group']})",
    ]
    for c in d["composites"]:
        parts = []
        for stage, exp in c["explanations"].items():
            att = " ".join(f"{p} {v:.2f}" for p, v in exp["attribution"].items())
            parts.append(f"{stage} [{exp['target_class']}]: {att}")
        lines.append(f"attribution composite {c['index'] + 1}: " + "; ".join(parts))
    lines += [f"note: {n}" for n in d["notes"]]
    return "\n".join(lines)


def _open(session, path: str):
    """Load the exam through the session (the viewer's path); (ExamLoad, None) or (None, exit code)."""
    outcome: list = []
    session.exam_loaded.connect(lambda exam: outcome.append(exam))
    session.open_failed.connect(lambda message: outcome.append(message))
    session.open(path)
    session.run_until(lambda: bool(outcome), timeout=24 * 3600)
    if isinstance(outcome[0], str):
        _say(outcome[0])
        return None, EXIT_INPUT
    return outcome[0], None


def _run_job(session, start) -> tuple[str, object]:
    """Start a session job and run the loop until it ends: ("done", payload) or ("failed", exception)."""
    out: list = []
    session.job_done.connect(lambda kind, payload: out.append(("done", payload)))
    session.job_failed.connect(lambda kind, message, exc: out.append(("failed", exc)))
    session.job_cancelled.connect(lambda kind: out.append(("failed", AnalysisCancelled("analysis cancelled"))))
    if not start():
        session.process_events()
    session.run_until(lambda: bool(out), timeout=24 * 3600)
    return out[0]


def run(args: argparse.Namespace) -> int:
    import torch

    from liverview.engine.compat import intensity_check
    from liverview.engine.errors import AnalysisError, EngineError, NoPicksError
    from liverview.engine.local import LocalEngine
    from liverview.session import ReadingSession
    from liverview.study.case import Case

    if args.threads:
        torch.set_num_threads(max(1, int(args.threads)))
    # the session logs what it tells a viewer's user; here every message is printed once, by this command
    logging.getLogger("liverview").addHandler(logging.NullHandler())
    engine = LocalEngine(args.bundle)
    session = ReadingSession(engine)  # no case folder: the command line saves no case files
    try:
        load, code = _open(session, args.exam)
        if load is None:
            return code
        study = session.study
        for problem in load.problems:
            _say(f"warning: {problem}")
        if not study.phases:
            _say(f"{args.exam}: no phase volumes found")
            return EXIT_MISSING_PHASES
        from liverview.engine.compat import Allowances
        from liverview.engine.evidence import guessed_phases

        for line in guessed_phases(study):
            _say(f"warning: {line}")
        allow = Allowances(allow_missing=args.allow_missing, assume_windows=args.assume_windows,
                           allow_doubtful=args.accept_doubtful_anatomy, accept_guessed_phases=args.accept_guessed_phases)
        refusal = session.analysis_refusal(allow)
        if refusal is not None and not isinstance(refusal, NoPicksError):  # the rules the viewer applies too
            _say(f"{args.exam}: {refusal}{HINTS.get(refusal.exit_code, '')}")
            return refusal.exit_code
        engine.start()
        if engine.state != "ready":
            _say(engine.bundle_error)
            return EXIT_BUNDLE
        try:
            for note in intensity_check(study, engine.engine.manifest, args.assume_windows):
                _say(f"converting: {note}")
        except AnalysisError as exc:
            _say(f"{args.exam}: {exc}")
            return exc.exit_code
        session.start_engine()

        choice = args.picks
        seed = getattr(load, "case_seed", None)
        if choice is None:
            choice = "exam" if seed is not None and any(seed.picks.values()) else "auto"
        if choice == "auto":
            session.use_case(Case(study))
            outcome, detail = _run_job(session, session.request_auto_pick)
            if outcome != "done":
                _say(f"{args.exam}: {detail}")
                return getattr(detail, "exit_code", EXIT_INPUT)
            lo, hi = detail["extent"]
            source = f"auto (dominant lesion at {lo:.1f}..{hi:.1f} mm on {detail['reference']})"
        elif choice == "exam":
            if seed is None or not any(seed.picks.values()):
                _say(f"{args.exam}: the exam brings no picks; use --picks auto or a picks file")
                return EXIT_INPUT
            source = "from the exam"  # the session put the exam's picks and boxes into the case
        else:
            try:
                case, kind = picks_from_file(Path(choice), study)
            except ValueError as exc:
                _say(str(exc))
                return EXIT_INPUT
            session.use_case(case)
            source = f"{kind} {choice}"
        outcome, detail = _run_job(session, lambda: session.request_analysis(allow))
        if outcome != "done":
            if isinstance(detail, EngineError):
                _say(f"{args.exam}: {detail}{HINTS.get(detail.exit_code, '')}")
                return detail.exit_code
            _say(str(detail))
            return EXIT_INPUT
        findings = detail["findings"]

        print(f"exam: {args.exam}  patient {study.patient_id or '-'}  study {study.study_uid or '-'}")
        print(_table(findings, source, engine.engine.load_seconds))
        if args.json:
            from liverview.study.atomic import write_json_atomic

            try:
                write_json_atomic(args.json, findings)
            except OSError as exc:
                _say(f"{args.json}: could not write the findings ({exc.strerror or exc})")
                return EXIT_INPUT
            print(f"findings written to {args.json}")
        if args.png:
            from liverview.engine.overlay import write_overlays

            try:
                written = write_overlays(study, findings, args.png, engine.engine.windows)
            except OSError as exc:
                _say(f"{args.png}: could not write the overlays ({exc.strerror or exc})")
                return EXIT_INPUT
            print(f"{len(written)} overlay PNGs written to {args.png}")
        return EXIT_OK
    finally:
        session.shutdown()
