"""Read one DICOM file's header (no pixels) and where its pixel bytes start."""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import struct
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID

from liverview.io.errors import one_line
from liverview.io.quick_header import QuickFallback, quick_header

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"

# Only these elements are parsed; pydicom skips the values of all others.
HEADER_TAGS = [
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID",
    "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate",
    "StudyTime", "SeriesTime", "AcquisitionTime", "ContentTime", "AcquisitionDateTime",
    "AccessionNumber", "Modality", "Manufacturer", "StudyDescription", "SeriesDescription",
    "ManufacturerModelName", "PatientName", "PatientID", "PatientBirthDate", "PatientSex",
    "PatientAge", "ContrastBolusAgent", "ContrastBolusAgentSequence", "BodyPartExamined",
    "SliceThickness", "KVP", "SpacingBetweenSlices", "ProtocolName", "ContrastBolusRoute",
    "ContrastBolusVolume", "ContrastBolusStartTime", "ContrastBolusTotalDose",
    "ConvolutionKernel", "XRayTubeCurrent", "StudyInstanceUID", "SeriesInstanceUID",
    "StudyID", "SeriesNumber", "AcquisitionNumber", "InstanceNumber",
    "ImagePositionPatient", "ImageOrientationPatient", "FrameOfReferenceUID",
    "ImageComments", "SamplesPerPixel", "PhotometricInterpretation", "NumberOfFrames",
    "Rows", "Columns", "PixelSpacing", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "PixelPaddingValue", "WindowCenter", "WindowWidth",
    "RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence",
    "GridFrameOffsetVector", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
    "FloatPixelPaddingValue",
]

_HEADER_TAG_INTS = [int(tag_for_keyword(k)) for k in HEADER_TAGS]
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF


# Values every file needs, read from the raw bytes: pydicom's per-value conversion (DSfloat
# objects, keyword lookups) costs more than the whole header read for large exams. Text that
# needs the character set (descriptions, names) goes through pydicom on the first header of a
# series only. tests/io compare these values with pydicom's.
_FAST_VR = {
    0x00280010: "US", 0x00280011: "US", 0x00280100: "US", 0x00280101: "US", 0x00280103: "US",
    0x00280002: "US", 0x00280008: "IS", 0x00200013: "IS", 0x00200011: "IS",
    0x00200032: "DS", 0x00200037: "DS", 0x00280030: "DS", 0x00281053: "DS", 0x00281052: "DS",
    0x0020000D: "UI", 0x0020000E: "UI", 0x00080016: "UI", 0x00080018: "UI",
    0x00080060: "CS", 0x00280004: "CS", 0x00080008: "CS",
    0x00080022: "DA", 0x00080032: "TM", 0x00080023: "DA", 0x00080033: "TM",
    0x00080021: "DA", 0x00080031: "TM", 0x00080020: "DA", 0x0008002A: "DT",
    0x00100020: "LO",
}
_TAG = {
    "Rows": 0x00280010, "Columns": 0x00280011, "BitsAllocated": 0x00280100, "BitsStored": 0x00280101,
    "PixelRepresentation": 0x00280103, "SamplesPerPixel": 0x00280002, "NumberOfFrames": 0x00280008,
    "InstanceNumber": 0x00200013, "SeriesNumber": 0x00200011, "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037, "PixelSpacing": 0x00280030, "RescaleSlope": 0x00281053,
    "RescaleIntercept": 0x00281052, "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E,
    "SOPClassUID": 0x00080016, "SOPInstanceUID": 0x00080018, "Modality": 0x00080060,
    "PhotometricInterpretation": 0x00280004, "ImageType": 0x00080008, "AcquisitionDate": 0x00080022,
    "AcquisitionTime": 0x00080032, "ContentDate": 0x00080023, "ContentTime": 0x00080033,
    "SeriesDate": 0x00080021, "SeriesTime": 0x00080031, "StudyDate": 0x00080020,
    "AcquisitionDateTime": 0x0008002A, "PatientID": 0x00100020,
}


