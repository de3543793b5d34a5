"""The demo exam: a seeded phantom exam generated once into the user's cache folder, in its own process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from liverview.qt.paths import cache_dir

DEMO_SEED = 7
DEMO_PATIENT = 0
DEMO_MATRIX = 256
MATRIX_ENV = "LIVERVIEW_DEMO_MATRIX"  # a smaller demo exam (64, 128) for slow machines and tests


def demo_matrix() -> int:
    try:
        return int(os.environ.get(MATRIX_ENV, DEMO_MATRIX))
    except ValueError:
        return DEMO_MATRIX


def demo_root(seed: int = DEMO_SEED, matrix: int | None = None) -> Path:
    matrix = matrix or demo_matrix()
    return cache_dir() / "demo" / f"seed{seed}-p{DEMO_PATIENT}-m{matrix}"


def find_exam(root: Path) -> Path | None:
    """The generated exam folder (the one holding truth.json) under `root`, if complete."""
    for truth in sorted(root.glob("*/truth.json")):
        return truth.parent
    return None


def ensure_demo_exam(progress=None, cancel=None, seed: int = DEMO_SEED, matrix: int | None = None) -> Path:
    """The demo exam folder, generated first when the cache has none (in a child process, so the
    GUI process never runs the phantom's numpy and scipy work)."""
    matrix = matrix or demo_matrix()
    root = demo_root(seed, matrix)
    found = find_exam(root)
    if found is not None:
        return found
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress(0.05, "generating the demo phantom exam (once)")
    # `liverview phantom` in its own process: the GUI process never runs the phantom's numpy
    # and scipy work, and nothing depends on how the viewer itself was started
    cmd = [sys.executable, "-m", "liverview", "phantom", "--out", str(tmp), "--seed", str(seed), "--matrix", str(matrix)]
    log_path = tmp.with_name(tmp.name + ".log")
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        _wait(proc, progress, cancel)
    if proc.returncode != 0:
        err = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise RuntimeError(f"liverview phantom failed: {err[-1] if err else f'exit code {proc.returncode}'} (log: {log_path})")
    log_path.unlink(missing_ok=True)
    if find_exam(tmp) is None:
        raise RuntimeError(f"{tmp}: the phantom wrote no truth.json; the demo exam is incomplete")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return find_exam(root)


def _wait(proc: subprocess.Popen, progress, cancel) -> None:
    t0 = time.monotonic()
    while proc.poll() is None:
        time.sleep(0.1)
        if cancel is not None and cancel():
            proc.terminate()
            proc.wait()
            raise RuntimeError("demo generation cancelled")
        if progress is not None:
            progress(min(0.9, 0.05 + (time.monotonic() - t0) / 30.0), "generating the demo phantom exam (once)")


def demo_truth(exam_dir: Path) -> dict:
    return json.loads((Path(exam_dir) / "truth.json").read_text(encoding="utf-8"))
