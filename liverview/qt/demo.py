"""The demo exam: a seeded phantom exam generated once into the user's cache folder, in its own process."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from liverview.qt.paths import cache_dir

DEMO_SEED = 7
DEMO_PATIENT = 0
DEMO_MATRIX = 256


def demo_root(seed: int = DEMO_SEED, matrix: int = DEMO_MATRIX) -> Path:
    return cache_dir() / "demo" / f"seed{seed}-p{DEMO_PATIENT}-m{matrix}"


def find_exam(root: Path) -> Path | None:
    """The generated exam folder (the one holding truth.json) under `root`, if complete."""
    for truth in sorted(root.glob("*/truth.json")):
        return truth.parent
    return None


def _generate(out_dir: str, seed: int, patient_index: int, matrix: int) -> str:
    from liverview.phantom import generate_exam

    generate_exam(out_dir, seed, patient_index=patient_index, matrix=matrix)
    return out_dir


def ensure_demo_exam(progress=None, cancel=None, seed: int = DEMO_SEED, matrix: int = DEMO_MATRIX) -> Path:
    """The demo exam folder, generated first when the cache has none (in a child process, so the
    GUI process never runs the phantom's numpy and scipy work)."""
    root = demo_root(seed, matrix)
    found = find_exam(root)
    if found is not None:
        return found
    tmp = root.with_name(root.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True, exist_ok=True)
    if progress is not None:
        progress(0.05, "generating the demo phantom exam (once)")
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        fut = pool.submit(_generate, str(tmp), seed, DEMO_PATIENT, matrix)
        t0 = time.monotonic()
        while not fut.done():
            time.sleep(0.1)
            if cancel is not None and cancel():
                for proc in list(getattr(pool, "_processes", {}).values()):
                    proc.terminate()
                raise RuntimeError("demo generation cancelled")
            if progress is not None:
                progress(min(0.9, 0.05 + (time.monotonic() - t0) / 30.0), "generating the demo phantom exam (once)")
        fut.result()
    if find_exam(tmp) is None:
        raise RuntimeError(f"{tmp}: the phantom wrote no truth.json; the demo exam is incomplete")
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return find_exam(root)


def demo_truth(exam_dir: Path) -> dict:
    return json.loads((Path(exam_dir) / "truth.json").read_text(encoding="utf-8"))
