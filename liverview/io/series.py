"""Group DICOM headers into studies and series, sort slices along the slice normal, check geometry."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from liverview.io.errors import printable
from liverview.io.headers import SliceHeader, as_float, as_vector
from liverview.io.pixels import decoder_problem, screen_slices, volume_dtype

DEFAULT_MAX_PIXEL_BYTES = 2 * 1024**3
MIN_PHASE_SLICES = 3  # a phase must offer the method's three picks
POSITION_TOL_MM = 0.01
_CONTRAST_TAGS = ("ContrastBolusAgent", "ContrastBolusRoute", "ContrastBolusVolume", "ContrastBolusStartTime")


@dataclass(eq=False)
class Slice:
    """One 2-D image of a series: a single-frame file or one frame of a multi-frame file."""

    header: SliceHeader
    frame: int | None
    position: np.ndarray | None
    orientation: np.ndarray | None
    spacing: tuple[float, float] | None
    rescale_ds: Dataset | None  # per-frame rescale values; None: the file's own header holds them
    plan: tuple[float, float] | None  # (slope, intercept), None when a Modality LUT Sequence applies
    z: float = 0.0  # position along the series' slice normal (mm)

    @property
    def rescale(self) -> Dataset:
        """The dataset pydicom's apply_modality_lut reads for this image."""
        if self.rescale_ds is None:
            if self.plan is None:  # a Modality LUT Sequence: only the full header has it
                return self.header.ds
            self.rescale_ds = Dataset()
            self.rescale_ds.RescaleSlope, self.rescale_ds.RescaleIntercept = self.plan
        return self.rescale_ds


@dataclass
class PhaseGuess:
    """Which phase a series looks like, why, and how sure the guess is (0..1)."""

    phase: str | None = None
    evidence: list[str] = field(default_factory=list)
    confidence: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(eq=False)
class SeriesRecord:
    """What the scan learned about one series, before any pixel is decoded."""

    uid: str
    study_uid: str
    description: str
    modality: str
    number: int | None
    headers: list[SliceHeader]
    slices: list[Slice] = field(default_factory=list)  # sorted by z, the ones a volume is built from
    problems: list[str] = field(default_factory=list)
    refusal: str | None = None  # why the series cannot be loaded as a volume
    not_offered: str | None = None  # why it is not offered as a phase (None: it is a candidate)
    guess: PhaseGuess = field(default_factory=PhaseGuess)
    time: dt.datetime | None = None
    bolus_start: dt.datetime | None = None
    contrast_tags: dict[str, str] = field(default_factory=dict)
    slice_step: np.ndarray | None = None  # vector between consecutive slice origins
    uniform: bool = True
    pixel_bytes: int = 0
    dtype: str = "float32"
    patient: tuple[str, str, str] = ("", "", "")  # PatientID, PatientName, PatientBirthDate

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def n_files(self) -> int:
        return len(self.headers)

    @property
    def loadable(self) -> bool:
        return self.refusal is None

    @property
    def is_candidate(self) -> bool:
        return self.refusal is None and self.not_offered is None

    @property
    def label(self) -> str:
        """How problems name this series: number, description and the end of its UID, so two never read alike."""
        parts = []
        if self.number is not None:
            parts.append(f"#{self.number}")
        if self.description:
            parts.append(f"'{self.description}'")
        has_uid = bool(self.uid) and not self.uid.startswith("(")  # "(no SeriesInstanceUID: ...)" groups
        if not has_uid:
            parts.append("(no SeriesInstanceUID)")
        elif parts:
            parts.append(f"(…{self.uid[-6:].lstrip('.')})")
        else:
            parts.append(self.uid)
        return "series " + " ".join(parts)

    @property
    def matrix(self) -> tuple[int, int] | None:
        if not self.slices:
            return None
        h = self.slices[0].header
        return (h.rows, h.cols)

    @property
    def spacing(self) -> tuple[float, float, float] | None:
        """(slice, row, col) spacing in mm."""
        if not self.slices:
            return None
        s = self.slices[0].spacing or (1.0, 1.0)
        step = float(np.linalg.norm(self.slice_step)) if self.slice_step is not None else 0.0
        return (step, s[0], s[1])

    @property
    def slice_thickness(self) -> float | None:
        return as_float(self.headers[0].ds.get("SliceThickness")) if self.headers else None

    @property
    def image_type(self) -> list[str]:
        return self.headers[0].image_type if self.headers else []

    @property
    def z_range(self) -> tuple[float, float] | None:
        if not self.slices:
            return None
        return (self.slices[0].z, self.slices[-1].z)


