"""Load an exam into a Study: pick the study and its phases, allocate the volumes, decode the slices.

Decoding fills preallocated volumes in an order that shows something early: the middle
slice of every phase first, then outwards from the middle, the phases taking turns. Each
volume's `ready` mask says which slices hold pixels; `on_study` hands the Study over before
decoding starts so a viewer can show slices as they arrive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from liverview.io.errors import ExamError, LoadCancelled, one_line
from liverview.io.headers import as_float
from liverview.io.inputs import open_input
from liverview.io.matching import overlap_problems
from liverview.io.messages import condense, plural
from liverview.io.phase_id import assign_phases
from liverview.io.pixels import (
    can_read_native, decode_error, decode_file, decode_into_int16, native_fast_path, read_native, read_native_int16, store_hu,
)
from liverview.io.scan import Progress, ScanResult, is_cancelled, scan_input
from liverview.io.series import DEFAULT_MAX_PIXEL_BYTES, SeriesRecord, Slice, StudyRecord
from liverview.study.case import Box, PhaseSource, Study
from liverview.study.phases import PHASE_NAMES, PHASES
from liverview.study.volume import HU, Volume, affine_from_dicom


@dataclass
class CaseSeed:
    """Picks and boxes an exam brings with it (PACS exports: its LabelMe boxes, and picks when it holds only picks)."""

    picks: dict[str, list[float]] = field(default_factory=dict)
    boxes: list[Box] = field(default_factory=list)

    def apply(self, case) -> None:
        """Put the picks and boxes into a fresh Case (its user boxes are replaced)."""
        if self.picks:
            case.set_all_picks(self.picks)
        if self.boxes:
            case.replace_boxes("user", [dataclasses.replace(b) for b in self.boxes])

    def replace_labelme_boxes(self, case, phases: list[str]) -> dict[str, int]:
        """In `phases`, put this seed's LabelMe boxes in place of the case's; the reader's own boxes stay.

        Returns how many LabelMe boxes each of those phases had before.
        """
        before: dict[str, int] = {}
        kept = []
        for b in case.boxes:
            if b.origin == "user" and b.author == "labelme" and b.phase in phases:
                before[b.phase] = before.get(b.phase, 0) + 1
            elif b.origin == "user":
                kept.append(b)
        new = [dataclasses.replace(b) for b in self.boxes if b.phase in phases]
        case.replace_boxes("user", kept + new)
        return before


@dataclass(eq=False)
class ExamLoad:
    """The result of loading an exam."""

    study: Study
    scan: ScanResult
    problems: list[str] = field(default_factory=list)
    candidates: list[SeriesRecord] = field(default_factory=list)
    case_seed: CaseSeed | None = None
    record: StudyRecord | None = None


# ---- choosing ---------------------------------------------------------------------------------
def choose_study(result: ScanResult, study_uid: str | None) -> StudyRecord:
    if study_uid is not None:
        st = result.study(study_uid)
        if st is None:
            known = ", ".join(s.uid for s in result.studies) or "none"
            raise ExamError(f"{result.path}: no study {study_uid} here (studies: {known})")
        return st
    usable = [st for st in result.studies if st.candidates]
    if not usable:
        raise ExamError(f"{result.path}: {_nothing_usable(result)}", _why_not_usable(result))
    return max(usable, key=lambda st: (len(st.phases), len(st.candidates)))


def _nothing_usable(result: ScanResult) -> str:
    series = result.series
    if not series:
        found = f"no DICOM images found ({plural(result.n_files, 'file')}, {len(result.skipped)} skipped)"
        hint = image_hint(result)
        return f"{found}; {hint}" if hint else found
    reasons: dict[str, int] = {}
    for s in series:
        reasons[s.not_offered or "?"] = reasons.get(s.not_offered or "?", 0) + 1
    top = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
    return f"no CT series usable as a phase ({len(series)} series: {top})"


def _why_not_usable(result: ScanResult) -> list[str]:
    """Every reason behind "nothing usable": each series and why it is not offered, each skipped file,
    every problem the scan found, and the export layout hint when there are images but no DICOM."""
    lines = [f"{s.label}: {s.not_offered or 'not offered as a phase'}" for s in result.series]
    lines += [f"{path}: {why}" for path, why in result.skipped]
    lines += list(result.problems)
    hint = image_hint(result)
    return lines + ([hint] if hint else [])


def image_hint(result: ScanResult) -> str | None:
    """The export layout to use when the location holds PNG/JPEG images but no DICOM (else None)."""
    from liverview.io.export import layout_hint

    if result.series or result.input is None:
        return None
    return layout_hint(result.input.root, list(result.input.files))


def dicom_identity(st: StudyRecord, series: dict[str, SeriesRecord]) -> dict:
    """What names a DICOM exam by content, from headers only: its UIDs and a digest of each phase's SOP Instance UIDs."""
    return {
        "kind": "dicom",
        "study_uid": st.uid,
        "series_uids": {p: s.uid for p, s in series.items()},
        "sop_sha256": {
            p: hashlib.sha256("\n".join(sorted({sl.header.sop_instance for sl in s.slices})).encode()).hexdigest()
            for p, s in series.items()
        },
    }