def _convert(vr: str, raw: bytes, little: bool) -> Any:
    if vr == "US":
        if len(raw) < 2:
            raise ValueError("short US value")
        return struct.unpack("<H" if little else ">H", raw[:2])[0]
    text = raw.decode("ascii").strip(" \x00")
    if vr == "DS":
        return tuple(float(x) for x in text.split("\\"))
    if vr == "IS":
        return tuple(int(float(x)) for x in text.split("\\"))
    if vr == "CS":
        return tuple(x.strip() for x in text.split("\\"))
    return text


def _plain(value: Any, vr: str) -> Any:
    """A pydicom element value in the same shape as _convert returns."""
    if value is None or value == "":
        return None
    if vr in ("DS", "IS", "CS"):
        seq = value if isinstance(value, (list, tuple, MultiValue)) else [value]
        cast = float if vr == "DS" else (lambda v: int(float(v))) if vr == "IS" else (lambda v: str(v).strip())
        return tuple(cast(v) for v in seq)
    if vr == "US":
        return int(value[0] if isinstance(value, (list, tuple, MultiValue)) else value)
    return str(value).strip()


_VR_BYTES = {tag: vr.encode() for tag, vr in _FAST_VR.items()}
_SEEN: dict[tuple[int, bytes], Any] = {}  # most values repeat across the files of a series
_SEEN_MAX = 8192
_MISSING = object()


def values_from_raw(elements: dict[int, tuple[bytes | None, bytes]]) -> dict[str, Any]:
    """fast_values from the raw little-endian elements of quick_header."""
    out: dict[str, Any] = {}
    seen = _SEEN
    for name, tag in _TAG.items():
        item = elements.get(tag)
        if item is None:
            continue
        vr, raw = item
        if not raw or (vr is not None and vr != b"UN" and vr != _VR_BYTES[tag]):
            continue  # UN holds the value as the dictionary VR would (PS3.5 6.2.2)
        key = (tag, raw)
        value = seen.get(key, _MISSING)
        if value is _MISSING:
            try:
                value = _convert(_FAST_VR[tag], raw, True)
            except (ValueError, UnicodeDecodeError, struct.error):
                value = None
            if len(seen) >= _SEEN_MAX:
                seen.clear()
            seen[key] = value
        if value is not None and value != "":
            out[name] = value
    return out


def fast_values(ds: Dataset) -> dict[str, Any]:
    """The per-file values (geometry, pixel description, UIDs, times) as plain Python values."""
    out: dict[str, Any] = {}
    for name, tag in _TAG.items():
        vr = _FAST_VR[tag]
        elem = ds.get_item(tag)
        if elem is None:
            continue
        try:
            raw = getattr(elem, "value", None)
            if isinstance(elem, RawDataElement) and elem.VR in (None, vr) and isinstance(raw, bytes):
                value = _convert(vr, raw, elem.is_little_endian) if raw else None
            else:
                value = _plain(ds[tag].value, vr)
        except Exception:  # malformed value: let pydicom try, else treat as absent
            try:
                value = _plain(ds[tag].value, vr)
            except Exception:
                value = None
        if value is not None and value != "":
            out[name] = value
    return out


MAX_FRAMES = 20_000  # an enhanced CT of 0.5 mm slices over 2 m has 4,000 frames
_MIN_FRAME_ITEM = 8  # an encapsulated frame is at least one item header
_MAX_DEFLATE_RATIO = 1100  # deflate cannot do better than about 1032:1


def _element_name(tag: int) -> str:
    t = Tag(tag)
    keyword = keyword_for_tag(t) or ("private element" if t.is_private else "element")
    return f"{keyword} {t}"


def check_elements(ds: Dataset, drop: bool = False, depth: int = 0) -> list[str]:
    """Decode every element pydicom still holds raw; one line per element that cannot be decoded.

    pydicom converts values on first access and raises then (an unknown VR raises
    NotImplementedError), so a header is checked once here instead of failing wherever a
    value is first read. With `drop` the bad elements are removed and the walk goes on;
    without, it stops at the first.
    """
    bad: list[str] = []
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
            if elem.VR == "PN":
                str(elem.value)  # person names decode their character set lazily
            elif elem.VR == "SQ" and depth < 8:
                for item in elem.value or ():
                    inner = check_elements(item, drop, depth + 1)
                    bad.extend(f"{_element_name(tag)} > {line}" for line in inner)
                    if inner and not drop:
                        return bad
        except Exception as exc:  # pydicom raises many kinds on malformed values
            bad.append(f"{_element_name(tag)}: {one_line(exc) or type(exc).__name__}")
            if not drop:
                return bad
            del ds[tag]
    return bad


