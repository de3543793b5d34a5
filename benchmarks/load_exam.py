"""Benchmark: load a four-phase exam (4 x 150 slices, 512 x 512) with liverview, SimpleITK and plain pydicom.

Each loader runs in its own fresh process (so memory figures do not mix) on a warm file
cache, `--repeat` times, interleaved; the median time counts. Printed targets:

    first_slice: the middle slice of every phase ready <= 0.3 s after load_exam is called
    peak_memory: peak RSS growth during the load <= 1.3 x the bytes of the volumes built
    load_exam:   liverview time / SimpleITK time <= 1.0   (the last line)

The same exam is also stored as JPEG 2000 lossless and as JPEG Lossless (process 14 SV1),
re-encoded once by GDCM, and loaded by liverview and SimpleITK (which decodes with GDCM) in
the same run. Their targets, printed as first_slice[FORMAT] and load_exam[FORMAT]:

    first_slice[FORMAT]: the middle slice of every phase ready <= 0.5 s
    load_exam[FORMAT]:   liverview time / SimpleITK time <= 0.7

SimpleITK is timed the way it is normally used on a folder of series: GetGDCMSeriesIDs and
GetGDCMSeriesFileNames per folder (GDCM reads and sorts the headers), then
ImageSeriesReader.Execute per series. Its time without the GDCM discovery step is printed
too, for honesty.

    python benchmarks/load_exam.py [--cache DIR] [--slices 150] [--matrix 512] [--repeat 3] [--workers N]
                                   [--formats uncompressed,jpeg2000-lossless,jpeg-lossless]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liverview" / "bench-load-exam"
PHASES = (("P", "Pre contrast"), ("A", "Arterial"), ("V", "Portal venous"), ("D", "Delayed 3min"))


# ---- the exam -----------------------------------------------------------------------------------
def write_exam_with_pydicom(out: Path, n_slices: int, matrix: int, seed: int) -> None:
    """A four-phase CT exam as plain DICOM files (used until liverview.phantom is available)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    study = generate_uid()
    frame = generate_uid()
    yy, xx = np.mgrid[0:matrix, 0:matrix]
    body = ((yy - matrix / 2) ** 2 / (0.38 * matrix) ** 2 + (xx - matrix / 2) ** 2 / (0.45 * matrix) ** 2) < 1
    for p, (code, desc) in enumerate(PHASES):
        series = generate_uid()
        folder = out / code
        folder.mkdir(parents=True, exist_ok=True)
        base = np.where(body, 1024 + 60 + 20 * p, 24).astype(np.int32)
        for k in range(n_slices):
            img = base + rng.normal(0, 12, base.shape).astype(np.int32)
            fm = FileMetaDataset()
            fm.MediaStorageSOPClassUID = CTImageStorage
            fm.MediaStorageSOPInstanceUID = sop = generate_uid()
            fm.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = fm
            ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
            ds.Modality, ds.PatientID, ds.SeriesDescription = "CT", "BENCH", desc
            ds.SeriesNumber, ds.InstanceNumber = p + 1, n_slices - k  # instance numbers run against position
            ds.StudyDate = ds.AcquisitionDate = "20260101"
            ds.AcquisitionTime = f"1000{p * 15:02d}"
            if code != "P":
                ds.ContrastBolusAgent = "IOHEXOL"
            ds.ImagePositionPatient = [-matrix * 0.35, -matrix * 0.35, -k * 2.0]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.PixelSpacing, ds.SliceThickness = [0.7, 0.7], 2.0
            ds.Rows = ds.Columns = matrix
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
            ds.PixelData = np.clip(img, 0, 4095).astype(np.uint16).tobytes()
            ds.save_as(folder / f"IM{rng.integers(1 << 30):010d}.dcm", enforce_file_format=True)


