"""Decode slices into a preallocated volume in HU (raw reads for native data, pydicom for the rest) and screen what cannot be trusted."""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import pydicom.pixels
from pydicom.uid import UID

from liverview.io.errors import printable

if TYPE_CHECKING:  # pragma: no cover - typing only
    from liverview.io.series import Slice

_INT16 = np.iinfo(np.int16)
# liverview declares python-gdcm for JPEG Lossless and JPEG-LS; pydicom names it by its module
_GDCM_PIP = "python-gdcm"


class DecodeFailed(Exception):
    """pydicom could not decode a file's pixel data (the cause is chained)."""


def _missing_decoders(uid: UID) -> list[str]:
    """pydicom's list of plugins that could decode `uid` but are not installed, in pip's names."""
    try:
        missing = pydicom.pixels.get_decoder(uid).missing_dependencies
    except NotImplementedError:
        return []
    out = []
    for line in missing:
        if line.startswith("gdcm "):
            line = f"{_GDCM_PIP} (a liverview dependency: pip install {_GDCM_PIP})"
        out.append(line)
    return out


def decoder_problem(transfer_syntax: str) -> str | None:
    """None when pydicom can decode this transfer syntax here, else a one-line reason naming the missing decoder."""
    uid = UID(transfer_syntax)
    if not uid.is_transfer_syntax:
        return f"unknown transfer syntax {transfer_syntax}: cannot decode"
    if not uid.is_compressed:
        return None
    try:
        decoder = pydicom.pixels.get_decoder(uid)
    except NotImplementedError:
        return f"pydicom has no decoder for {uid.name} ({uid})"
    if decoder.is_available:
        return None
    missing = "; or ".join(_missing_decoders(uid)) or "a decoder plugin"
    return f"{uid.name} ({uid}) needs a decoder that is not installed: {missing}"


def volume_dtype(slices: list["Slice"], ct: bool = True) -> str:
    """int16 when every slice maps to HU by slope 1 and an integral intercept, else float32.

    int16 is exact when the declared pixel range plus the intercept fits it. CT may use it
    even when the declared range is wider (signed 16-bit storage with intercept -1024 is
    common): HU beyond +-32767 are padding, not tissue, and are clipped with a report.
    Other modalities keep float32 then.
    """
    for s in slices:
        h = s.header
        if h.pixel_keyword != "PixelData" or h.bits_allocated not in (8, 16) or h.samples != 1:
            return "float32"
        rescale = s.plan
        if rescale is None or rescale[0] != 1.0 or not math.isfinite(rescale[1]) or rescale[1] != round(rescale[1]):
            return "float32"
        if not ct:
            lo, hi = _declared_range(s)
            if lo + rescale[1] < _INT16.min or hi + rescale[1] > _INT16.max:
                return "float32"
    return "int16"


def decode_error(exc: BaseException, transfer_syntax: str) -> str:
    """One line for a failed slice; a failed decode also names the decoders not installed for this syntax.

    Only a DecodeFailed (raised by decode_file) names them: a slice that decoded and then
    failed in the modality LUT step is no decoder's fault.
    """
    cause = exc.__cause__ if isinstance(exc, DecodeFailed) and exc.__cause__ is not None else exc
    text = " ".join(str(cause).split()) or type(cause).__name__
    uid = UID(transfer_syntax)
    if isinstance(exc, DecodeFailed) and uid.is_compressed:
        missing = _missing_decoders(uid)
        if missing:
            text += f" (not installed for {uid.name}: {'; '.join(missing)})"
    return text if len(text) <= 400 else text[:397] + "..."


def _declared_range(s: "Slice") -> tuple[int, int]:
    h = s.header
    bits = h.bits_stored if 0 < h.bits_stored <= h.bits_allocated else h.bits_allocated
    if h.signed:
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1)
    return (0, (1 << bits) - 1)


def _raw_dtype(s: "Slice") -> np.dtype:
    h = s.header
    return np.dtype(f"<{'i' if h.signed else 'u'}{h.bits_allocated // 8}")