def frames_problem(v: dict[str, Any], file_size: int, transfer_syntax: str, pixel_length: int | None = None) -> str | None:
    """Why NumberOfFrames cannot be true for a file of this size, or None.

    Checked before anything is built per frame: a 2 KB file claiming 10^8 frames would
    otherwise cost one object per frame.
    """
    value = v.get("NumberOfFrames")
    if not value:
        return None
    n = value[0]
    if n < 0:
        return f"NumberOfFrames={n} is not a frame count"
    if n <= 1:
        return None
    if n > MAX_FRAMES:
        return f"NumberOfFrames={n}: more than the {MAX_FRAMES} frames a file may hold"
    rows, cols = v.get("Rows", 0), v.get("Columns", 0)
    samples = v.get("SamplesPerPixel", 1) or 1
    frame_bytes = (rows * cols * samples * v.get("BitsAllocated", 0) + 7) // 8
    uid = UID(transfer_syntax)
    native = uid.is_transfer_syntax and not uid.is_compressed
    if native and uid.is_deflated:
        fits = n * frame_bytes <= file_size * _MAX_DEFLATE_RATIO
    elif native:
        fits = n * frame_bytes <= (file_size if pixel_length is None else pixel_length)
    else:  # encapsulated or unknown: each frame takes at least an item header
        fits = n * _MIN_FRAME_ITEM <= file_size
    if fits:
        return None
    room = f"its {pixel_length} bytes of pixel data" if native and pixel_length is not None else f"the file's {file_size} bytes"
    return f"NumberOfFrames={n} ({rows} x {cols}, {v.get('BitsAllocated', 0)} bits) cannot fit in {room}"


class _Clamped:
    """A file whose read(n) never asks for more than is left, so a forged length allocates nothing.

    pydicom reads an element's value with fp.read(length); a length of 2**31 in a 2 KB file
    would allocate 2 GiB before finding the file short.
    """

    def __init__(self, fp, size: int) -> None:
        self._fp = fp
        self._size = size

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            return self._fp.read()
        return self._fp.read(min(n, max(self._size - self._fp.tell(), 0)))

    def __getattr__(self, name: str):
        return getattr(self._fp, name)


def _dcmread(fp, size: int, force: bool) -> Dataset:
    return pydicom.dcmread(_Clamped(fp, size), stop_before_pixels=True, specific_tags=_HEADER_TAG_INTS, force=force)


def read_dataset(path: str, notes: list[str] | None = None) -> Dataset:
    """The header elements liverview uses, parsed by pydicom (an empty Dataset if that fails).

    Elements pydicom cannot decode are left out, each named in `notes`.
    """
    try:
        with open(path, "rb") as fp:
            head = fp.read(132)
            fp.seek(0)
            force = head[128:132] != b"DICM"
            ds = _dcmread(fp, os.fstat(fp.fileno()).st_size, force)
    except Exception as exc:  # the file was readable when scanned; a late failure leaves the extras empty
        if notes is not None:
            notes.append(f"header unreadable on second reading ({one_line(exc) or type(exc).__name__})")
        return Dataset()
    bad = check_elements(ds, drop=True)
    if notes is not None:
        notes.extend(f"{line} (left out)" for line in bad)
    return ds


