"""What PACS exports decodes out of the box: JPEG Lossless (.57, .70), JPEG-LS (.80, .81), JPEG 2000 and RLE, pixel for pixel."""

from __future__ import annotations

import os

import gdcm
import numpy as np
import pydicom
import pydicom.pixels
import pytest
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
    generate_uid,
)

from liverview.io import scan
from liverview.io.loader import load_series
from liverview.io.headers import read_header
from liverview.io.pixels import DecodeFailed, decode_error, decode_file, decode_into_int16, decode_with_imagecodecs, decoder_problem

# (BitsStored, signed, intercept): 16-bit signed CT with negative padding, 12-bit unsigned CT, 8-bit
KINDS = [(16, True, 0), (12, False, -1024), (8, False, 0)]


def _pixels(bits: int, signed: bool, k: int, shape=(24, 20), full_range: bool = True) -> np.ndarray:
    """Tissue-like noise inside a border of random values over the whole stored range, its extremes included.

    Without `full_range` the border is air: a lossy codec's error wraps around at the extremes.
    """
    rng = np.random.default_rng(100 * bits + k)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    img = rng.integers(lo, hi + 1, size=shape) if full_range else np.full(shape, (lo + hi) // 2 - 1000 // (1 << (16 - bits)))
    img[4:-4, 4:-4] = np.clip((lo + hi) // 2 + 40 + rng.normal(0, 12, (shape[0] - 8, shape[1] - 8)), lo, hi)
    if full_range:
        img[0, :3] = lo, hi, lo
    dtype = np.int16 if signed else (np.uint8 if bits == 8 else np.uint16)
    return img.astype(dtype)


def _gdcm_transcode(src, dst, syntax: str, near: int = 0) -> None:
    """Re-encode `src` into `syntax` with GDCM (the library liverview decodes with; pydicom encodes none of these)."""
    reader = gdcm.ImageReader()
    reader.SetFileName(str(src))
    assert reader.Read()
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(gdcm.TransferSyntax.GetTSType(syntax)))
    if near:
        codec = gdcm.JPEGLSCodec()
        codec.SetLossless(False)
        codec.SetLossyError(near)
        change.SetUserCodec(codec)
    change.SetInput(reader.GetImage())
    assert change.Change()
    writer = gdcm.ImageWriter()
    writer.SetFileName(str(dst))
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    assert writer.Write()


def _write(tmp_path, series_writer, syntax, bits, signed, intercept, n=3, near=0):
    """A CT series in `syntax`; returns (paths, the stored pixels of each file)."""
    _, paths = series_writer(tmp_path / "native", study_uid=generate_uid(), description="Arterial", n=n,
                             intercept=intercept, signed=signed, rows=24, cols=20)
    out_paths, stored = [], []
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        img = _pixels(bits, signed, k, full_range=not near)
        ds.BitsAllocated = 8 if bits == 8 else 16
        ds.BitsStored, ds.HighBit = bits, bits - 1
        ds.PixelData = img.tobytes()
        if syntax == RLELossless:
            ds.compress(RLELossless)
            out = tmp_path / "enc" / p.name
            out.parent.mkdir(exist_ok=True)
            ds.save_as(out)
        else:
            ds.save_as(p)
            out = tmp_path / "enc" / p.name
            out.parent.mkdir(exist_ok=True)
            _gdcm_transcode(p, out, syntax, near)
        out_paths.append(out)
        stored.append(img)
    return out_paths, stored


def _markers(path) -> bytes:
    ds = pydicom.dcmread(path)
    assert ds["PixelData"].is_undefined_length
    return ds.PixelData


def _sos_predictor(stream: bytes) -> int:
    """Ss of the first JPEG start-of-scan: the predictor of a lossless JPEG, NEAR of a JPEG-LS scan."""
    i = stream.index(b"\xff\xda")
    n_comp = stream[i + 4]
    return stream[i + 5 + 2 * n_comp]


SYNTAXES = [
    pytest.param(JPEGLosslessSV1, b"\xff\xc3", id="JPEG Lossless SV1 .70"),
    pytest.param(JPEGLossless, b"\xff\xc3", id="JPEG Lossless .57"),
    pytest.param(JPEGLSLossless, b"\xff\xf7", id="JPEG-LS lossless .80"),
    pytest.param(JPEG2000Lossless, b"\xff\x4f\xff\x51", id="JPEG 2000 lossless .90"),
    pytest.param(RLELossless, None, id="RLE .5"),
]


@pytest.mark.parametrize("bits, signed, intercept", KINDS, ids=["16-bit signed", "12-bit", "8-bit"])
@pytest.mark.parametrize("syntax, marker", SYNTAXES)
def test_lossless_syntaxes_decode_to_the_stored_pixels(tmp_path, series_writer, syntax, marker, bits, signed, intercept):
    assert decoder_problem(syntax) is None
    paths, stored = _write(tmp_path, series_writer, syntax, bits, signed, intercept)
    if marker is not None:  # a real stream of that process: SOF3 for lossless JPEG, SOF55 for JPEG-LS
        assert marker in _markers(paths[0])[:200]
    if syntax == JPEGLosslessSV1:
        assert _sos_predictor(_markers(paths[0])) == 1
    if syntax == JPEGLSLossless:
        assert _sos_predictor(_markers(paths[0])) == 0  # NEAR 0
    rec = next(s for s in scan(tmp_path / "enc").series)
    assert rec.refusal is None, rec.refusal
    vol, problems = load_series(rec)
    assert vol.ready.all(), problems
    assert not [p for p in problems if "decoded" in p]
    # the volume runs along z: the writer's z = 0, -2.5, -5 come back reversed
    for k, img in enumerate(reversed(stored)):
        assert np.array_equal(vol.pixels[k], img.astype(np.int32) + intercept)


@pytest.mark.parametrize("bits, signed, intercept", KINDS[:2], ids=["16-bit signed", "12-bit"])
def test_jpeg_ls_near_lossless_stays_within_its_near_bound(tmp_path, series_writer, bits, signed, intercept):
    paths, stored = _write(tmp_path, series_writer, JPEGLSNearLossless, bits, signed, intercept, near=2)
    assert b"\xff\xf7" in _markers(paths[0])[:200] and _sos_predictor(_markers(paths[0])) == 2
    vol, problems = load_series(scan(tmp_path / "enc").series[0])
    assert vol.ready.all(), problems
    for k, img in enumerate(reversed(stored)):
        assert np.abs(vol.pixels[k].astype(np.int32) - (img.astype(np.int32) + intercept)).max() <= 2


def _lossless_jpeg(img: np.ndarray, precision: int, predictor: int) -> bytes:
    """A JPEG Lossless (process 14) stream of `img` with any predictor 1-7, written from ITU-T T.81 H.1.

    GDCM always writes predictor 1; .57 allows all seven, and PACS archives hold others. One
    Huffman table gives every difference category (0-16) a 5-bit code.
    """
    x = img.astype(np.int64) & ((1 << precision) - 1)
    rows, cols = x.shape
    bits: list[str] = []
    for r in range(rows):
        for c in range(cols):
            if r == 0 and c == 0:
                pred = 1 << (precision - 1)
            elif r == 0:
                pred = x[r, c - 1]
            elif c == 0:
                pred = x[r - 1, c]
            else:
                ra, rb, rc = int(x[r, c - 1]), int(x[r - 1, c]), int(x[r - 1, c - 1])
                pred = {1: ra, 2: rb, 3: rc, 4: ra + rb - rc, 5: ra + ((rb - rc) >> 1),
                        6: rb + ((ra - rc) >> 1), 7: (ra + rb) >> 1}[predictor]
            diff = (int(x[r, c]) - int(pred)) % (1 << 16)
            diff = diff - (1 << 16) if diff >= 1 << 15 else diff
            size = 16 if diff == -(1 << 15) else abs(diff).bit_length()
            bits.append(f"{size:05b}")
            if 0 < size < 16:
                bits.append(f"{diff if diff > 0 else diff + (1 << size) - 1:0{size}b}")
    stream = "".join(bits)
    stream += "1" * (-len(stream) % 8)
    data = bytearray()
    for i in range(0, len(stream), 8):
        byte = int(stream[i:i + 8], 2)
        data += bytes([byte, 0]) if byte == 0xFF else bytes([byte])
    counts = bytes([0, 0, 0, 0, 17] + [0] * 11)
    dht = b"\x00" + counts + bytes(range(17))
    sof = bytes([precision]) + rows.to_bytes(2, "big") + cols.to_bytes(2, "big") + b"\x01\x01\x11\x00"
    sos = b"\x01\x01\x00" + bytes([predictor, 0, 0])

    def segment(marker: bytes, body: bytes) -> bytes:
        return marker + (len(body) + 2).to_bytes(2, "big") + body

    return (b"\xff\xd8" + segment(b"\xff\xc3", sof) + segment(b"\xff\xc4", dht) + segment(b"\xff\xda", sos)
            + bytes(data) + b"\xff\xd9")


@pytest.mark.parametrize("predictor", range(1, 8))
@pytest.mark.parametrize("bits, signed, intercept", KINDS, ids=["16-bit signed", "12-bit", "8-bit"])
def test_jpeg_lossless_57_decodes_with_every_predictor(tmp_path, series_writer, predictor, bits, signed, intercept):
    _, paths = series_writer(tmp_path, study_uid=generate_uid(), description="Arterial", n=3,
                             intercept=intercept, signed=signed, rows=24, cols=20)
    stored = []
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        img = _pixels(bits, signed, k)
        ds.BitsAllocated = 8 if bits == 8 else 16
        ds.BitsStored, ds.HighBit = bits, bits - 1
        ds.PixelData = pydicom.encaps.encapsulate([_lossless_jpeg(img, bits, predictor)])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGLossless
        ds.save_as(p, enforce_file_format=True)
        stored.append(img)
    rec = scan(tmp_path).series[0]
    vol, problems = load_series(rec)
    assert vol.ready.all(), problems
    for k, img in enumerate(reversed(stored)):
        assert np.array_equal(vol.pixels[k], img.astype(np.int32) + intercept)


def test_the_real_decoders_are_gdcm_for_jpeg_lossless_and_jpeg_ls():
    for syntax in (JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless):
        assert "gdcm" in pydicom.pixels.get_decoder(syntax).available_plugins


def test_a_missing_decoder_names_the_pip_package(monkeypatch):
    decoder = pydicom.pixels.get_decoder(JPEGLosslessSV1)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"gdcm": ("gdcm>=3.0.10",),
                                                 "pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-libjpeg>=2.1")})
    line = decoder_problem(JPEGLosslessSV1)
    assert "needs a decoder that is not installed" in line and "\n" not in line
    assert "pip install python-gdcm" in line and "pylibjpeg-libjpeg" in line
    assert "requires gdcm" not in line  # pydicom names the module; pip knows the package as python-gdcm
    failed = DecodeFailed("no plugin could decode")
    failed.__cause__ = RuntimeError("no plugin could decode")
    assert "pip install python-gdcm" in decode_error(failed, JPEGLosslessSV1)