def store_hu(raw: np.ndarray, s: "Slice", out: np.ndarray) -> int:
    """Write the modality-LUT output of `raw` into `out` (one slice); return how many values were clipped.

    float32 volumes go through pydicom's apply_modality_lut. int16 volumes hold slope-1,
    integer-intercept data exactly; values beyond the int16 range (never tissue: padding of
    a few scanners) are clipped and counted.
    """
    if out.dtype == np.float32:
        out[...] = pydicom.pixels.apply_modality_lut(raw, s.rescale)
        return 0
    intercept = int(s.plan[1])
    lo, hi = int(raw.min()), int(raw.max())
    if lo + intercept >= _INT16.min and hi + intercept <= _INT16.max:
        np.add(raw, intercept, out=out, casting="unsafe", dtype=np.int32)
        return 0
    wide = raw.astype(np.int32) + intercept
    clipped = int(np.count_nonzero((wide < _INT16.min) | (wide > _INT16.max)))
    np.clip(wide, _INT16.min, _INT16.max, out=wide)
    out[...] = wide
    return clipped


def native_fast_path(s: "Slice", out: np.ndarray) -> bool:
    """True when the slice's bytes can be read straight into an int16 slice of the volume."""
    h = s.header
    return h.pixel_offset is not None and h.bits_allocated == 16 and out.dtype == np.int16 and h.samples == 1


def read_native_int16(s: "Slice", out: np.ndarray) -> int:
    """Read 16-bit native pixels straight into `out` and rescale in place; return the clipped count.

    Adding the intercept with wrap-around arithmetic on the raw bit pattern and viewing the
    result as int16 is exact whenever the true HU value fits int16; the raw range is checked
    first (from BitsStored, else from the data) and the rare slice that does not fit goes
    through store_hu, which clips.
    """
    h = s.header
    nbytes = h.rows * h.cols * 2
    offset = h.pixel_offset + (s.frame or 0) * nbytes
    buf = out.reshape(-1).view(np.uint8)
    with open(h.path, "rb") as fp:
        fp.seek(offset)
        got = fp.readinto(buf)
    if got != nbytes:
        raise ValueError(f"pixel data truncated: {got} of {nbytes} bytes")
    return _rescale_int16_in_place(s, out)


def _rescale_int16_in_place(s: "Slice", out: np.ndarray) -> int:
    """Rescale the stored values in `out` (an int16 slice holding them bit for bit) to HU; the clipped count."""
    intercept = int(s.plan[1])
    raw = out.view(_raw_dtype(s))
    lo, hi = _declared_range(s)
    if not (lo + intercept >= _INT16.min and hi + intercept <= _INT16.max):
        lo, hi = int(raw.min()), int(raw.max())
        if not (lo + intercept >= _INT16.min and hi + intercept <= _INT16.max):
            return store_hu(raw.copy(), s, out)
    if intercept:
        raw += raw.dtype.type(intercept % (1 << 16) if raw.dtype.kind == "u" else intercept)
    return 0


def can_read_native(s: "Slice") -> bool:
    """Native little-endian integer pixels (8, 16 or 32 bits) whose bytes can be read directly."""
    return s.header.pixel_offset is not None and s.header.bits_allocated in (8, 16, 32) and s.header.samples == 1


def read_native(s: "Slice") -> np.ndarray:
    """Raw pixels of a natively encoded slice (8/16/32-bit) read from its byte offset."""
    h = s.header
    dtype = _raw_dtype(s)
    count = h.rows * h.cols
    offset = h.pixel_offset + (s.frame or 0) * count * dtype.itemsize
    arr = np.fromfile(h.path, dtype=dtype, count=count, offset=offset)
    if arr.size != count:
        raise ValueError(f"pixel data truncated: {arr.size} of {count} pixels")
    return arr.reshape(h.rows, h.cols)


_KEPT: "OrderedDict[tuple, np.ndarray]" = OrderedDict()
_KEPT_MAX = 16
_KEPT_LOCK = threading.Lock()