def ensure_exam(cache: Path, n_slices: int, matrix: int, seed: int = 7) -> tuple[Path, str]:
    """The benchmark exam from the cache, written once by the phantom (or, without it, by pydicom)."""
    try:
        from liverview.phantom import generate_exam  # the project's phantom
    except ImportError:
        generate_exam = None
    how = "liverview.phantom.generate_exam" if generate_exam else "the benchmark's own pydicom writer"
    out = cache / f"exam-{n_slices}x{matrix}-s{seed}-{'phantom' if generate_exam else 'pydicom'}"
    done = out / ".complete"
    if done.exists():
        return out, how
    out.mkdir(parents=True, exist_ok=True)
    if generate_exam is not None:
        generate_exam(out, seed=seed, matrix=matrix, n_slices=n_slices)
    else:
        write_exam_with_pydicom(out, n_slices, matrix, seed)
    done.write_text(how)
    return out, how


# name -> GDCM's transfer syntax; None: the exam as written
FORMATS = {"uncompressed": None, "jpeg2000-lossless": "JPEG2000Lossless", "jpeg-lossless": "JPEGLosslessProcess14_1"}


def _transcode(job: tuple[str, str, str]) -> None:
    """Re-encode one file with GDCM, its header kept (pydicom encodes neither JPEG Lossless nor fast JPEG 2000)."""
    import gdcm

    src, dst, syntax = job
    reader = gdcm.ImageReader()
    reader.SetFileName(src)
    if not reader.Read():
        raise SystemExit(f"GDCM cannot read {src}")
    change = gdcm.ImageChangeTransferSyntax()
    change.SetTransferSyntax(gdcm.TransferSyntax(getattr(gdcm.TransferSyntax, syntax)))
    change.SetInput(reader.GetImage())
    if not change.Change():
        raise SystemExit(f"GDCM cannot encode {src} as {syntax}")
    writer = gdcm.ImageWriter()
    writer.SetFileName(dst)
    writer.SetFile(reader.GetFile())
    writer.SetImage(change.GetOutput())
    if not writer.Write():
        raise SystemExit(f"GDCM cannot write {dst}")


def ensure_format(root: Path, name: str) -> Path:
    """The exam at `root` in format `name` (cached beside it; other files copied as they are)."""
    syntax = FORMATS[name]
    if syntax is None:
        return root
    out = root.parent / f"{root.name}-{name}"
    done = out / ".complete"
    if done.exists():
        return out
    import shutil
    from concurrent.futures import ProcessPoolExecutor

    jobs = []
    for src in sorted(root.rglob("*")):
        if not src.is_file() or src.name.startswith("."):
            continue
        dst = out / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(src, "rb") as fh:
            is_dicom = fh.read(132)[128:] == b"DICM"
        if is_dicom:
            jobs.append((str(src), str(dst), syntax))
        else:
            shutil.copyfile(src, dst)
    with ProcessPoolExecutor() as pool:
        list(pool.map(_transcode, jobs, chunksize=16))
    done.write_text(syntax)
    return out


def warm_cache(root: Path) -> int:
    total = 0
    for p in root.rglob("*"):
        if p.is_file():
            total += len(p.read_bytes())
    return total