def test_a_failure_after_decoding_blames_no_decoder(monkeypatch):
    decoder = pydicom.pixels.get_decoder(JPEGLosslessSV1)
    monkeypatch.setattr(decoder, "_unavailable", {"gdcm": ("gdcm>=3.0.10",)})
    assert decode_error(TypeError("'NoneType' object is not subscriptable"), JPEGLosslessSV1) == (
        "'NoneType' object is not subscriptable"
    )


def test_a_corrupt_stream_is_a_decode_failure_naming_the_cause(tmp_path, series_writer):
    paths, _ = _write(tmp_path, series_writer, JPEGLosslessSV1, 12, False, -1024, n=1)
    ds = pydicom.dcmread(paths[0])
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 40])
    ds.save_as(paths[0])
    with pytest.raises(DecodeFailed) as err:
        decode_file(str(paths[0]), None, JPEGLosslessSV1)
    assert err.value.__cause__ is not None and decode_error(err.value, JPEGLosslessSV1)


def test_a_kept_decode_is_taken_once_by_the_next_decode_of_the_unchanged_file(tmp_path, series_writer):
    paths, stored = _write(tmp_path, series_writer, JPEGLosslessSV1, 12, False, -1024, n=2)
    path = str(paths[0])
    first = decode_file(path, None, JPEGLosslessSV1, keep=True)[0]
    assert not first.flags.writeable
    assert decode_file(path, None, JPEGLosslessSV1)[0] is first  # taken
    assert decode_file(path, None, JPEGLosslessSV1)[0] is not first  # and gone
    decode_file(path, None, JPEGLosslessSV1, keep=True)
    mtime = os.stat(path).st_mtime_ns
    paths[1].replace(paths[0])  # another file under the same name: decoded anew
    os.utime(path, ns=(mtime + 10**9, mtime + 10**9))
    assert np.array_equal(decode_file(path, None, JPEGLosslessSV1)[0], stored[1])