@dataclass(eq=False)
class StudyRecord:
    """One study (StudyInstanceUID): its series and the phase each series was assigned."""

    uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_age: str = ""
    patient_sex: str = ""
    date: str = ""
    description: str = ""
    series: list[SeriesRecord] = field(default_factory=list)
    phases: dict[str, str] = field(default_factory=dict)  # phase -> series uid
    problems: list[str] = field(default_factory=list)

    def series_by_uid(self, uid: str) -> SeriesRecord | None:
        return next((s for s in self.series if s.uid == uid), None)

    @property
    def candidates(self) -> list[SeriesRecord]:
        return [s for s in self.series if s.is_candidate]

    @property
    def label(self) -> str:
        bits = [f"study {self.uid or '(no StudyInstanceUID)'}"]
        if self.patient_id:
            bits.append(f"patient {self.patient_id}")
        return ", ".join(bits)


# ---- frames ---------------------------------------------------------------------------------
def _fg_value(item: Dataset | None, shared: Dataset | None, seq: str, attr: str):
    for group in (item, shared):
        if group is None:
            continue
        s = group.get(seq)
        if s:
            value = s[0].get(attr)
            if value is not None:
                return value
    return None


def expand_frames(h: SliceHeader) -> tuple[list[Slice], list[str]]:
    """One Slice per image in the file; multi-frame geometry from functional groups or grid offsets."""
    if h.frames == 1 and not h.has_frame_groups:
        return [Slice(h, None, h.position, h.orientation, h.pixel_spacing, None, h.rescale)], []
    ds = h.ds
    problems = []
    per = ds.get("PerFrameFunctionalGroupsSequence") or []
    shared_seq = ds.get("SharedFunctionalGroupsSequence") or []
    shared = shared_seq[0] if shared_seq else None
    grid = as_vector(ds.get("GridFrameOffsetVector"), h.frames) if "GridFrameOffsetVector" in ds else None
    out = []
    missing_pos = 0
    for f in range(h.frames):
        item = per[f] if f < len(per) else None
        pos = as_vector(_fg_value(item, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
        ori = as_vector(_fg_value(item, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
        spc = as_vector(_fg_value(item, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
        ori = ori if ori is not None else h.orientation
        spacing = (float(spc[0]), float(spc[1])) if spc is not None and np.all(spc > 0) else h.pixel_spacing
        if pos is None and h.position is not None:
            if grid is not None and ori is not None:
                normal = np.cross(ori[:3], ori[3:])
                pos = h.position + grid[f] * normal
            elif f == 0:
                pos = h.position
            else:
                missing_pos += 1
        rescale, plan = None, h.rescale
        slope = as_float(_fg_value(item, shared, "PixelValueTransformationSequence", "RescaleSlope"))
        intercept = as_float(_fg_value(item, shared, "PixelValueTransformationSequence", "RescaleIntercept"))
        if slope is not None and intercept is not None:
            rescale = Dataset()
            rescale.RescaleSlope = slope
            rescale.RescaleIntercept = intercept
            plan = (slope, intercept)
        out.append(Slice(h, f, pos, ori, spacing, rescale, plan))
    if missing_pos:
        problems.append(f"{printable(h.path)}: {missing_pos} of {h.frames} frames have no position")
        for s in out[1:]:
            s.position = None
    return out, problems


# ---- one series ---------------------------------------------------------------------------------
def _majority(slices: list[Slice], key, what: str, label: str, problems: list[str]) -> list[Slice]:
    groups: dict = defaultdict(list)
    for s in slices:
        groups[key(s)].append(s)
    if len(groups) <= 1:
        return slices
    best_key = max(groups, key=lambda k: len(groups[k]))
    kept = groups[best_key]
    problems.append(
        f"{label}: mixed {what} ({len(groups)} kinds): kept the {len(kept)} slices with {what} "
        f"{_fmt_key(best_key)}, left out {len(slices) - len(kept)}"
    )
    return kept


def _fmt_key(key) -> str:
    if isinstance(key, tuple):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in key) + "]"
    return str(key)


def _round(v: np.ndarray | tuple | None, nd: int = 4):
    return None if v is None else tuple(round(float(x), nd) for x in v)


def _sort_key(s: Slice):
    n = s.header.instance_number
    return (n if n is not None else 1 << 30, s.frame or 0, s.header.path)


def analyze_series(uid: str, headers: list[SliceHeader], max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> SeriesRecord:
    """Sort, check and size one series; record every problem; never decode pixels."""
    first = headers[0]
    rec = SeriesRecord(
        uid=uid,
        study_uid=first.study_uid,
        description=str(first.ds.get("SeriesDescription", "") or "").strip(),
        modality=first.modality,
        number=first.series_number,
        headers=headers,
    )
    label = rec.label
    for key in _CONTRAST_TAGS:
        value = first.ds.get(key)
        if value not in (None, "") and str(value).strip():
            rec.contrast_tags[key] = str(value).strip()
    if first.ds.get("ContrastBolusAgentSequence"):
        rec.contrast_tags["ContrastBolusAgentSequence"] = "present"
    times = [t for t in (h.time() for h in headers) if t is not None]
    rec.time = min(times) if times else None
    rec.bolus_start = first.bolus_start()

    rec.problems.extend(f"{label}: {printable(first.path)}: {note}" for note in first.notes)
    images = [h for h in headers if h.pixel_keyword is not None]
    if not images:
        sop = UID(first.sop_class).name if first.sop_class else "unknown SOP class"
        rec.refusal = f"no image data ({sop})"
        rec.not_offered = rec.refusal
        return rec
    if len(images) < len(headers):
        rec.problems.append(f"{label}: {len(headers) - len(images)} files without pixel data left out")
    # One odd file must not take its series down: files that contradict the rest are left out
    # and named; the series is refused only when no file is left.
    described = _leave_out(images, _invalid_description, "with an invalid image description", label, rec.problems)
    if not described:
        rec.refusal = rec.not_offered = f"invalid image description: {_invalid_description(images[0])}"
        return rec
    images = described
    colour = [h for h in images if _colour(h)]
    if colour and 2 * len(colour) >= len(images):
        h = colour[0]
        rec.refusal = f"{h.photometric or 'colour'} images (SamplesPerPixel={h.samples}): only monochrome CT can be loaded"
        rec.not_offered = rec.refusal
        return rec
    images = _leave_out(images, _colour, "with colour pixels in a monochrome series", label, rec.problems)
    syntax_problems = {ts: decoder_problem(ts) for ts in {h.transfer_syntax for h in images}}
    undecodable = [h for h in images if syntax_problems[h.transfer_syntax]]
    if undecodable and 2 * len(undecodable) >= len(images):
        rec.refusal = rec.not_offered = syntax_problems[undecodable[0].transfer_syntax]
        return rec
    images = _leave_out(
        images, lambda h: syntax_problems[h.transfer_syntax], "in a transfer syntax that cannot be decoded here",
        label, rec.problems,
    )
    images = _leave_out(
        images,
        lambda h: (
            f"{h.stored_bytes / 1024**3:.2f} GiB of pixels ({h.frames} frames of {h.rows} x {h.cols})"
            if h.stored_bytes > max_pixel_bytes else None
        ),
        f"larger than the {max_pixel_bytes / 1024**3:.2f} GiB pixel cap",
        label,
        rec.problems,
    )
    if not images:
        rec.refusal = rec.not_offered = f"every file needs more than the {max_pixel_bytes / 1024**3:.2f} GiB pixel cap"
        return rec
    ids = Counter(h.v.get("PatientID") for h in images if h.v.get("PatientID"))
    if len(ids) > 1:
        series_id = max(ids, key=lambda k: ids[k])
        images = _leave_out(
            images,
            lambda h: f"PatientID '{h.v['PatientID']}'" if h.v.get("PatientID", series_id) != series_id else None,
            f"of another patient (the series' PatientID is '{series_id}')",
            label,
            rec.problems,
        )
    ds = images[0].ds
    rec.patient = (
        str(images[0].v.get("PatientID") or ds.get("PatientID", "") or "").strip(),
        str(ds.get("PatientName", "") or "").strip(),
        str(ds.get("PatientBirthDate", "") or "").strip(),
    )
    short = [h for h in images if _truncated(h)]
    if short:
        rec.problems.append(
            f"{label}: {len(short)} files with truncated pixel data left out (first: {printable(short[0].path)})"
        )
        images = [h for h in images if not _truncated(h)]
        if not images:
            rec.refusal = rec.not_offered = "every file's pixel data is truncated"
            return rec

    slices: list[Slice] = []
    for h in images:
        frames, problems = expand_frames(h)
        slices.extend(frames)
        rec.problems.extend(f"{label}: {p}" for p in problems)
    slices, rec.refusal = screen_slices(slices, label, rec.problems)
    if rec.refusal is not None:
        rec.not_offered = rec.refusal
        return rec
    slices = _majority(slices, lambda s: (s.header.rows, s.header.cols), "matrix size (rows, columns)", label, rec.problems)

    located = [s for s in slices if s.position is not None and s.orientation is not None]
    if not located:
        slices.sort(key=_sort_key)
        thickness = rec.slice_thickness or 1.0
        for k, s in enumerate(slices):
            s.orientation = np.array([1.0, 0, 0, 0, 1.0, 0])
            s.position = np.array([0.0, 0.0, k * thickness])
            s.z = k * thickness
        rec.problems.append(
            f"{label}: no patient geometry (ImagePositionPatient/ImageOrientationPatient): "
            f"slices ordered by InstanceNumber, {thickness:g} mm apart"
        )
    else:
        if len(located) < len(slices):
            rec.problems.append(f"{label}: {len(slices) - len(located)} slices without position or orientation left out")
        slices = _majority(located, lambda s: _round(s.orientation), "orientation", label, rec.problems)
        normal = np.cross(slices[0].orientation[:3], slices[0].orientation[3:])
        for s in slices:
            s.z = float(normal @ s.position)
        slices.sort(key=lambda s: (s.z, _sort_key(s)))
    slices = _majority(slices, lambda s: _round(s.spacing), "pixel spacing", label, rec.problems)
    if any(s.spacing is None for s in slices):
        rec.problems.append(f"{label}: no PixelSpacing: 1 mm assumed")
        for s in slices:
            s.spacing = s.spacing or (1.0, 1.0)

    # one slice per position
    kept = [slices[0]]
    duplicates = 0
    first_dup = None
    for s in slices[1:]:
        if abs(s.z - kept[-1].z) <= POSITION_TOL_MM:
            duplicates += 1
            first_dup = first_dup if first_dup is not None else s.z
            continue
        kept.append(s)
    if duplicates:
        rec.problems.append(
            f"{label}: {duplicates} slices duplicate the position of another (first at {first_dup:.2f} mm): "
            "kept one slice per position"
        )
    slices = kept
    rec.slices = slices

    n = len(slices)
    if n >= 2:
        rec.slice_step = (slices[-1].position - slices[0].position) / (n - 1)
        steps = np.diff([s.z for s in slices])
        med = float(statistics.median(steps.tolist()))  # np.median would import numpy.ma (20 ms)
        if n >= 3 and float(steps.max() - steps.min()) > max(POSITION_TOL_MM, 0.01 * med):
            rec.uniform = False
            k = int(np.argmax(np.abs(steps - med)))
            rec.problems.append(
                f"{label}: non-uniform slice spacing: steps from {steps.min():.3g} to {steps.max():.3g} mm "
                f"(median {med:.3g}; gap after {slices[k].z:.2f} mm); the volume uses the mean step, "
                "true positions are kept in meta['slice_positions']"
            )
    else:
        normal = np.cross(slices[0].orientation[:3], slices[0].orientation[3:])
        thick = as_float(first.ds.get("SpacingBetweenSlices")) or rec.slice_thickness or 1.0
        rec.slice_step = normal * abs(thick)

    rec.dtype = volume_dtype(slices, ct=rec.modality == "CT")
    h0 = slices[0].header
    out_bytes = np.dtype(rec.dtype).itemsize
    rec.pixel_bytes = n * h0.rows * h0.cols * max(out_bytes, max(h0.bits_allocated // 8, 1) * h0.samples)
    if rec.pixel_bytes > max_pixel_bytes:
        rec.refusal = (
            f"pixel data needs {rec.pixel_bytes / 1024**3:.2f} GiB ({n} x {h0.rows} x {h0.cols}), "
            f"more than the {max_pixel_bytes / 1024**3:.2f} GiB cap: not decoded"
        )
    else:
        for ts in sorted({s.header.transfer_syntax for s in slices}):
            problem = decoder_problem(ts)
            if problem:
                rec.refusal = problem
                break
    if rec.refusal is not None:
        rec.not_offered = rec.refusal
    elif rec.modality != "CT":
        rec.not_offered = f"modality {rec.modality or 'missing'}, not CT"
    elif "LOCALIZER" in rec.image_type:
        rec.not_offered = "localizer (scout) image"
    elif n < MIN_PHASE_SLICES:
        rec.not_offered = f"only {n} slice{'s' if n != 1 else ''}: a phase needs at least {MIN_PHASE_SLICES}"
    return rec


def _leave_out(images: list[SliceHeader], reason, what: str, label: str, problems: list[str]) -> list[SliceHeader]:
    """The files `reason` has nothing against; one problem line naming the first file left out and why."""
    kept, out = [], []
    for h in images:
        why = reason(h)
        (out if why else kept).append((h, why))
    if out and kept:  # with nothing kept the series' refusal says why
        h, why = out[0]
        n = len(out)
        problems.append(
            f"{label}: {n} file{'s' if n != 1 else ''} {what} left out (first: {printable(h.path)}: {why})"
        )
    return [h for h, _ in kept]


def _invalid_description(h: SliceHeader) -> str | None:
    if h.rows <= 0 or h.cols <= 0 or h.bits_allocated not in (1, 8, 16, 32, 64):
        return ", ".join(
            f"{k}={h.v[k]}" if h.v.get(k) is not None else f"{k} missing" for k in ("Rows", "Columns", "BitsAllocated")
        )
    return None


def _colour(h: SliceHeader) -> str | None:
    if h.samples != 1 or h.photometric not in ("MONOCHROME1", "MONOCHROME2", ""):
        return f"PhotometricInterpretation={h.photometric or '?'} SamplesPerPixel={h.samples}"
    return None


# ---- studies ---------------------------------------------------------------------------------
_PATIENT_FIELDS = ("PatientID", "PatientName", "PatientBirthDate")


def _same_person(a: str, b: str) -> bool:
    return not a or not b or a.casefold().rstrip("^ ") == b.casefold().rstrip("^ ")


def patient_conflicts(series: tuple[str, str, str], study: tuple[str, str, str]) -> list[str]:
    """The identity fields where a series contradicts its study (a field absent on either side never does)."""
    return [
        f"{k} '{a}' (the study's: '{b}')"
        for k, a, b in zip(_PATIENT_FIELDS, series, study)
        if not _same_person(a, b)
    ]


def _study_patient(records: list[SeriesRecord]) -> tuple[str, str, str]:
    """The identity most files of the study carry (ties: the first series' identity)."""
    weight: Counter = Counter()
    for rec in records:
        if any(rec.patient):
            weight[rec.patient] += rec.n_files
    if not weight:
        return ("", "", "")
    return max(weight, key=lambda k: weight[k])  # max keeps the first of equals


def group_studies(headers: list[SliceHeader], max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> list[StudyRecord]:
    """Studies by StudyInstanceUID, their series by SeriesInstanceUID, each series analysed."""
    by_study: dict[str, dict[str, list[SliceHeader]]] = defaultdict(lambda: defaultdict(list))
    missing_series = Counter()
    for h in headers:
        series_uid = h.series_uid
        if not series_uid:
            missing_series[h.study_uid] += 1
            # files without a series UID still group by what they share
            series_uid = f"(no SeriesInstanceUID: series {h.ds.get('SeriesNumber', '?')} '{h.ds.get('SeriesDescription', '')}')"
        by_study[h.study_uid][series_uid].append(h)
    studies = []
    for study_uid, series_map in by_study.items():
        records = [analyze_series(series_uid, hs, max_pixel_bytes) for series_uid, hs in series_map.items()]
        patient = _study_patient(records)
        owner = next((r for r in records if r.patient == patient), records[0])
        ds = owner.headers[0].ds
        study = StudyRecord(
            uid=study_uid,
            patient_id=patient[0],
            patient_name=patient[1],
            patient_age=str(ds.get("PatientAge", "") or ""),
            patient_sex=str(ds.get("PatientSex", "") or ""),
            date=str(ds.get("StudyDate", "") or ""),
            description=str(ds.get("StudyDescription", "") or ""),
        )
        if not study_uid:
            study.problems.append("files without StudyInstanceUID grouped into one study")
        if missing_series[study_uid]:
            n = missing_series[study_uid]
            study.problems.append(f"{n} file{'' if n == 1 else 's'} without SeriesInstanceUID grouped by series number")
        for rec in records:
            conflicts = patient_conflicts(rec.patient, patient)
            if conflicts:
                # Another patient's series under this StudyInstanceUID is never merged: it is
                # listed, refused, and cannot be chosen as a phase (not even by an override).
                rec.refusal = rec.not_offered = f"another patient: {'; '.join(conflicts)}: kept apart from this study"
        study.series = records
        study.series.sort(key=lambda s: (s.time or dt.datetime.max, s.number if s.number is not None else 1 << 30, s.uid))
        studies.append(study)
    studies.sort(key=lambda st: (st.patient_id, st.date, st.uid))
    return studies


def _truncated(h: SliceHeader) -> bool:
    """Native pixel data shorter than Rows x Columns x frames needs, or running past the file's end."""
    if h.pixel_offset is None or h.bits_allocated < 8:
        return False
    need = h.stored_bytes
    return (h.pixel_length or 0) < need or h.pixel_offset + need > h.file_size
