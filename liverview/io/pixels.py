"""Decode slices into a preallocated volume in HU: raw reads for native data, pydicom for the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pydicom.pixels
from pydicom.uid import UID

if TYPE_CHECKING:  # pragma: no cover - typing only
    from liverview.io.series import Slice

_INT16 = np.iinfo(np.int16)


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
    missing = "; or ".join(decoder.missing_dependencies) or "a decoder plugin"
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
        if rescale is None or rescale[0] != 1.0 or rescale[1] != round(rescale[1]):
            return "float32"
        if not ct:
            lo, hi = _declared_range(s)
            if lo + rescale[1] < _INT16.min or hi + rescale[1] > _INT16.max:
                return "float32"
    return "int16"


def decode_error(exc: BaseException, transfer_syntax: str) -> str:
    """One line for a failed decode, naming the decoders that are not installed for this syntax."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    uid = UID(transfer_syntax)
    if uid.is_compressed:
        try:
            missing = pydicom.pixels.get_decoder(uid).missing_dependencies
        except NotImplementedError:
            missing = []
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


def decode_file(path: str, frames: list[int] | None, transfer_syntax: str = "") -> dict[int, np.ndarray]:
    """Decode frames of one file with pydicom (compressed, deflated, big-endian, float, 1-bit data)."""
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