# (syntax, NEAR): each syntax on the loader's kinds and 12-bit signed data; near-lossless on 12 and 16 bits
IMAGECODECS_CASES = [
    pytest.param(syntax, near, *kind, id=f"{name}-{kind_id}")
    for syntax, near, name in [
        (JPEGLosslessSV1, 0, "JPEG Lossless SV1 .70"),
        (JPEGLossless, 0, "JPEG Lossless .57"),
        (JPEGLSLossless, 0, "JPEG-LS lossless .80"),
        (JPEGLSNearLossless, 2, "JPEG-LS near-lossless .81"),
        (JPEG2000Lossless, 0, "JPEG 2000 lossless .90"),
    ]
    for kind, kind_id in zip(KINDS + [(12, True, 0)], ["16-bit signed", "12-bit", "8-bit", "12-bit signed"])
    if not (near and kind[0] == 8)
]


@pytest.mark.parametrize("syntax, near, bits, signed, intercept", IMAGECODECS_CASES)
def test_imagecodecs_decodes_what_gdcm_decodes(tmp_path, series_writer, syntax, near, bits, signed, intercept):
    paths, stored = _write(tmp_path, series_writer, syntax, bits, signed, intercept, near=near)
    for path, img in zip(paths, stored):
        header = read_header(path)
        ours = decode_with_imagecodecs(str(path), header)
        assert ours is not None, "imagecodecs left the file to pydicom"
        gdcm_out = pydicom.pixels.pixel_array(str(path), decoding_plugin="gdcm")
        assert ours.dtype == gdcm_out.dtype and np.array_equal(ours, gdcm_out)
        if not near:
            assert np.array_equal(ours, img)
        assert decode_file(str(path), None, syntax, header=header)[0].dtype == gdcm_out.dtype


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEG2000Lossless])
def test_imagecodecs_takes_a_frame_split_into_fragments(tmp_path, series_writer, syntax):
    paths, stored = _write(tmp_path, series_writer, syntax, 16, True, 0, n=1)
    ds = pydicom.dcmread(paths[0])
    stream = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    ds.PixelData = pydicom.encaps.encapsulate([stream], fragments_per_frame=3)
    ds.save_as(paths[0])
    assert len(list(pydicom.encaps.generate_fragments(ds.PixelData))) == 4  # the offset table and 3 fragments
    assert np.array_equal(decode_with_imagecodecs(str(paths[0]), read_header(paths[0])), stored[0])


