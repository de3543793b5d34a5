"""Where cohorts come from: the phantom rendered in memory, a folder of exams with truth or case files,
or the paper's export layout (slice images + LabelMe JSON) with a labels table.

Each source yields ExamSlices: the three picked slices per phase windowed like the composite
builder windows them, and the lesion box on every picked slice.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from liverview.study.phases import PHASES
from liverview.study.volume import HU

from training.cohort import K, CohortError, ExamSlices, resample, stack, window_slice
from training.tasks import CLASSES, check_class

# The paper's cohort A (148 patients): HH 77, OBHT 14, HB 47, OMHT 4.
PAPER_MIX: dict[str, int] = {"HH": 77, "OBHT": 14, "HB": 47, "OMHT": 4}
Progress = Callable[[int, int], None]


def parse_mix(text: str | None) -> dict[str, float] | None:
    """'HH=77,OBHT=14,HB=47,OMHT=4' -> {class: share}; None or '' -> None (the paper's mix)."""
    if not text:
        return None
    from liverview.phantom import parse_mix as phantom_mix

    return dict(phantom_mix(text))


def class_plan(n: int, seed: int, mix: Mapping[str, float] | None = None) -> list[str]:
    """The class of each of `n` phantom patients: the phantom's own assignment, so an in-memory
    cohort has the classes `liverview phantom` / generate_cohort would write for the same seed."""
    from liverview.phantom import parse_mix as phantom_mix
    from liverview.phantom.priors import assign_classes

    return list(assign_classes(n, phantom_mix(dict(mix) if mix else None), seed))


def _nearest(positions: Sequence[float], pos: float) -> int:
    return int(np.argmin(np.abs(np.asarray(positions, dtype=np.float64) - float(pos))))


def _box_at(slice_boxes: Mapping[str, Sequence[float]], pos: float, tol: float = 0.02) -> list[float] | None:
    best, dist = None, tol
    for key, box in slice_boxes.items():
        d = abs(float(key) - float(pos))
        if d <= dist and box is not None:
            best, dist = box, d
    return None if best is None else [float(v) for v in best]


def exam_from_truth(
    volumes: Mapping[str, np.ndarray],
    truth: Mapping,
    matrix: tuple[int, int] | None = None,
    intensity: str = HU,
    windows: Mapping[str, tuple[float, float] | None] | None = None,
    where: str = "",
) -> ExamSlices:
    """The 12 picked slices of a phantom exam (volumes [slice, row, col] per phase, truth.json dict)."""
    where = where or str(truth.get("patient_id", "exam"))
    try:
        pid = str(truth["patient_id"])
        cls = check_class(truth["class"], where)
        phases_doc = truth["phases"]
    except KeyError as exc:
        raise CohortError(f"{where}: truth has no field {exc}") from None
    except ValueError as exc:
        raise CohortError(str(exc)) from None
    slices, boxes, present = {}, {}, np.zeros(len(PHASES), dtype=bool)
    for c, p in enumerate(PHASES):
        doc = phases_doc.get(p)
        vol = volumes.get(p)
        if doc is None or vol is None:
            continue
        picks = sorted(float(x) for x in doc.get("picks") or [])
        if len(picks) != K:
            raise CohortError(f"{where}: phase {p} has {len(picks)} picks, expected {K}")
        positions = doc.get("positions")
        if positions is None or len(positions) != vol.shape[0]:
            raise CohortError(f"{where}: phase {p} positions do not match its {vol.shape[0]} slices")
        slices[p] = [
            window_slice(vol[_nearest(positions, pos)], p, intensity, (windows or {}).get(p)) for pos in picks
        ]
        boxes[p] = [_box_at(doc.get("slice_boxes") or {}, pos) for pos in picks]
        present[c] = True
    return _assemble(pid, cls, str(truth.get("member", "")), slices, boxes, present, matrix, where,
                     {k: truth[k] for k in ("age_years", "sex", "group", "report") if k in truth})


def _assemble(pid, cls, member, slices, boxes, present, matrix, where, info) -> ExamSlices:
    if not present.any():
        raise CohortError(f"{where}: no phase with picked slices")
    first = next(s for p in PHASES if p in slices for s in slices[p])
    grid = tuple(matrix) if matrix else first.shape
    out = np.zeros((len(PHASES), K, *grid), dtype=np.uint8)
    bx = np.full((len(PHASES), K, 4), np.nan, dtype=np.float32)
    for c, p in enumerate(PHASES):
        if p not in slices:
            continue
        for k in range(K):
            img = slices[p][k]
            sy, sx = grid[0] / img.shape[0], grid[1] / img.shape[1]
            out[c, k] = resample(img, grid)
            b = boxes[p][k]
            if b is not None:
                bx[c, k] = (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)
    return ExamSlices(pid, cls, out, bx, present, member, info)


def phantom_exam(seed: int, index: int, cls: str | None, matrix: int, **render_args) -> ExamSlices:
    """One phantom exam rendered in memory (no DICOM round trip)."""
    from liverview.phantom import render_exam

    volumes, truth = render_exam(seed, patient_index=index, cls=cls, matrix=matrix, **render_args)
    return exam_from_truth(volumes, truth, where=f"phantom seed {seed} patient {index}")


def _phantom_job(args):
    """The exam, or the reason it cannot follow the protocol (e.g. a lesion too small to be seen
    on three slices of every phase: the phantom then gives a phase no picks)."""
    seed, index, cls, matrix, render_args = args
    try:
        return phantom_exam(seed, index, cls, matrix, **render_args)
    except CohortError as exc:
        return str(exc)


def phantom_cohort(
    n: int,
    seed: int,
    mix: Mapping[str, float] | None = None,
    matrix: int = 256,
    workers: int = 1,
    progress: Progress | None = None,
    render_args: Mapping | None = None,
):
    """A phantom cohort of `n` patients rendered in memory; classes follow `mix` exactly (class_plan)."""
    plan = class_plan(n, seed, mix)
    jobs = [(seed, i, plan[i], matrix, dict(render_args or {})) for i in range(n)]
    results = _run(jobs, workers, progress)
    exams = [e for e in results if not isinstance(e, str)]
    skipped = [e for e in results if isinstance(e, str)]
    for why in skipped:
        print(f"skipped: {why}", file=sys.stderr, flush=True)
    from liverview.phantom import parse_mix as phantom_mix

    meta = {"source": "phantom (in memory)", "seed": seed, "patients": n, "mix": dict(phantom_mix(dict(mix) if mix else None)),
            "matrix": matrix, "render_args": dict(render_args or {}),
            "skipped": skipped, "renderer": renderer_fingerprint()}
    return stack(exams, meta)


def renderer_fingerprint() -> str:
    """sha256 (16 hex) of the code that turns a seed into cohort pixels: the phantom, the composite
    windows and this module. A cohort cached by other code is rendered again, not reused."""
    import hashlib

    import liverview.phantom
    import liverview.study.composite

    files = sorted(Path(liverview.phantom.__file__).parent.glob("*.py"))
    files += [Path(liverview.study.composite.__file__), Path(__file__)]
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _run(jobs, workers: int, progress: Progress | None) -> list:
    out: list = []
    if workers <= 1:
        for j, job in enumerate(jobs):
            out.append(_phantom_job(job))
            if progress:
                progress(j + 1, len(jobs))
        return out
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers) as pool:
        for j, exam in enumerate(pool.imap(_phantom_job, jobs, chunksize=2)):
            out.append(exam)
            if progress:
                progress(j + 1, len(jobs))
    return out


