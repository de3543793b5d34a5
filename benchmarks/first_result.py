"""Time to a working engine and to the first analysis result vs a bare `import torch`, on a warm file cache.

The peer, measured in the same run, is a fresh `python -c "import torch"`. The viewer is
`liverview --demo` with LIVERVIEW_REPORT_STARTUP=analyze (offscreen), which prints
`liverview-window-visible <s>`, `liverview-engine-ready <s>` (bundle loaded) and
`liverview-first-result <s>` (findings on screen after an automatic pick and analysis),
seconds since launch, then exits. With --engine-only the engine is timed through
EngineClient alone: launch to bundle loaded, then a demo-sized study shared, auto-picked
and analysed. Every figure is the second of two runs (the first warms the file cache).

    QT_QPA_PLATFORM=offscreen python benchmarks/first_result.py [--engine-only] [--bundle DIR] [--matrix 256]

Last line: `first_result: <engine ready / torch import> (target <= 1.5) PASS|FAIL`; PASS also
needs the first result within 2 s of the engine being ready.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

RATIO_TARGET = 1.5
AFTER_READY_TARGET_S = 2.0
TIMEOUT_S = 300.0


def torch_import_seconds() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, timeout=TIMEOUT_S)
    return time.perf_counter() - t


def viewer_run(bundle: str | None, matrix: int = 256) -> dict[str, float]:
    """The seconds `liverview --demo` reports for each startup milestone."""
    env = dict(os.environ, LIVERVIEW_REPORT_STARTUP="analyze", QT_QPA_PLATFORM="offscreen")
    if bundle:
        env["LIVERVIEW_BUNDLE"] = bundle
    env["LIVERVIEW_DEMO_MATRIX"] = str(matrix)
    done = subprocess.run(
        [sys.executable, "-m", "liverview", "--demo"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    marks = {}
    for line in done.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("liverview-"):
            marks[parts[0].removeprefix("liverview-")] = float(parts[1])
    missing = {"window-visible", "engine-ready", "first-result"} - set(marks)
    if missing:
        raise SystemExit(
            f"liverview --demo did not report {', '.join(sorted(missing))} (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    return marks


def demo_study(matrix: int):
    """The demo's phantom exam (seed 7, patient 0) rendered in memory as a Study."""
    import numpy as np

    from liverview.phantom.render import render_exam
    from liverview.study.case import Study
    from liverview.study.volume import Volume

    pixels, truth = render_exam(7, 0, matrix=matrix)
    sy, sx = truth["pixel_spacing"]
    volumes = {}
    for phase, px in pixels.items():
        positions = truth["phases"][phase]["positions"]
        affine = np.diag([float(sx), float(sy), float(positions[1] - positions[0]), 1.0])
        affine[2, 3] = float(positions[0])
        volumes[phase] = Volume(px.astype(np.float32), affine, series_uid=truth["phases"][phase]["series_uid"])
    return Study(volumes=volumes, study_uid=truth["patient_id"], patient_id=truth["patient_id"])


def engine_run(bundle: str | None, matrix: int = 256) -> dict[str, float]:
    """EngineClient alone: seconds from launch to bundle loaded and to the first analysis payload."""
    from liverview.engine.client import EngineClient
    from liverview.study.case import Case

    study = demo_study(matrix)
    client = EngineClient(bundle_dir=bundle)
    events: dict[str, threading.Event] = {k: threading.Event() for k in ("ready", "study", "job")}
    box: dict[str, object] = {}

    def on_state(state: str) -> None:
        if state in ("ready", "no-bundle", "dead"):
            box["state"] = state
            events["ready"].set()

    def on_end(job: int, value=None) -> None:
        box["end"] = value
        events["job"].set()

    client.state_changed.connect(on_state)
    client.study_ready.connect(lambda token: events["study"].set())
    client.job_done.connect(on_end)
    client.job_failed.connect(on_end)
    client.job_cancelled.connect(on_end)

    def wait(name: str) -> None:
        if not events[name].wait(TIMEOUT_S):
            raise SystemExit(f"engine: no {name} within {TIMEOUT_S:.0f} s (state {client.state})")
        events[name].clear()

    t0 = time.perf_counter()
    try:
        client.start()
        client.send_study(1, client.share_study(study))  # the viewer shares the exam while the engine loads
        wait("ready")
        marks = {"engine-ready": time.perf_counter() - t0}
        if box.get("state") != "ready":
            raise SystemExit(f"engine: {box.get('state')}: {client.bundle_error}")
        wait("study")
        client.auto_pick()
        wait("job")
        if not isinstance(box.get("end"), dict):
            raise SystemExit(f"engine: automatic picking failed: {box.get('end')!r}")
        case = Case(study)
        for phase, positions in box["end"]["picks"].items():
            case.set_picks(phase, positions)
        client.analyze(case.to_dict(), allow_missing=True)
        wait("job")
        if not isinstance(box.get("end"), dict):
            raise SystemExit(f"engine: analysis failed: {box.get('end')!r}")
        marks["first-result"] = time.perf_counter() - t0
    finally:
        client.stop()
    return marks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine-only", action="store_true", help="time EngineClient alone, not the viewer")
    ap.add_argument("--bundle", default=None, help="model bundle folder (default: the default bundle)")
    ap.add_argument("--matrix", type=int, default=256, help="demo exam matrix (the viewer's default is 256)")
    args = ap.parse_args(argv)

    run = engine_run if args.engine_only else viewer_run
    torch_import_seconds()
    run(args.bundle, args.matrix)  # warm-up: file cache
    peer = torch_import_seconds()
    marks = run(args.bundle, args.matrix)

    ready, first = marks["engine-ready"], marks["first-result"]
    ratio = ready / peer
    after = first - ready
    what = "EngineClient" if args.engine_only else "liverview --demo"
    print(f"# peer: python -c 'import torch' {peer:.2f} s; measured: {what}, second of two runs")
    if "window-visible" in marks:
        print(f"# window visible: {marks['window-visible']:.2f} s")
    print(f"# engine ready: {ready:.2f} s ({ratio:.2f} x torch import); first result: {first:.2f} s")
    print(f"after_ready: {after:.2f} s (target <= {AFTER_READY_TARGET_S}) {'PASS' if after <= AFTER_READY_TARGET_S else 'FAIL'}")
    ok = ratio <= RATIO_TARGET and after <= AFTER_READY_TARGET_S
    print(f"first_result: {ratio:.2f} (target <= {RATIO_TARGET}) {'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