def test_what_imagecodecs_cannot_vouch_for_is_left_to_pydicom(tmp_path, series_writer):
    paths, stored = _write(tmp_path, series_writer, JPEG2000Lossless, 16, True, 0, n=1)
    ds = pydicom.dcmread(paths[0])
    ds.PixelRepresentation = 0  # the codestream says signed
    ds.save_as(paths[0])
    assert decode_with_imagecodecs(str(paths[0]), read_header(paths[0])) is None
    got = decode_file(str(paths[0]), None, JPEG2000Lossless, header=read_header(paths[0]))[0]
    assert np.array_equal(got, stored[0].view(np.uint16))
    paths, stored = _write(tmp_path / "ljpeg", series_writer, JPEGLosslessSV1, 12, False, -1024, n=2)
    ds = pydicom.dcmread(paths[1])
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc3\x00\x0b\x0c\x00\x18\x00\x14\x01\x01\x11\x00" + b"\x00" * 40])
    ds.save_as(paths[1])
    assert decode_with_imagecodecs(str(paths[1]), read_header(paths[1])) is None  # a broken stream
    with pytest.raises(DecodeFailed):  # and pydicom's plugins say why
        decode_file(str(paths[1]), None, JPEGLosslessSV1, header=read_header(paths[1]))


@pytest.mark.parametrize("syntax", [JPEGLosslessSV1, JPEGLSLossless, JPEG2000Lossless])
@pytest.mark.parametrize("bits, signed, intercept", KINDS[:2] + [(12, True, 0)], ids=["16-bit signed", "12-bit", "12-bit signed"])
def test_a_slice_decodes_straight_into_the_int16_volume(tmp_path, series_writer, syntax, bits, signed, intercept):
    _write(tmp_path, series_writer, syntax, bits, signed, intercept, n=2)
    rec = scan(tmp_path / "enc").series[0]
    for sl in rec.slices:
        out = np.full((24, 20), 7, dtype=np.int16)
        assert decode_into_int16(sl, out) == 0
        want = pydicom.pixels.pixel_array(sl.header.path, decoding_plugin="gdcm").astype(np.int32) + intercept
        assert np.array_equal(out, want)
    kept = rec.slices[0]
    decode_file(kept.header.path, None, syntax, keep=True, header=kept.header)
    assert decode_into_int16(kept, np.zeros((24, 20), np.int16)) is None  # the kept decode is decode_file's to take