# ---- one measured run (in a child process) -------------------------------------------------
def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Peak resident memory growth, from the kernel's high-water mark (reset first) or sampling."""

    def __init__(self) -> None:
        self.base = _rss()
        self.peak = self.base
        self.hwm = False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset VmHWM to the current RSS
            self.hwm = True
        except OSError:
            pass
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())
        if self.hwm:
            with open("/proc/self/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
        return self.peak - self.base


def run_liverview(root: Path, workers: int) -> dict:
    import liverview.io.export  # noqa: F401 - what load_exam imports, before the baseline and the clock
    import liverview.io.kinetics  # noqa: F401
    import liverview.io.loader  # noqa: F401
    import liverview.io as lio  # imported before the baseline so module memory does not count

    starts: dict[str, float] = {}
    volumes = {}
    t0 = 0.0

    def on_study(study) -> None:
        volumes.update(study.volumes)

    def progress(done, total, message) -> None:
        if volumes and len(starts) < len(volumes):
            now = time.perf_counter() - t0
            for p, v in volumes.items():
                if p not in starts and v.ready.any():
                    starts[p] = now

    mem = PeakRSS()
    t0 = time.perf_counter()
    load = lio.load_exam(root, on_study=on_study, progress=progress, workers=workers or None)
    seconds = time.perf_counter() - t0
    grown = mem.stop()
    nbytes = sum(v.pixels.nbytes for v in load.study.volumes.values())
    return {
        "seconds": seconds,
        "first_all": max(starts.values()) if len(starts) == 4 else None,
        "phases": "".join(load.study.phases),
        "peak": grown,
        "volume_bytes": nbytes,
        "dtype": str(next(iter(load.study.volumes.values())).pixels.dtype),
        "problems": load.problems,
    }


def _series_dirs(root: Path) -> list[Path]:
    return sorted({p.parent for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")})


def run_simpleitk(root: Path, discover: bool) -> dict:
    import SimpleITK as sitk

    dirs = _series_dirs(root)
    lists = []
    if not discover:  # discovery done before the clock starts
        for d in dirs:
            for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(d)):
                lists.append(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(d), sid))
    mem = PeakRSS()
    t0 = time.perf_counter()
    if discover:
        for d in dirs:
            for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(d)):
                lists.append(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(d), sid))
    images = []
    for names in lists:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(names)
        images.append(reader.Execute())
    seconds = time.perf_counter() - t0
    grown = mem.stop()
    nbytes = sum(sitk.GetArrayViewFromImage(im).nbytes for im in images)
    return {"seconds": seconds, "peak": grown, "volume_bytes": nbytes, "series": len(images),
            "dtype": images[0].GetPixelIDTypeAsString() if images else ""}


def run_pydicom(root: Path) -> dict:
    import pydicom
    from pydicom.pixels import apply_modality_lut

    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    mem = PeakRSS()
    t0 = time.perf_counter()
    series: dict[str, list] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f)
        except pydicom.errors.InvalidDicomError:  # truth.json and the like
            continue
        series.setdefault(ds.SeriesInstanceUID, []).append(ds)
    volumes = []
    for items in series.values():
        iop = np.array(items[0].ImageOrientationPatient, dtype=float)
        normal = np.cross(iop[:3], iop[3:])
        items.sort(key=lambda d: float(normal @ np.array(d.ImagePositionPatient, dtype=float)))
        volumes.append(np.stack([apply_modality_lut(d.pixel_array, d).astype(np.float32) for d in items]))
    seconds = time.perf_counter() - t0
    grown = mem.stop()
    return {"seconds": seconds, "peak": grown, "volume_bytes": sum(v.nbytes for v in volumes)}


def child(args) -> None:
    root = Path(args.child_root)
    if args.child == "liverview":
        out = run_liverview(root, args.workers)
    elif args.child == "simpleitk":
        out = run_simpleitk(root, discover=True)
    elif args.child == "simpleitk-read":
        out = run_simpleitk(root, discover=False)
    else:
        out = run_pydicom(root)
    print(json.dumps(out))


