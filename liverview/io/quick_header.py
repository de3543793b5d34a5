"""A quick walk over a DICOM header that collects a few raw elements and finds the pixel data.

pydicom builds a full Dataset for every file, which for a 600-file exam costs more than the
rest of the load together. This walker handles the common files only (DICM preamble,
explicit or implicit VR little endian, any encapsulated transfer syntax) and collects the
raw bytes of the elements asked for; anything unusual raises QuickFallback and the caller
reads the file with pydicom instead. tests/io check it against pydicom on the corpus.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_SHORT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}
_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_BE = "1.2.840.10008.1.2.2"
_DEFLATED = ("1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.8.1")
_u16 = struct.Struct("<H").unpack_from
_u32 = struct.Struct("<L").unpack_from
_tag_struct = struct.Struct("<HH").unpack_from
_CHUNK = 16384


class QuickFallback(Exception):
    """The file needs pydicom's full reader."""


@dataclass
class QuickHeader:
    transfer_syntax: str
    media_sop_class: str
    elements: dict[int, tuple[bytes | None, bytes]]  # tag -> (VR or None if implicit, value)
    pixel_keyword: str | None
    pixel_offset: int | None  # None: encapsulated or absent
    pixel_length: int | None


class _Reader:
    """Bytes of a file read in chunks as the walk needs them."""

    def __init__(self, fp, size: int) -> None:
        self.fp = fp
        self.size = size
        self.base = 0
        self.buf = fp.read(_CHUNK)

    def get(self, pos: int, n: int) -> bytes:
        off = pos - self.base
        if off < 0:
            raise QuickFallback("backwards")
        if pos + n > self.size:  # a length field beyond the file: never ask read() for it
            raise EOFError
        if off + n > len(self.buf):
            self.fp.seek(pos)
            self.base, self.buf = pos, self.fp.read(max(n, _CHUNK))
            off = 0
            if n > len(self.buf):
                raise EOFError
        return self.buf[off : off + n]


def _element_header(r: _Reader, pos: int, implicit: bool) -> tuple[int, bytes | None, int, int]:
    """(tag, VR, value length, value position) of the element at `pos`."""
    head = r.get(pos, 8)
    group, elem = _tag_struct(head)
    tag = (group << 16) | elem
    if implicit or group == 0xFFFE:
        return tag, None, _u32(head, 4)[0], pos + 8
    vr = head[4:6]
    if vr in _SHORT_VRS:
        return tag, vr, _u16(head, 6)[0], pos + 8
    if vr in _LONG_VRS:
        return tag, vr, _u32(r.get(pos + 8, 4))[0], pos + 12
    raise QuickFallback(f"unknown VR {vr!r}")


def _skip_sequence(r: _Reader, pos: int, implicit: bool, depth: int = 0) -> int:
    """Position after an undefined-length sequence whose items start at `pos`."""
    if depth > 16:
        raise QuickFallback("deep nesting")
    while True:
        tag, _, length, pos = _element_header(r, pos, True)
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise QuickFallback("bad item")
        if length != _UNDEFINED:
            pos += length
            continue
        while True:
            tag, vr, length, vpos = _element_header(r, pos, implicit)
            if tag == _ITEM_END:
                pos = vpos
                break
            if length == _UNDEFINED:
                pos = _skip_sequence(r, vpos, implicit or vr == b"UN", depth + 1)
            else:
                pos = vpos + length


def quick_header(fp, wanted: frozenset[int], file_size: int) -> QuickHeader:
    """Walk the header of an open file; raise QuickFallback when pydicom should read it."""
    r = _Reader(fp, file_size)
    if r.get(128, 4) != b"DICM":
        raise QuickFallback("no preamble")
    pos = 132
    meta: dict[int, bytes] = {}
    while True:
        head = r.get(pos, 8)
        if _u16(head)[0] != 0x0002:
            break
        tag, vr, length, vpos = _element_header(r, pos, False)
        if length == _UNDEFINED:
            raise QuickFallback("undefined length in file meta")
        meta[tag] = r.get(vpos, length)
        pos = vpos + length
    ts = meta.get(0x00020010, b"").decode("ascii", "replace").strip(" \x00")
    media = meta.get(0x00020002, b"").decode("ascii", "replace").strip(" \x00")
    if not ts or ts == _EXPLICIT_BE or ts in _DEFLATED:
        raise QuickFallback("encoding")
    implicit = ts == _IMPLICIT_LE
    elements: dict[int, tuple[bytes | None, bytes]] = {}
    while pos < file_size:
        off = pos - r.base
        buf = r.buf
        if 0 <= off and off + 12 <= len(buf):  # the usual case, inlined: the whole header is one chunk
            group, elem = _tag_struct(buf, off)
            tag = (group << 16) | elem
            if implicit or group == 0xFFFE:
                vr, length, vpos = None, _u32(buf, off + 4)[0], pos + 8
            else:
                vr = buf[off + 4 : off + 6]
                if vr in _SHORT_VRS:
                    length, vpos = _u16(buf, off + 6)[0], pos + 8
                elif vr in _LONG_VRS:
                    length, vpos = _u32(buf, off + 8)[0], pos + 12
                else:
                    raise QuickFallback(f"unknown VR {vr!r}")
        else:
            try:
                tag, vr, length, vpos = _element_header(r, pos, implicit)
            except EOFError:
                break
        keyword = _PIXEL_TAGS.get(tag)
        if keyword is not None:
            if length == _UNDEFINED:
                return QuickHeader(ts, media, elements, keyword, None, None)
            return QuickHeader(ts, media, elements, keyword, vpos, length)
        if tag >> 16 == 0xFFFE:
            raise QuickFallback("delimiter at top level")
        if length == _UNDEFINED:
            pos = _skip_sequence(r, vpos, implicit or vr == b"UN")
            if tag in wanted:
                elements[tag] = (vr, b"")  # presence only (sequences are read by pydicom)
            continue
        if tag in wanted:
            voff = vpos - r.base
            buf = r.buf
            value = buf[voff : voff + length] if voff + length <= len(buf) else r.get(vpos, length)
            elements[tag] = (vr, value)
        pos = vpos + length
    return QuickHeader(ts, media, elements, None, None, None)