@dataclass(eq=False)
class SliceHeader:
    """The header of one image file, and where its pixel data lies.

    `pixel_offset`/`pixel_length` give the byte range of natively encoded (uncompressed,
    not deflated, little-endian) pixel data so it can be read straight into a volume; they
    are None when pydicom must decode (compressed, deflated, float or big-endian data).
    `v` holds the per-file values of fast_values; `ds` the parsed header elements.
    """

    path: str
    v: dict[str, Any]
    transfer_syntax: str
    pixel_keyword: str | None
    pixel_offset: int | None
    pixel_length: int | None
    file_size: int
    has_lut: bool = False
    has_frame_groups: bool = False  # enhanced multi-frame functional groups are present
    _ds: Dataset | None = None
    notes: list[str] = field(default_factory=list)  # elements dropped when `ds` was read

    @property
    def ds(self) -> Dataset:
        """pydicom's view of the header, read on first use (the quick reader keeps only `v`)."""
        if self._ds is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self._ds = read_dataset(self.path, self.notes)
        return self._ds

    def _first(self, key: str, default=None):
        value = self.v.get(key)
        if isinstance(value, tuple):
            return value[0] if value else default
        return default if value is None else value

    # -- identity --------------------------------------------------------------------
    @property
    def study_uid(self) -> str:
        return self.v.get("StudyInstanceUID", "")

    @property
    def series_uid(self) -> str:
        return self.v.get("SeriesInstanceUID", "")

    @property
    def modality(self) -> str:
        return (self._first("Modality", "") or "").upper()

    @property
    def sop_class(self) -> str:
        return self.v.get("SOPClassUID", "")

    @property
    def sop_instance(self) -> str:
        return self.v.get("SOPInstanceUID", "")

    @property
    def instance_number(self) -> int | None:
        return self._first("InstanceNumber")

    @property
    def series_number(self) -> int | None:
        return self._first("SeriesNumber")

    @property
    def image_type(self) -> list[str]:
        return [x.upper() for x in self.v.get("ImageType", ())]

    # -- pixel description -------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self.v.get("Rows", 0)

    @property
    def cols(self) -> int:
        return self.v.get("Columns", 0)

    @property
    def frames(self) -> int:
        return max(self._first("NumberOfFrames", 1) or 1, 1)

    @property
    def samples(self) -> int:
        return self.v.get("SamplesPerPixel", 1) or 1

    @property
    def bits_allocated(self) -> int:
        return self.v.get("BitsAllocated", 0)

    @property
    def bits_stored(self) -> int:
        return self.v.get("BitsStored", 0) or self.bits_allocated

    @property
    def signed(self) -> bool:
        return self.v.get("PixelRepresentation", 0) == 1

    @property
    def photometric(self) -> str:
        return (self._first("PhotometricInterpretation", "") or "").upper()

    @property
    def stored_bytes(self) -> int:
        """Bytes the decoded pixel data of this file occupies (rows*cols*frames*samples*bytes)."""
        return self.rows * self.cols * self.frames * self.samples * max(self.bits_allocated // 8, 1)

    # -- geometry ------------------------------------------------------------------------
    @property
    def position(self) -> np.ndarray | None:
        return as_vector(self.v.get("ImagePositionPatient"), 3)

    @property
    def orientation(self) -> np.ndarray | None:
        return as_vector(self.v.get("ImageOrientationPatient"), 6)

    @property
    def pixel_spacing(self) -> tuple[float, float] | None:
        v = self.v.get("PixelSpacing")
        if v is None or len(v) != 2 or not all(math.isfinite(x) and x > 0 for x in v):
            return None
        return (float(v[0]), float(v[1]))

    # -- rescale -------------------------------------------------------------------------
    @property
    def rescale(self) -> tuple[float, float] | None:
        """(slope, intercept) of the modality LUT, or None when a Modality LUT Sequence applies.

        Like pydicom's apply_modality_lut, a rescale applies only when both values are present.
        """
        if self.has_lut:
            return None
        slope, intercept = self.v.get("RescaleSlope"), self.v.get("RescaleIntercept")
        if slope is None or intercept is None:
            return (1.0, 0.0)
        return (float(slope[0]), float(intercept[0]))

    # -- time ----------------------------------------------------------------------------
    def time(self) -> dt.datetime | None:
        """When this image was acquired: AcquisitionDateTime, else acquisition, content or series time."""
        v = self.v
        adt = parse_datetime(v.get("AcquisitionDateTime", ""), "")
        if adt is not None:
            return adt
        for date_key, time_key in (
            ("AcquisitionDate", "AcquisitionTime"),
            ("ContentDate", "ContentTime"),
            ("SeriesDate", "SeriesTime"),
        ):
            t = v.get(time_key, "")
            if t:
                value = parse_datetime(v.get(date_key, "") or v.get("StudyDate", ""), t)
                if value is not None:
                    return value
        return None

    def bolus_start(self) -> dt.datetime | None:
        t = str(self.ds.get("ContrastBolusStartTime", "") or "")
        if not t:
            return None
        v = self.v
        return parse_datetime(v.get("AcquisitionDate", "") or v.get("SeriesDate", "") or v.get("StudyDate", ""), t)


def as_int(v: Any) -> int | None:
    try:
        return int(v) if v is not None and v != "" else None
    except (TypeError, ValueError):
        return None


def as_float(v: Any) -> float | None:
    try:
        if isinstance(v, (list, tuple, MultiValue)):
            v = v[0]
        return float(v) if v is not None and v != "" else None
    except (TypeError, ValueError, IndexError):
        return None


def as_vector(v: Any, n: int) -> np.ndarray | None:
    """`n` finite numbers as a float64 array, else None."""
    if v is None:
        return None
    try:
        values = [float(x) for x in v]
    except (TypeError, ValueError):
        return None
    if len(values) != n or not all(math.isfinite(x) for x in values):
        return None
    return np.array(values)


@functools.lru_cache(maxsize=4096)
def parse_datetime(date: str, time: str) -> dt.datetime | None:
    """DICOM DA + TM (or a DT in `date` when `time` is empty) as a naive datetime."""
    date = date.strip()
    time = time.strip().replace(":", "")
    if not time and len(date) >= 8:  # a DT value: YYYYMMDDHHMMSS.FFFFFF&ZZXX
        date, time = date[:8], date[8:].split("+")[0].split("-")[0]
        if not time:
            return None
    if not time:
        return None
    try:
        day = dt.date(int(date[:4]), int(date[4:6]), int(date[6:8])) if len(date) >= 8 else dt.date(1900, 1, 1)
        hh = int(time[0:2])
        mm = int(time[2:4]) if len(time) >= 4 else 0
        ss = float(time[4:]) if len(time) > 4 else 0.0
        return dt.datetime.combine(day, dt.time(hh, mm)) + dt.timedelta(seconds=ss)
    except (ValueError, IndexError):
        return None


def _looks_like_dicom_without_preamble(head: bytes) -> bool:
    """A file that starts straight with a group 0002 or 0008 element (no 128-byte preamble)."""
    if len(head) < 8:
        return False
    for order in "<>":  # little or big endian
        group, element = struct.unpack(order + "HH", head[:4])
        if group in (0x0002, 0x0008) and element < 0x0100:
            return True
    return False


def _pixel_element(fp, encoding: tuple[bool | None, bool | None], file_size: int) -> tuple[str | None, int | None, int | None]:
    """At the reader's stop: (pixel keyword, value offset, value length or None if encapsulated)."""
    start = fp.tell()
    if start >= file_size:
        return None, None, None
    implicit, little = encoding
    raw = fp.read(12)
    if len(raw) < 8:
        return None, None, None
    endian = "<" if little is not False else ">"
    group, elem = struct.unpack(endian + "HH", raw[:4])
    keyword = _PIXEL_TAGS.get((group << 16) | elem)
    if keyword is None:
        return None, None, None
    if implicit:
        (length,) = struct.unpack(endian + "L", raw[4:8])
        header = 8
    elif raw[4:6] in _LONG_VRS:
        if len(raw) < 12:
            return keyword, None, None
        (length,) = struct.unpack(endian + "L", raw[8:12])
        header = 12
    else:
        (length,) = struct.unpack(endian + "H", raw[6:8])
        header = 8
    if length == _UNDEFINED:
        return keyword, None, None
    return keyword, start + header, length


_QUICK_WANTED = frozenset([*_TAG.values(), 0x00283000, 0x52009229, 0x52009230])


_NOTHING = "unreadable DICOM header: no SOP class, UIDs or image elements"


def _identifies(values: dict[str, Any]) -> bool:
    return any(k in values for k in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "Rows"))