def measure(name: str, root: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--child-root", str(root), "--workers", str(workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{name} run failed:\n{res.stderr.strip()}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _report(label: str, runs: dict[str, list[dict]]) -> tuple[float, float, dict]:
    """Print one format's figures; return (liverview / SimpleITK, median first-slice time, liverview's first run)."""
    def med(name: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[name])

    for name in runs:
        r = runs[name][0]
        times = ", ".join(f"{x['seconds']:.3f}" for x in runs[name])
        print(f"{label:18s} {name:15s} median {med(name, 'seconds'):.3f} s  (runs: {times})  volumes "
              f"{r['volume_bytes'] / 1024**2:.0f} MiB {r.get('dtype', 'float32')}  peak RSS growth "
              f"{med(name, 'peak') / 1024**2:.0f} MiB")
    lv, sk = med("liverview", "seconds"), med("simpleitk", "seconds")
    lvr = runs["liverview"][0]
    print(f"{label:18s} liverview phases: {lvr['phases']}; problems: {lvr['problems'] or 'none'}")
    ratios = [f"liverview/SimpleITK {lv / sk:.2f}"]
    if "simpleitk-read" in runs:
        ratios.append(f"liverview/SimpleITK-read-only {lv / med('simpleitk-read', 'seconds'):.2f}")
    if "pydicom" in runs:
        ratios.append(f"liverview/pydicom-loop {lv / med('pydicom', 'seconds'):.2f}")
    print(f"{label:18s} ratios: " + ", ".join(ratios))
    first = [r["first_all"] for r in runs["liverview"]]
    print(f"{label:18s} first slice of every phase ready after (runs): " + ", ".join(
        f"{f:.3f} s" if f is not None else "never" for f in first))
    first_med = statistics.median(f if f is not None else float("inf") for f in first)
    return lv / sk, first_med, lvr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--slices", type=int, default=150)
    ap.add_argument("--matrix", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=0,
                    help="liverview decode threads (default: the loader's own choice, what the viewer gets)")
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated, from: " + ", ".join(FORMATS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--child-root", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        ap.error(f"unknown format {unknown[0]!r} (expected {', '.join(FORMATS)})")

    t = time.perf_counter()
    root, how = ensure_exam(args.cache, args.slices, args.matrix)
    try:
        import imagecodecs

        decoders = f"imagecodecs {imagecodecs.__version__} (JPEG 2000, JPEG Lossless, JPEG-LS), else pydicom's plugins"
    except ImportError:
        decoders = "pydicom's plugins (imagecodecs is not installed)"
    print(f"exam: {root} (4 x {args.slices} slices, {args.matrix} x {args.matrix}; written by {how}; "
          f"ready in {time.perf_counter() - t:.1f} s); liverview workers: {args.workers}; liverview decodes with {decoders}")
    lines = []
    last = None
    for fmt in formats:
        t = time.perf_counter()
        folder = ensure_format(root, fmt)
        print(f"{fmt}: {folder} (ready in {time.perf_counter() - t:.1f} s); file cache warmed: "
              f"{warm_cache(folder) / 1024**2:.0f} MiB read; cpus: {os.cpu_count()}")
        names = ("liverview", "simpleitk", "simpleitk-read", "pydicom") if fmt == "uncompressed" else ("liverview", "simpleitk")
        runs: dict[str, list[dict]] = {k: [] for k in names}
        for _ in range(args.repeat):
            for name in runs:
                runs[name].append(measure(name, folder, args.workers))
        ratio, first_med, lvr = _report(fmt, runs)
        if fmt == "uncompressed":
            mem_ratio = statistics.median(r["peak"] for r in runs["liverview"]) / lvr["volume_bytes"]
            last = [
                f"first_slice: {first_med:.3f} (target <= 0.3) {'PASS' if first_med <= 0.3 else 'FAIL'}",
                f"peak_memory: {mem_ratio:.2f} (target <= 1.3) {'PASS' if mem_ratio <= 1.3 else 'FAIL'}",
                f"load_exam: {ratio:.2f} (target <= 1.0) {'PASS' if ratio <= 1.0 else 'FAIL'}",
            ]
        else:
            lines.append(f"first_slice[{fmt}]: {first_med:.3f} (target <= 0.5) {'PASS' if first_med <= 0.5 else 'FAIL'}")
            lines.append(f"load_exam[{fmt}]: {ratio:.2f} (target <= 0.7) {'PASS' if ratio <= 0.7 else 'FAIL'}")
    for line in lines + (last or []):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