def _apply_override(result: ScanResult, st: StudyRecord, phases: dict[str, str]) -> None:
    for phase, uid in phases.items():
        if phase not in PHASES:
            raise ExamError(f"{result.path}: unknown phase {phase!r} in override (expected {', '.join(PHASES)})")
        s = st.series_by_uid(uid)
        if s is None:
            raise ExamError(f"{result.path}: phase {phase}: no series {uid} in study {st.uid}")
        if s.refusal:
            raise ExamError(f"{result.path}: phase {phase}: {s.label} cannot be loaded: {s.refusal}")
    if len(set(phases.values())) != len(phases):
        raise ExamError(f"{result.path}: override gives one series to two phases")
    for uid in phases.values():
        s = st.series_by_uid(uid)
        if s.not_offered:  # a person may choose a series the scan did not offer
            s.not_offered = None
    assign_phases(st, fixed=phases)


# ---- volumes ----------------------------------------------------------------------------------
def _meta(s: SeriesRecord) -> dict:
    ds = s.slices[0].header.ds

    def text(key):
        v = ds.get(key)
        return "" if v is None else str(v)

    def first_number(key):
        return as_float(ds.get(key))

    window = (first_number("WindowCenter"), first_number("WindowWidth"))
    return {
        "modality": s.modality,
        "series_number": s.number,
        "slice_thickness": s.slice_thickness,
        "kvp": first_number("KVP"),
        "tube_current": first_number("XRayTubeCurrent"),
        "kernel": text("ConvolutionKernel"),
        "manufacturer": text("Manufacturer"),
        "model": text("ManufacturerModelName"),
        "acquisition_time": s.time.isoformat() if s.time else None,
        "bolus_start": s.bolus_start.isoformat() if s.bolus_start else None,
        "contrast": dict(s.contrast_tags),
        "dicom_window": list(window) if None not in window else None,
        "frame_of_reference_uid": text("FrameOfReferenceUID"),
        "transfer_syntax": sorted({sl.header.transfer_syntax for sl in s.slices}),
        "dtype": s.dtype,
        "slice_positions": _positions_along_step(s),
        "sop_instance_uids": [sl.header.sop_instance for sl in s.slices],
        "uniform_spacing": s.uniform,
    }


def _positions_along_step(s: SeriesRecord) -> list[float]:
    """Each slice's position along the volume's slice direction (the normal unless the gantry tilts)."""
    step = s.slice_step
    norm = float(np.linalg.norm(step)) if step is not None else 0.0
    if norm == 0.0:
        return [round(sl.z, 4) for sl in s.slices]
    n = step / norm
    return [round(float(sl.position @ n), 4) for sl in s.slices]


def allocate_volume(s: SeriesRecord) -> Volume:
    """An all-zero volume with the series' geometry; `ready` all False until slices are decoded."""
    first = s.slices[0]
    rows, cols = first.header.rows, first.header.cols
    pixels = np.zeros((s.n_slices, rows, cols), dtype=s.dtype)
    affine = affine_from_dicom(first.position, first.orientation, first.spacing, s.slice_step)
    return Volume(
        pixels=pixels,
        affine=affine,
        intensity=HU,
        series_uid=s.uid,
        description=s.description,
        meta=_meta(s),
        ready=np.zeros(s.n_slices, dtype=bool),
    )


@dataclass
class _Task:
    phase: str
    volume: Volume
    items: list[tuple[int, Slice]]


def decode_order(series: dict[str, SeriesRecord], volumes: dict[str, Volume]) -> list[_Task]:
    """Middle slice of every phase first, then outwards, phases taking turns; one pydicom task per multi-frame file."""
    per_phase: dict[str, list[_Task]] = {}
    for phase, s in series.items():
        vol = volumes[phase]
        n = s.n_slices
        mid = (n - 1) // 2
        order = [mid]
        for d in range(1, n):
            for k in (mid + d, mid - d):
                if 0 <= k < n:
                    order.append(k)
        tasks: list[_Task] = []
        grouped: dict[str, _Task] = {}
        for k in order:
            sl = s.slices[k]
            if sl.frame is not None and not can_read_native(sl):
                task = grouped.get(sl.header.path)
                if task is None:
                    task = grouped[sl.header.path] = _Task(phase, vol, [])
                    tasks.append(task)
                task.items.append((k, sl))
            else:
                tasks.append(_Task(phase, vol, [(k, sl)]))
        per_phase[phase] = tasks
    out: list[_Task] = []
    queues = [list(reversed(t)) for t in per_phase.values()]
    while any(queues):
        for q in queues:
            if q:
                out.append(q.pop())
    return out


