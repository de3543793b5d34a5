"""Seeded fuzzing of the loader: mutated headers, lengths and pixel data of tiny generated files and exams.

Each case must end in a result or a named error (ExamError, LoadCancelled), within a time
bound and without allocating beyond the pixel cap; in a poisoned exam the good files of
every series must still load. Run with -s to see the count of cases and findings.
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import threading
import time
import tracemalloc
import traceback
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless, generate_uid

from liverview.io.errors import ExamError, LoadCancelled
from liverview.io.headers import read_header
from liverview.io.loader import load_exam, load_series
from liverview.io.scan import scan

# CI runs the defaults; a longer hunt: LIVERVIEW_FUZZ_SEED=7 LIVERVIEW_FUZZ_FILES=3000 LIVERVIEW_FUZZ_EXAMS=200
SEED = int(os.environ.get("LIVERVIEW_FUZZ_SEED", "20261201"))
N_FILE_CASES = int(os.environ.get("LIVERVIEW_FUZZ_FILES", "300"))
N_EXAM_CASES = int(os.environ.get("LIVERVIEW_FUZZ_EXAMS", "20"))
CASE_SECONDS = 10.0  # a healthy case takes milliseconds; the 2-core CI machine is shared
CAP = 8 * 1024**2  # the pixel cap every case runs under
PEAK_LIMIT = 6 * CAP  # a volume within the cap, the decoder's working copies of it, the reader's own objects
ROWS = COLS = 32
SLICES = 4
PHASES = (("Pre contrast", None, "100000"), ("Arterial", "IOHEXOL", "100130"),
          ("Portal venous", "IOHEXOL", "100210"), ("Delayed", "IOHEXOL", "100430"))
NAMED = (ExamError, LoadCancelled)

_INTERESTING_32 = (0, 1, 2, 3, 7, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF)
_INTERESTING_TEXT = (b"0", b"1", b"-1", b"2", b"99999999", b"1e308", b"nan", b"inf", b"\\\\", b"", b"1\\2\\3", b"-0.5")
_TARGETS = {  # elements whose values the mutator likes to rewrite, with their VR
    0x00280010: "US", 0x00280011: "US", 0x00280100: "US", 0x00280101: "US", 0x00280102: "US",
    0x00280103: "US", 0x00280002: "US", 0x00280008: "IS", 0x00200032: "DS", 0x00200037: "DS",
    0x00280030: "DS", 0x00281052: "DS", 0x00281053: "DS", 0x00200013: "IS", 0x00080020: "DA",
    0x00080060: "CS", 0x00280004: "CS", 0x00020010: "UI", 0x0020000E: "UI", 0x00100020: "LO",
}
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


# ---- generated files ---------------------------------------------------------------------------
def _uid(*parts) -> str:
    return generate_uid(entropy_srcs=[str(SEED), *map(str, parts)])


def _slice(series: int, k: int, *, implicit: bool = False, frames: int = 1) -> Dataset:
    desc, agent, t = PHASES[series]
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = CTImageStorage
    fm.MediaStorageSOPInstanceUID = sop = _uid("sop", series, k, implicit, frames)
    fm.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = fm
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID = _uid("study")
    ds.SeriesInstanceUID = _uid("series", series, frames)
    ds.FrameOfReferenceUID = _uid("frame")
    ds.Modality, ds.PatientID, ds.PatientName, ds.PatientBirthDate = "CT", "FUZZ1", "Fuzz^Case", "20180101"
    ds.StudyDate, ds.StudyTime, ds.SeriesDescription = "20260102", "095500", desc
    ds.SeriesNumber, ds.InstanceNumber = series + 1, k + 1
    ds.AcquisitionDate, ds.AcquisitionTime = "20260102", t
    if agent:
        ds.ContrastBolusAgent = agent
    ds.ImagePositionPatient = [-5.0, -6.0, -2.5 * k]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.8], 2.5
    ds.Rows, ds.Columns = ROWS, COLS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    pixels = 1024 + 10 * k + np.add.outer(np.arange(ROWS), np.arange(COLS))
    if frames > 1:
        ds.NumberOfFrames = frames
        ds.GridFrameOffsetVector = [-2.5 * f for f in range(frames)]
        pixels = np.stack([pixels + f for f in range(frames)])
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def write_exam(root: Path) -> dict[str, list[Path]]:
    """The 4-phase exam (series uid -> files); the same bytes on every run."""
    out: dict[str, list[Path]] = {}
    for s in range(len(PHASES)):
        folder = root / f"s{s}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(SLICES):
            ds = _slice(s, k)
            path = folder / f"IM{k:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            out.setdefault(ds.SeriesInstanceUID, []).append(path)
    return out


def base_files(root: Path) -> list[bytes]:
    """Seeds for single-file cases: explicit and implicit VR, RLE, native and RLE multi-frame."""
    seeds = []
    for i, (implicit, frames, rle) in enumerate(((False, 1, False), (True, 1, False), (False, 1, True),
                                                 (False, 3, False), (False, 3, True))):
        ds = _slice(1, 0, implicit=implicit, frames=frames)
        if rle:
            ds.compress(RLELossless)
        path = root / f"seed{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        seeds.append(path.read_bytes())
    return seeds


# ---- the mutator ---------------------------------------------------------------------------------
def elements(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """(offset, tag, length field offset, length field size, value offset) of top-level explicit-VR elements."""
    out = []
    pos = 132
    while pos + 8 <= len(data):
        group, elem = struct.unpack_from("<HH", data, pos)
        vr = data[pos + 4 : pos + 6]
        if not vr.isalpha():
            break  # implicit VR after the file meta: random offsets do the rest
        if vr in _LONG_VRS:
            length, lsize, loff, voff = struct.unpack_from("<L", data, pos + 8)[0], 4, pos + 8, pos + 12
        else:
            length, lsize, loff, voff = struct.unpack_from("<H", data, pos + 6)[0], 2, pos + 6, pos + 8
        out.append((pos, (group << 16) | elem, loff, lsize, voff))
        if (group, elem) == (0x7FE0, 0x0010) or length == 0xFFFFFFFF:
            break
        pos = voff + length
    return out


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> tuple[bytes, list[str]]:
    """1 to 3 mutations of `data`; returns the bytes and what was done."""
    buf = bytearray(data)
    done = []
    for _ in range(rng.randint(1, 3)):
        elems = elements(bytes(buf))
        pixel_at = next((e[4] for e in elems if e[1] == 0x7FE00010), len(buf))
        op = rng.choice(("flip", "header_flip", "vr", "length", "value", "value", "truncate", "pixels", "insert",
                         "delete", "splice"))
        if op == "flip" and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
            done.append(f"flip byte {i}")
        elif op == "header_flip" and pixel_at > 132:
            i = rng.randrange(132, pixel_at)
            buf[i] = rng.randrange(256)
            done.append(f"header byte {i} = {buf[i]}")
        elif op == "vr" and elems:
            off, tag, *_ = rng.choice(elems)
            j = off + 4 + rng.randrange(2)
            buf[j] = rng.choice((rng.randrange(65, 91), rng.randrange(256)))
            done.append(f"VR of ({tag >> 16:04X},{tag & 0xFFFF:04X}) byte {j - off - 4} = {buf[j]}")
        elif op == "length" and elems:
            _, tag, loff, lsize, _ = rng.choice(elems)
            value = rng.choice(_INTERESTING_32) & (0xFFFF if lsize == 2 else 0xFFFFFFFF)
            struct.pack_into("<H" if lsize == 2 else "<L", buf, loff, value)
            done.append(f"length of ({tag >> 16:04X},{tag & 0xFFFF:04X}) = {value}")
        elif op == "value" and elems:
            hits = [e for e in elems if e[1] in _TARGETS] or elems
            _, tag, loff, lsize, voff = rng.choice(hits)
            length = struct.unpack_from("<H" if lsize == 2 else "<L", buf, loff)[0]
            if _TARGETS.get(tag) == "US" and length >= 2:
                value = rng.choice(_INTERESTING_32) & 0xFFFF
                struct.pack_into("<H", buf, voff, value)
            else:
                text = rng.choice(_INTERESTING_TEXT + (b"%d" % rng.choice(_INTERESTING_32),))
                value = text
                new = text + (b" " if len(text) % 2 else b"")
                buf[voff : voff + length] = new
                struct.pack_into("<H" if lsize == 2 else "<L", buf, loff, len(new) & (0xFFFF if lsize == 2 else 0xFFFFFFFF))
            done.append(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) = {value!r}")
        elif op == "truncate" and len(buf) > 1:
            cut = rng.randrange(len(buf))
            del buf[cut:]
            done.append(f"truncated at {cut}")
        elif op == "pixels" and pixel_at < len(buf):
            i = rng.randrange(pixel_at, len(buf))
            n = min(rng.choice((1, 4, 16, 64)), len(buf) - i)
            buf[i : i + n] = bytes(rng.randrange(256) for _ in range(n))
            done.append(f"pixel bytes {i}..{i + n} random")
        elif op == "insert":
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 8, 32))))
            done.append(f"inserted at {i}")
        elif op == "delete" and len(buf) > 8:
            i = rng.randrange(len(buf) - 4)
            n = rng.choice((1, 2, 4, 8, 32))
            del buf[i : i + n]
            done.append(f"deleted {n} at {i}")
        elif op == "splice":
            other = rng.choice(seeds)
            i, j = rng.randrange(len(other)), rng.randrange(len(buf) + 1)
            buf[j : j + 16] = other[i : i + 16]
            done.append(f"spliced 16 bytes at {j}")
    return bytes(buf), done


# ---- running a case -------------------------------------------------------------------------------
class Findings:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.hung = False

    def run(self, name: str, fn) -> None:
        """Run one case in a watchdog thread with the allocation peak traced."""
        box: dict = {}

        def target():
            try:
                fn()
            except NAMED:
                pass
            except BaseException as exc:  # every other escape is a finding
                box["error"] = f"{type(exc).__name__}: {exc} at {traceback.extract_tb(exc.__traceback__)[-1].name}"

        tracemalloc.reset_peak()
        started = time.perf_counter()
        t = threading.Thread(target=target, daemon=True, name=f"fuzz-{name}")
        t.start()
        t.join(CASE_SECONDS)
        if t.is_alive():
            self.lines.append(f"{name}: still running after {CASE_SECONDS:.0f} s")
            self.hung = True  # the thread cannot be stopped: later peaks would be meaningless
            return
        peak = tracemalloc.get_traced_memory()[1]
        if peak > PEAK_LIMIT:
            self.lines.append(f"{name}: allocated {peak / 1024**2:.1f} MiB (limit {PEAK_LIMIT / 1024**2:.0f} MiB)")
        if "error" in box:
            self.lines.append(f"{name}: {box['error']} ({time.perf_counter() - started:.2f} s)")


def _single_file(path: Path) -> None:
    read_header(path)
    result = scan(path.parent, max_pixel_bytes=CAP)
    try:
        for s in result.series:
            if s.loadable:
                load_series(s)
    finally:
        result.close()


def _poisoned_exam(root: Path, exam: dict[str, list[Path]], poisoned: dict[Path, list[str]], findings: list[str]) -> None:
    try:
        load = load_exam(root, max_pixel_bytes=CAP)
    except ExamError as exc:
        findings.append(f"the exam did not load: {exc}")
        return
    try:
        by_uid: dict = {}
        for s in load.scan.series:  # a poisoned StudyInstanceUID puts one file of the series in a study of its own
            if s.n_files > getattr(by_uid.get(s.uid), "n_files", 0):
                by_uid[s.uid] = s
        for uid, paths in exam.items():
            good = [p for p in paths if p not in poisoned]
            rec = by_uid.get(uid)
            if rec is None or not rec.loadable:
                findings.append(f"series {uid[-6:]} not loadable: {rec.refusal if rec else 'gone'}")
                continue
            volume, _ = load_series(rec)
            loaded = {rec.slices[k].header.path for k in range(rec.n_slices) if volume.ready[k]}
            lost = [p.name for p in good if str(p) not in loaded]
            # a poisoned file may take the place of a good one (same position): one each at most
            if len(lost) > len(paths) - len(good):
                findings.append(f"series {uid[-6:]}: good files not loaded: {lost}")
    finally:
        load.scan.close()


@pytest.mark.timeout(600)
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_fuzz_loader(tmp_path, capsys):
    rng = random.Random(SEED)
    seeds = base_files(tmp_path)
    findings = Findings()
    started = time.perf_counter()
    tracemalloc.start()
    try:
        for i in range(N_FILE_CASES):
            seed = rng.randrange(len(seeds))
            data, done = mutate(rng, seeds[seed], seeds)
            folder = tmp_path / f"file{i}"
            folder.mkdir()
            (folder / "IM.dcm").write_bytes(data)
            findings.run(f"file case {i} (seed {seed}: {'; '.join(done)})", lambda: _single_file(folder / "IM.dcm"))
            shutil.rmtree(folder)
            if findings.hung:
                break
        good_exam = tmp_path / "good"
        exam = write_exam(good_exam)
        for i in range(N_EXAM_CASES):
            if findings.hung:
                break
            root = tmp_path / f"exam{i}"
            shutil.copytree(good_exam, root)
            local = {uid: [root / p.relative_to(good_exam) for p in paths] for uid, paths in exam.items()}
            series = rng.sample(sorted(local), rng.randint(1, 3))
            poisoned: dict[Path, list[str]] = {}
            for uid in series:
                target = local[uid][0] if rng.random() < 0.4 else rng.choice(local[uid])  # often the series' first
                data, done = mutate(rng, target.read_bytes(), seeds)
                target.write_bytes(data)
                poisoned[target] = done
            what = "; ".join(f"{p.parent.name}/{p.name}: {', '.join(d)}" for p, d in poisoned.items())
            lines: list[str] = []
            findings.run(f"exam case {i} ({what})", lambda: _poisoned_exam(root, local, poisoned, lines))
            findings.lines.extend(f"exam case {i} ({what}): {line}" for line in lines)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\nloader fuzz (seed {SEED}): {N_FILE_CASES} single-file cases, {N_EXAM_CASES} poisoned exams, "
            f"{len(findings.lines)} findings, {elapsed:.1f} s"
        )
        for line in findings.lines:
            print(f"  finding: {line}")
    assert not findings.lines