def _kept_key(path: str, transfer_syntax: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (path, transfer_syntax, st.st_size, st.st_mtime_ns)


def decode_file(
    path: str, frames: list[int] | None, transfer_syntax: str = "", keep: bool = False, header=None
) -> dict[int, np.ndarray]:
    """Decode frames of one file with pydicom (compressed, deflated, big-endian, float, 1-bit data).

    With its `header` (a SliceHeader) a single-frame JPEG 2000 lossless, JPEG Lossless or JPEG-LS file
    is decoded by imagecodecs when it is installed (see decode_with_imagecodecs), pydicom's
    plugins otherwise and whenever imagecodecs cannot. Raises DecodeFailed, its cause
    chained, when pydicom cannot. With `keep` a single-frame
    result is also kept (the last 16, read-only) for the next decode of the same unchanged
    file, which takes it: the phase probe (io/kinetics.py) decodes the middle slices that the
    loader decodes first, 30 ms each for JPEG 2000 (benchmarks/load_exam.py,
    first_slice[jpeg2000-lossless]).
    """
    key = _kept_key(path, transfer_syntax) if frames is None else None
    if key is not None:
        with _KEPT_LOCK:
            kept = _KEPT.pop(key, None)
        if kept is not None:
            return {0: kept}
    try:
        arr = decode_with_imagecodecs(path, header) if frames is None and header is not None else None
        out = {0: arr} if arr is not None else _decode_file(path, frames, transfer_syntax)
        if keep and key is not None:
            out[0].flags.writeable = False
            with _KEPT_LOCK:
                _KEPT[key] = out[0]
                while len(_KEPT) > _KEPT_MAX:
                    _KEPT.popitem(last=False)
        return out
    except Exception as exc:  # every decoder plugin raises its own kinds
        raise DecodeFailed(str(exc)) from exc
    except BaseException as exc:  # a Rust decoder's panic (pyo3's PanicException) is not an Exception
        if type(exc).__name__ != "PanicException":
            raise
        raise DecodeFailed(f"the decoder failed: {exc}") from exc


# ---- imagecodecs: the same decoders as pydicom's plugins, but they let go of the GIL -----------------
try:
    import imagecodecs as _imagecodecs
except ImportError:  # pragma: no cover - imagecodecs is a dependency; pydicom's plugins decode without it
    _imagecodecs = None

_J2K = ("1.2.840.10008.1.2.4.90",)  # lossless only: lossy wavelets may round differently from one OpenJPEG to another
_LJPEG = ("1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70")
_JLS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")
_ITEM = b"\xfe\xff\x00\xe0"
_SEQ_END = b"\xfe\xff\xdd\xe0"
_PIXEL_TAG = b"\xe0\x7f\x10\x00"


def imagecodecs_decodes(transfer_syntax: str) -> bool:
    """True when decode_file hands single-frame files of this syntax to imagecodecs first."""
    return _imagecodecs is not None and transfer_syntax in _J2K + _LJPEG + _JLS


def _fragments(data: bytes) -> list[bytes] | None:
    """The fragments of the encapsulated top-level Pixel Data in a whole file's bytes, or None.

    The pixel data element is looked for from the end (an icon image's comes before it) and
    taken only when its items run, header by header, to the sequence delimiter. A byte
    search instead of pydicom's reader keeps the decode threads off the GIL
    (benchmarks/load_exam.py, load_exam[jpeg-lossless]).
    """
    end = len(data)
    while True:
        at = data.rfind(_PIXEL_TAG, 0, end)
        if at < 0:
            return None
        end = at
        if data[at + 4 : at + 12] in (b"OB\x00\x00\xff\xff\xff\xff", b"OW\x00\x00\xff\xff\xff\xff"):
            pos = at + 12
        elif data[at + 4 : at + 8] == b"\xff\xff\xff\xff":
            pos = at + 8
        else:
            continue
        items: list[bytes] = []
        while pos + 8 <= len(data):
            tag, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
            if tag == _SEQ_END:
                return items[1:] if items else None  # the first item is the Basic Offset Table
            if tag != _ITEM or pos + 8 + length > len(data):
                break
            items.append(data[pos + 8 : pos + 8 + length])
            pos += 8 + length


def _stream_precision(stream: bytes, transfer_syntax: str) -> tuple[int, bool | None] | None:
    """(precision, signed or None when the stream does not say) of a one-component codestream, else None."""
    if transfer_syntax in _J2K:
        if stream[:4] != b"\xff\x4f\xff\x51" or len(stream) < 45:  # a raw codestream: SOC, then SIZ
            return None
        if int.from_bytes(stream[40:42], "big") != 1:  # Csiz
            return None
        ssiz = stream[42]
        return (ssiz & 0x7F) + 1, bool(ssiz & 0x80)
    sof = b"\xff\xc3" if transfer_syntax in _LJPEG else b"\xff\xf7"
    i = stream.find(sof, 0, 4096)
    if i < 0 or len(stream) < i + 10 or stream[i + 9] != 1:  # one component
        return None
    return stream[i + 4], None


def decode_with_imagecodecs(path: str, header, out: np.ndarray | None = None) -> np.ndarray | None:
    """The pixels of a single-frame JPEG 2000 lossless, JPEG Lossless or JPEG-LS file, decoded by imagecodecs; None when it cannot.

    imagecodecs wraps OpenJPEG, libjpeg (lossless) and CharLS as pydicom's plugins do
    (GDCM, pylibjpeg), but releases the GIL while it decodes, so the loader's decode threads
    use every core: benchmarks/load_exam.py, load_exam[jpeg2000-lossless] and
    load_exam[jpeg-lossless]. The result is what pydicom gives (the tests compare them on
    every syntax): the stream's samples as BitsAllocated-wide integers of the header's
    sign, JPEG-LS signed data sign-extended from the stream's precision. Anything else
    (several frames or components, a precision outside BitsStored..BitsAllocated, a JPEG
    2000 sign that differs from the header, signed JPEG Lossless narrower than
    BitsAllocated, a JP2 file, a decoder error) is left to pydicom: None.

    With `out` (a C-contiguous Rows x Columns array, BitsAllocated wide) the pixels are
    decoded into it and the result is a view of it.
    """
    ts = header.transfer_syntax
    if not imagecodecs_decodes(ts) or header.frames != 1 or header.samples != 1:
        return None
    bits, alloc, signed = header.bits_stored, header.bits_allocated, header.signed
    if alloc not in (8, 16) or not 1 < bits <= alloc or header.pixel_keyword != "PixelData":
        return None
    with open(path, "rb") as fh:
        data = fh.read()
    fragments = _fragments(data)
    if not fragments:
        return None
    stream = fragments[0] if len(fragments) == 1 else b"".join(fragments)
    found = _stream_precision(stream, ts)
    if found is None or not bits <= found[0] <= alloc:
        return None
    precision, stream_signed = found
    if stream_signed is not None and stream_signed != signed:  # pydicom corrects the sign of such JPEG 2000
        return None
    if ts in _LJPEG and signed and precision < alloc:
        return None
    into = None
    if out is not None:  # the decoder's own dtype: the stream's sign (JPEG is unsigned), 16 bits above 8
        if precision <= 8 or out.shape != (header.rows, header.cols) or out.itemsize != alloc // 8 or not out.flags.c_contiguous:
            return None
        into = out.view(np.int16 if stream_signed else np.uint16)
    try:
        if ts in _J2K:
            raw = _imagecodecs.jpeg2k_decode(stream, numthreads=1, out=into)
        elif ts in _LJPEG:
            raw = _imagecodecs.ljpeg_decode(stream, out=into)
        else:
            raw = _imagecodecs.jpegls_decode(stream, out=into)
    except Exception:  # pydicom's plugins try next and say why they fail
        return None
    if into is not None and (not isinstance(raw, np.ndarray) or raw.dtype != into.dtype or not np.shares_memory(raw, into)):
        return None
    if raw.shape != (header.rows, header.cols) or raw.dtype.kind not in "iu" or raw.dtype.itemsize > alloc // 8:
        return None
    want = np.dtype(f"{'i' if signed else 'u'}{alloc // 8}")
    if raw.dtype.kind == want.kind:
        return raw.astype(want, copy=False)
    if raw.dtype.kind != "u":
        return None
    out = raw.astype(f"u{alloc // 8}", copy=False).view(want)  # the stream's bit patterns, read as signed
    if ts in _JLS and precision < alloc:  # as pydicom: JPEG-LS signed data sign-extended from its precision
        np.left_shift(out, alloc - precision, out=out)
        np.right_shift(out, alloc - precision, out=out)
    return out


def decode_into_int16(s: "Slice", out: np.ndarray) -> int | None:
    """Decode a single-frame compressed slice straight into `out` (a slice of an int16 volume) and rescale it in place.

    Returns the clipped count, or None when decode_file is to decode it (a syntax
    imagecodecs does not take, a decode the phase probe kept, anything imagecodecs leaves
    to pydicom). No pixel buffer is allocated or copied: benchmarks/load_exam.py,
    load_exam[jpeg2000-lossless].
    """
    h = s.header
    if out.dtype != np.int16 or s.frame is not None or h.bits_allocated != 16 or not imagecodecs_decodes(h.transfer_syntax):
        return None
    key = _kept_key(h.path, h.transfer_syntax)
    with _KEPT_LOCK:
        if key in _KEPT:
            return None
    if decode_with_imagecodecs(h.path, h, out=out) is None:
        return None
    return _rescale_int16_in_place(s, out)


def _decode_file(path: str, frames: list[int] | None, transfer_syntax: str) -> dict[int, np.ndarray]:
    if UID(transfer_syntax).is_deflated:  # pixel_array(path) reads the file raw; deflate needs the full reader
        arr = pydicom.dcmread(path).pixel_array
        if frames is None:
            return {0: arr}
        return {f: arr[f] for f in frames}
    if frames is None:
        return {0: pydicom.pixels.pixel_array(path)}
    wanted = set(frames)
    out = {}
    for f, arr in enumerate(pydicom.pixels.iter_pixels(path)):
        if f in wanted:
            out[f] = arr
    return out


# ---- screening: files whose pixels cannot be trusted, found before any pixel is decoded -------------
def lut_defect(ds) -> str | None:
    """Why a header's Modality LUT Sequence cannot map pixels (naming the field), or None when it can."""
    seq = ds.get("ModalityLUTSequence")
    if not seq:
        return "ModalityLUTSequence is empty"
    item = seq[0]
    desc = item.get("LUTDescriptor")
    desc = [] if desc is None else list(desc) if not isinstance(desc, int) else [desc]
    if len(desc) != 3 or not all(isinstance(v, int) for v in desc):
        return f"ModalityLUTSequence LUTDescriptor has {len(desc)} values, not 3"
    if desc[2] not in (8, 16):
        return f"ModalityLUTSequence LUTDescriptor gives {desc[2]} bits an entry, not 8 or 16"
    entries = desc[0] or 1 << 16
    data = item.get("LUTData")
    have = 0 if data is None else len(data) // 2 if isinstance(data, bytes) else len(data) if not isinstance(data, int) else 1
    if have != entries:
        return f"ModalityLUTSequence LUTData has {have} entries, LUTDescriptor says {entries}"
    return None


def _length_defect(h) -> tuple[str, str, bool] | None:
    """(field, detail, usable) when native pixel data is longer than Rows x Columns x frames x BitsAllocated say.

    Whole extra rows leave the declared image intact (pydicom ignores them too): usable.
    A whole multiple of the pixels at another bit depth is BitsAllocated at fault (8 bits
    declared on 16-bit data reads as noise); any other excess means the rows are not
    Columns wide.
    """
    if h.pixel_length is None or h.bits_allocated < 8:
        return None
    pixels = h.rows * h.cols * h.frames * h.samples
    need = pixels * (h.bits_allocated // 8)
    if h.pixel_length <= need + 1 or not pixels:  # shorter is truncated, reported by the series; +1: padding to even
        return None
    frames = f" x {h.frames} frames" if h.frames > 1 else ""
    for length in (h.pixel_length, h.pixel_length - 1):
        if length % pixels == 0 and length // pixels in (1, 2, 4, 8):
            return "BitsAllocated", (
                f"BitsAllocated {h.bits_allocated} but the pixel data holds {length // pixels * 8} bits a pixel "
                f"({h.pixel_length} bytes for {h.rows} x {h.cols}{frames}; or NumberOfFrames is wrong)"
            ), False
    row = h.cols * h.samples * (h.bits_allocated // 8)
    for length in (h.pixel_length, h.pixel_length - 1):
        if (length - need) % row == 0:
            return "Rows", (
                f"the pixel data holds {(length - need) // row} rows more than Rows x Columns "
                f"{h.rows} x {h.cols}{frames} at {h.bits_allocated} bits"
            ), True
    return "Rows/Columns", (
        f"Rows x Columns {h.rows} x {h.cols}{frames} at {h.bits_allocated} bits need {need} bytes, "
        f"the pixel data holds {h.pixel_length}: not a whole number of rows"
    ), False


def _rescale_defect(plan: tuple[float, float]) -> tuple[str, str] | None:
    slope, intercept = plan
    if not math.isfinite(slope) or slope == 0:
        return "RescaleSlope", f"RescaleSlope {slope:g}"
    if not math.isfinite(intercept):
        return "RescaleIntercept", f"RescaleIntercept {intercept:g}"
    return None


def _tag_rescale(h) -> tuple[float, float] | None:
    """The header's RescaleSlope and RescaleIntercept when both are there and finite."""
    slope, intercept = h.v.get("RescaleSlope"), h.v.get("RescaleIntercept")
    if not slope or not intercept:
        return None
    plan = (float(slope[0]), float(intercept[0]))
    return None if _rescale_defect(plan) else plan


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def screen_slices(slices: list["Slice"], label: str, problems: list[str]) -> tuple[list["Slice"], str | None]:
    """Leave out slices whose pixels cannot be trusted, repair an unusable Modality LUT; (kept, refusal).

    Left out, one problem line per field naming the first file: a RescaleSlope or
    RescaleIntercept that is NaN or infinite (or a slope of 0), native pixel data longer
    than BitsAllocated or Rows x Columns say (8 bits declared on 16-bit data would load as
    noise); extra whole rows are only reported. An empty or malformed Modality LUT Sequence is replaced by the rescale tags, or
    by the stored values when there are none, and reported. `refusal` says why when nothing
    is left.
    """
    kept: list["Slice"] = []
    dropped: dict[str, list[tuple[str, str]]] = {}  # field -> (path, detail) per slice left out
    noted: dict[str, list[tuple[str, str]]] = {}  # the same for slices kept as they are
    repaired: dict[str, dict[str, str]] = {}  # what replaced the LUT -> path -> detail
    lut_seen: dict[str, str | None] = {}
    for s in slices:
        h = s.header
        length = _length_defect(h)
        if length is not None and length[2]:
            noted.setdefault(length[0], []).append((h.path, length[1]))
        defect = length[:2] if length is not None and not length[2] else None
        if defect is None and s.plan is not None:
            defect = _rescale_defect(s.plan)
        if defect is not None:
            dropped.setdefault(defect[0], []).append((h.path, defect[1]))
            continue
        if s.plan is None and s.rescale_ds is None:
            if h.path not in lut_seen:
                lut_seen[h.path] = lut_defect(h.ds)
            detail = lut_seen[h.path]
            if detail is not None:
                fallback = _tag_rescale(h)
                used = "RescaleSlope/RescaleIntercept used instead" if fallback else "stored values used as they are"
                repaired.setdefault(used, {}).setdefault(h.path, detail)
                s.plan = fallback or (1.0, 0.0)
        kept.append(s)
    for field, items in dropped.items():
        path, detail = items[0]
        problems.append(
            f"{label}: {_plural(len(items), 'slice')} left out, {field} cannot be trusted (first: {printable(path)}: {detail})"
        )
    for field, items in noted.items():
        path, detail = items[0]
        problems.append(
            f"{label}: {_plural(len(items), 'slice')} with more pixel data than {field} says: "
            f"the declared image is used (first: {printable(path)}: {detail})"
        )
    for used, files in repaired.items():
        path, detail = next(iter(files.items()))
        problems.append(
            f"{label}: {_plural(len(files), 'file')} with an empty or malformed Modality LUT Sequence: {used} "
            f"(first: {printable(path)}: {detail})"
        )
    if kept or not dropped:
        return kept, None
    field, items = next(iter(dropped.items()))
    return kept, f"no image can be trusted: {field} (first: {items[0][1]})"