def run_task(task: _Task) -> tuple[int, list[tuple[int, str]]]:
    """Decode one task into its volume; return (clipped values, [(slice index, error)])."""
    vol = task.volume
    clipped = 0
    errors: list[tuple[int, str]] = []
    first = task.items[0][1]
    if first.frame is not None and not can_read_native(first):
        try:
            arrays = decode_file(first.header.path, [sl.frame for _, sl in task.items], first.header.transfer_syntax)
        except Exception as exc:  # every decoder failure becomes a problem line
            return 0, [(k, decode_error(exc, first.header.transfer_syntax)) for k, _ in task.items]
        for k, sl in task.items:
            try:
                clipped += store_hu(arrays[sl.frame], sl, vol.pixels[k])
                vol.ready[k] = True
            except Exception as exc:
                errors.append((k, one_line(exc) or type(exc).__name__))
        return clipped, errors
    for k, sl in task.items:
        try:
            out = vol.pixels[k]
            if native_fast_path(sl, out):
                clipped += read_native_int16(sl, out)
            elif not can_read_native(sl) and (direct := decode_into_int16(sl, out)) is not None:
                clipped += direct
            else:
                if can_read_native(sl):
                    raw = read_native(sl)
                else:
                    raw = decode_file(sl.header.path, None, sl.header.transfer_syntax, header=sl.header)[0]
                if raw.ndim == 3 and raw.shape[0] == 1:
                    raw = raw[0]
                if raw.shape != out.shape:
                    raise ValueError(f"decoded shape {raw.shape} differs from Rows x Columns {out.shape}")
                clipped += store_hu(raw, sl, out)
            vol.ready[k] = True
        except Exception as exc:
            errors.append((k, decode_error(exc, sl.header.transfer_syntax)))
    return clipped, errors


def decode_volumes(
    series: dict[str, SeriesRecord],
    volumes: dict[str, Volume],
    progress: Progress | None = None,
    cancel=None,
    workers: int = 1,
) -> list[str]:
    """Fill the volumes; return one problem line per series with undecodable slices or clipped values."""
    tasks = decode_order(series, volumes)
    total = sum(len(t.items) for t in tasks)
    done = 0
    clipped: dict[str, int] = {}
    errors: dict[str, list[tuple[int, str]]] = {}

    def account(task: _Task, result: tuple[int, list[tuple[int, str]]]) -> None:
        nonlocal done
        c, errs = result
        clipped[task.phase] = clipped.get(task.phase, 0) + c
        if errs:
            errors.setdefault(task.phase, []).extend(errs)
        done += len(task.items)
        if progress is not None:
            progress(done, total, f"decoding {PHASE_NAMES.get(task.phase, task.phase)}")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if workers <= 1:
            for task in tasks:
                if is_cancelled(cancel):
                    raise LoadCancelled("load cancelled")
                account(task, run_task(task))
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="liverview-decode") as pool:
                futures = [(t, pool.submit(_guarded, t, cancel)) for t in tasks]
                try:
                    for task, fut in futures:
                        result = fut.result()
                        if result is None or is_cancelled(cancel):
                            raise LoadCancelled("load cancelled")
                        account(task, result)
                except BaseException:
                    for _, fut in futures:
                        fut.cancel()
                    raise
    problems = []
    for phase, s in series.items():
        errs = errors.get(phase)
        if errs:
            errs.sort()
            k, msg = errs[0]
            problems.append(
                f"{s.label}: {len(errs)} of {s.n_slices} slices could not be decoded "
                f"(first: slice {k}, {s.slices[k].header.path}: {msg})"
            )
        if clipped.get(phase):
            problems.append(f"{s.label}: {clipped[phase]} pixel values beyond the int16 HU range were clipped")
    return problems


def load_series(series: SeriesRecord, progress: Progress | None = None, cancel=None) -> tuple[Volume | None, list[str]]:
    """Decode any one series (a phase or not) into a Volume; (None, [reason]) when it is refused."""
    if series.refusal is not None:
        return None, [f"{series.label}: not loadable: {series.refusal}"]
    volume = allocate_volume(series)
    problems = decode_volumes({series.label: series}, {series.label: volume}, progress, cancel)
    return volume, list(series.problems) + problems


def _guarded(task: _Task, cancel):
    if is_cancelled(cancel):
        return None
    return run_task(task)