@functools.lru_cache(maxsize=64)
def _native_le(ts: str) -> bool:
    uid = UID(ts)
    return uid.is_transfer_syntax and not uid.is_compressed and not uid.is_deflated and uid.is_little_endian


def read_header(path: str | os.PathLike) -> SliceHeader | str:
    """The header of a DICOM file, or a one-line reason why it is not one (never raises).

    Common files go through quick_header; the rest (no preamble, big endian, deflated,
    anything odd) through pydicom.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as fp:
            try:
                q = quick_header(fp, _QUICK_WANTED, size)
            except (QuickFallback, EOFError, struct.error):
                q = None
            if q is not None:
                if q.media_sop_class == DICOMDIR_SOP_CLASS:
                    return "DICOMDIR index file (its images are read directly)"
                native = q.pixel_keyword == "PixelData" and _native_le(q.transfer_syntax)
                values = values_from_raw(q.elements)
                if not _identifies(values):
                    return _NOTHING
                problem = frames_problem(values, size, q.transfer_syntax, q.pixel_length if native else None)
                if problem:
                    return problem
                return SliceHeader(
                    path=path, v=values, transfer_syntax=q.transfer_syntax,
                    pixel_keyword=q.pixel_keyword, pixel_offset=q.pixel_offset if native else None,
                    pixel_length=q.pixel_length if native else None, file_size=size,
                    has_lut=0x00283000 in q.elements,
                    has_frame_groups=0x52009230 in q.elements or 0x52009229 in q.elements,
                )
            fp.seek(0)
            head = fp.read(132)
            if not head:
                return "empty file"
            force = False
            if head[128:132] != b"DICM":
                if not _looks_like_dicom_without_preamble(head):
                    return "not a DICOM file (no DICM marker)"
                force = True
            fp.seek(0)
            ds = _dcmread(fp, size, force)
            bad = check_elements(ds)
            if bad:
                return f"undecodable element {bad[0]}"
            meta = getattr(ds, "file_meta", None)
            ts = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
            media_class = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
            if media_class == DICOMDIR_SOP_CLASS or str(ds.get("SOPClassUID", "")) == DICOMDIR_SOP_CLASS:
                return "DICOMDIR index file (its images are read directly)"
            if force and "SOPClassUID" not in ds and "Rows" not in ds:
                return "not a DICOM file (no preamble and no DICOM image elements)"
            encoding = ds.original_encoding
            if not ts:
                implicit, little = encoding
                ts = "1.2.840.10008.1.2" if implicit else ("1.2.840.10008.1.2.1" if little else "1.2.840.10008.1.2.2")
            uid = UID(ts)
            keyword, offset, length = (None, None, None)
            if not uid.is_deflated:
                keyword, offset, length = _pixel_element(fp, encoding, size)
            elif "Rows" in ds:
                keyword = "PixelData"  # deflated: the reader cannot tell where pixels start; pydicom will see
    except OSError as exc:
        return f"cannot read the file: {one_line(exc.strerror or exc)}"
    except Exception as exc:  # pydicom raises many kinds on malformed input; all mean "unreadable"
        return f"unreadable DICOM header: {one_line(exc) or type(exc).__name__}"
    try:
        if keyword != "PixelData" or not _native_le(ts):
            offset = length = None
        values = fast_values(ds)
        if not _identifies(values):
            return _NOTHING
        problem = frames_problem(values, size, ts, length)
        if problem:
            return problem
        has_lut = ds.get_item(0x00283000) is not None
        has_groups = ds.get_item(0x52009230) is not None or ds.get_item(0x52009229) is not None
    except Exception as exc:  # e.g. a transfer syntax UID pydicom rejects
        return f"unreadable DICOM header: {one_line(exc) or type(exc).__name__}"
    return SliceHeader(
        path=path, v=values, transfer_syntax=ts, pixel_keyword=keyword,
        pixel_offset=offset, pixel_length=length, file_size=size,
        has_lut=has_lut, has_frame_groups=has_groups, _ds=ds,
    )
