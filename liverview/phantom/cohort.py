"""A phantom cohort: patients with classes in a requested mix, written in parallel, plus cohort.csv."""

from __future__ import annotations

import csv
import io
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Callable, Mapping

from liverview.phantom.exam_writer import generate_exam
from liverview.phantom.priors import CLASSES, MEMBER_CLASS, assign_classes, parse_mix
from liverview.study.atomic import write_bytes_atomic

COHORT_COLUMNS = ("patient_id", "class", "member", "age_years", "sex")


def _one(args: tuple) -> dict:
    out_dir, seed, index, cls, kwargs = args
    return generate_exam(out_dir, seed=seed, patient_index=index, cls=cls, **kwargs)


def generate_cohort(
    out_dir,
    n_patients: int,
    seed: int = 0,
    mix: str | Mapping[str, float] | None = None,
    workers: int = 1,
    progress: Callable[[dict], None] | None = None,
    **exam_kwargs,
) -> list[dict]:
    """Write `n_patients` exams to `out_dir` and OUT/cohort.csv; return their truths in order.

    `mix` gives the share (or count) of each class, default the paper's cohort A. Patient i
    gets the same class and the same images whatever `n_patients` is. `progress` is called
    with each truth as its exam is finished (in finishing order).
    """
    n_patients = int(n_patients)
    if n_patients < 1:
        raise ValueError(f"n_patients {n_patients}: need at least 1")
    if "cls" in exam_kwargs:
        raise ValueError("generate_cohort takes the class mix, not cls")
    fractions = parse_mix(mix)
    classes = assign_classes(n_patients, fractions, seed)
    if exam_kwargs.get("member"):  # one member type for everyone overrides the mix
        if exam_kwargs["member"] not in MEMBER_CLASS:
            raise ValueError(f"member {exam_kwargs['member']!r}: expected one of {', '.join(MEMBER_CLASS)}")
        classes = [MEMBER_CLASS[exam_kwargs["member"]]] * n_patients
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = [(str(out_dir), int(seed), i, classes[i], dict(exam_kwargs)) for i in range(n_patients)]
    truths: list[dict | None] = [None] * n_patients
    workers = max(1, int(workers))
    if workers == 1 or n_patients == 1:
        for i, task in enumerate(tasks):
            truths[i] = _one(task)
            if progress:
                progress(truths[i])
    else:
        ctx = multiprocessing.get_context("spawn")  # no forked copies of the caller's threads
        with ProcessPoolExecutor(max_workers=min(workers, n_patients), mp_context=ctx) as pool:
            futures = {pool.submit(_one, task): task[2] for task in tasks}
            for fut in as_completed(futures):
                i = futures[fut]
                truths[i] = fut.result()
                if progress:
                    progress(truths[i])
    write_cohort_csv(out_dir / "cohort.csv", truths)
    return truths  # type: ignore[return-value]


def write_cohort_csv(path, truths) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COHORT_COLUMNS)
    for t in truths:
        w.writerow([t["patient_id"], t["class"], t["member"], f"{t['age_years']:.2f}", t["sex"]])
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))


def class_counts(truths) -> dict[str, int]:
    counts = {c: 0 for c in CLASSES}
    for t in truths:
        counts[t["class"]] += 1
    return counts