def build_study(result: ScanResult, st: StudyRecord) -> tuple[Study, dict[str, SeriesRecord]]:
    series = {p: st.series_by_uid(uid) for p, uid in st.phases.items()}
    volumes = {p: allocate_volume(s) for p, s in series.items()}
    sources = {
        p: PhaseSource(
            series_uid=s.uid,
            description=s.description,
            evidence=list(s.guess.evidence),
            confidence=float(s.guess.confidence),
            overridden=bool(s.guess.evidence and s.guess.evidence[0] == "set by user"),
        )
        for p, s in series.items()
    }
    study = Study(
        volumes=volumes,
        sources=sources,
        study_uid=st.uid,
        patient_id=st.patient_id,
        path=result.path,
        info={
            "patient_name": st.patient_name,
            "patient_age": st.patient_age,
            "patient_sex": st.patient_sex,
            "study_date": st.date,
            "study_description": st.description,
            "source": result.kind,
            "identity": dicom_identity(st, series),
        },
    )
    return study, series


def default_workers(series: dict[str, SeriesRecord]) -> int:
    """Decode threads when the caller names none: every core (at most 4) for exams whose decoder lets
    go of the GIL (imagecodecs: JPEG 2000 lossless, JPEG Lossless, JPEG-LS), else one, which is as
    fast for native data read straight into the volume (benchmarks/load_exam.py)."""
    from liverview.io.pixels import imagecodecs_decodes

    syntaxes = {sl.header.transfer_syntax for s in series.values() for sl in s.slices}
    if syntaxes and all(imagecodecs_decodes(ts) for ts in syntaxes):
        return max(1, min(4, os.cpu_count() or 1))
    return 1


def load_dicom(
    result: ScanResult,
    phases: dict[str, str] | None = None,
    study_uid: str | None = None,
    progress: Progress | None = None,
    cancel=None,
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
    on_study: Callable[[Study], None] | None = None,
    workers: int | None = None,
) -> ExamLoad:
    st = choose_study(result, study_uid)
    if phases:
        _apply_override(result, st, phases)
    if not st.phases:
        raise ExamError(f"{result.path}: no series could be assigned a phase in study {st.uid}")
    study, series = build_study(result, st)
    total = sum(s.pixel_bytes for s in series.values())
    if total > max_pixel_bytes:
        raise ExamError(
            f"{result.path}: the {len(series)} phases need {total / 1024**3:.2f} GiB of pixels, "
            f"more than the {max_pixel_bytes / 1024**3:.2f} GiB cap"
        )
    if on_study is not None:
        on_study(study)
    problems = list(result.problems) + list(st.problems)
    for s in series.values():
        problems.extend(s.problems)
    decoded = decode_volumes(series, study.volumes, progress, cancel, workers or default_workers(series))
    problems.extend(decoded)
    for p in PHASES:
        if p not in series:
            problems.append(f"phase {p} ({PHASE_NAMES[p]}): no series found")
    if len(result.studies) > 1:
        problems.append(f"{len(result.studies)} studies at this location; loaded {st.label} (choose with study_uid)")
    if len({v.meta.get("frame_of_reference_uid") for v in study.volumes.values()}) > 1:
        problems.append("phases have different FrameOfReferenceUIDs: they are matched by position all the same")
    problems.extend(overlap_problems(study))
    candidates = [s for s in st.series if s.is_candidate or s.uid in st.phases.values()]
    return ExamLoad(study=study, scan=result, problems=condense(problems), candidates=candidates, record=st)


def load_exam(
    path: str | os.PathLike,
    phases: dict[str, str] | None = None,
    study_uid: str | None = None,
    progress: Progress | None = None,
    cancel=None,
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
    on_study: Callable[[Study], None] | None = None,
    workers: int | None = None,
) -> ExamLoad:
    """Load the exam at `path` (DICOM folder, DICOMDIR, file, zip, or a PACS image export).

    `phases` overrides the automatic assignment (phase -> SeriesInstanceUID); `progress` is
    called as (done, total, message); `cancel` is a threading.Event or a callable returning
    True to stop (LoadCancelled is raised); `on_study` receives the Study before its pixels
    are decoded. Raises ExamError (one line naming the path) when nothing usable is there.

    `workers` > 1 decodes in a thread pool (None: `default_workers`). JPEG 2000, JPEG Lossless and JPEG-LS decode
    through imagecodecs, which lets go of the GIL: two workers use both cores of the 2-core
    development machine (benchmarks/load_exam.py --workers 2). Native (uncompressed) data,
    read straight into the volume, and RLE gain nothing, so one thread is the default.
    """
    from liverview.io.export import find_export_root, load_export_input

    inp = open_input(path)
    try:
        export_root = find_export_root(inp.root) if inp.kind in ("folder", "zip") else None
        if export_root is not None:
            return load_export_input(inp, export_root)
        result = scan_input(inp, max_pixel_bytes, progress, cancel)
        return load_dicom(result, phases, study_uid, progress, cancel, max_pixel_bytes, on_study, workers)
    except BaseException:
        inp.close()
        raise