# ---- folders of exams -----------------------------------------------------------------------
def read_labels(path: str | os.PathLike) -> dict[str, str]:
    """A labels table: CSV with columns patient_id and class (header required)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise CohortError(f"{path}: no such labels table") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CohortError(f"{path}: not a readable CSV ({exc})") from None
    if not rows or not {"patient_id", "class"} <= set(rows[0]):
        raise CohortError(f"{path}: needs a header with columns patient_id,class")
    out = {}
    for i, row in enumerate(rows, start=2):
        pid = (row.get("patient_id") or "").strip()
        if not pid:
            raise CohortError(f"{path}: line {i}: empty patient_id")
        try:
            out[pid] = check_class(row.get("class") or "", f"{path}: line {i}")
        except ValueError as exc:
            raise CohortError(str(exc)) from None
    return out


def exam_from_load(load, pid: str, cls: str, picks: Mapping[str, Sequence[float]], boxes, matrix, where: str) -> ExamSlices:
    """Picked slices of a loaded Study; `boxes(phase, position)` gives the lesion box on a slice or None."""
    study = load.study
    slices, bxs, present = {}, {}, np.zeros(len(PHASES), dtype=bool)
    for c, p in enumerate(PHASES):
        vol = study.volumes.get(p)
        pk = sorted(float(x) for x in picks.get(p) or [])
        if vol is None or not pk:
            continue
        if len(pk) != K:
            raise CohortError(f"{where}: phase {p} has {len(pk)} picked slices, expected {K}")
        slices[p] = [window_slice(vol.slice_at(pos), p, vol.intensity, vol.window) for pos in pk]
        bxs[p] = [boxes(p, vol.position_of(vol.index_at(pos))) for pos in pk]
        present[c] = True
    return _assemble(pid, cls, "", slices, bxs, present, matrix, where, {"path": str(study.path)})


def exam_from_folder(path: Path, labels: Mapping[str, str] | None, matrix) -> ExamSlices:
    """One exam folder: DICOM + truth.json (phantom), DICOM + a liverview case file, or a PNG/LabelMe export."""
    from liverview.io.loader import load_exam

    # the phantom writes exports as <exam>/export/{P,A,V,D} beside truth.json
    target = path / "export" if (path / "export").is_dir() else path
    try:
        load = load_exam(target)
    except Exception as exc:  # the loader's own errors are one line naming the path
        raise CohortError(f"{path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    truth_file = path / "truth.json"
    truth = json.loads(truth_file.read_text(encoding="utf-8")) if truth_file.exists() else None
    pid = str(truth["patient_id"]) if truth else (load.study.patient_id or path.name)
    cls = None
    if labels is not None:
        cls = labels.get(pid) or labels.get(path.name)
    if cls is None and truth is not None:
        cls = truth.get("class")
    if cls is None:
        raise CohortError(f"{path}: no class for patient {pid!r} (no truth.json and not in the labels table)")
    cls = check_class(cls, str(path))
    member = str(truth.get("member", "")) if truth else ""
    case_file = next(iter(sorted(path.glob("*.liverview.json"))), None)
    seed = load.case_seed
    if case_file is not None:  # an annotator's corrected picks and boxes win
        from liverview.study.persist import load_case

        case = load_case(case_file, load.study)
        picks = {p: case.picks.get(p) or [] for p in PHASES}

        def boxes(p, pos):
            b = case.reader_box(p, pos)
            return None if b is None else list(b.rect)

    elif seed is not None and seed.picks:  # an export: every image is a pick, LabelMe boxes

        picks = seed.picks

        def boxes(p, pos):
            cands = [b for b in seed.boxes if b.phase == p and abs(b.position - pos) < 1e-3]
            return None if not cands else list(max(cands, key=lambda b: b.area).rect)

    elif truth is not None:  # a phantom DICOM exam
        picks = {p: d.get("picks") or [] for p, d in truth["phases"].items()}

        def boxes(p, pos):
            return _box_at((truth["phases"].get(p) or {}).get("slice_boxes") or {}, pos)

    else:
        raise CohortError(f"{path}: no picked slices (needs truth.json, a *.liverview.json case file or an export with images)")
    ex = exam_from_load(load, pid, cls, picks, boxes, matrix, str(path))
    ex.member = member
    return ex


def exam_folders(root: str | os.PathLike) -> list[Path]:
    """Exam folders under `root`: its sub-folders, sorted (the root itself when it has no sub-folders)."""
    root = Path(root)
    if not root.is_dir():
        raise CohortError(f"{root}: not a folder")
    subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return subs or [root]


def folder_cohort(
    root: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    matrix: int | None = 256,
    progress: Progress | None = None,
):
    """A cohort from a folder of exams (see exam_from_folder); all exams resampled to matrix x matrix."""
    labels = read_labels(labels_csv) if labels_csv else None
    folders = exam_folders(root)
    exams = []
    for j, f in enumerate(folders):
        exams.append(exam_from_folder(f, labels, (matrix, matrix) if matrix else None))
        if progress:
            progress(j + 1, len(folders))
    meta = {"source": f"folder {Path(root).resolve()}", "labels": str(labels_csv) if labels_csv else None, "matrix": matrix}
    return stack(exams, meta)


def from_exams(exams: Iterable[ExamSlices], meta: dict | None = None):
    return stack(list(exams), meta)
