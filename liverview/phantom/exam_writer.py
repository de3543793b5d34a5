"""Write a phantom exam to disk: DICOM series (full or picked slices) or the PNG + LabelMe export."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from liverview.io.labelme import write_labelme
from liverview.phantom.dicom_series import SeriesWriter
from liverview.phantom.render import Exam
from liverview.study.atomic import write_bytes_atomic, write_json_atomic
from liverview.study.composite import to_unit
from liverview.study.phases import PHASES, WINDOWS

SLICES_ONLY = (None, "dicom", "png")
MODES = {None: "full", "dicom": "slices-dicom", "png": "slices-png"}


def _pick_indices(truth_phase: dict) -> list[int]:
    pos = truth_phase["positions"]
    return [pos.index(p) for p in truth_phase["picks"]]


def _write_png_export(folder: Path, phase: str, volume: np.ndarray, t: dict) -> None:
    """Three windowed 8-bit PNGs of the picked slices, each with its LabelMe rectangle."""
    h, w = volume.shape[1:]
    for n, k in enumerate(_pick_indices(t), start=1):
        img = np.rint(to_unit(volume[k], phase) * 255.0).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img, mode="L").save(buf, format="PNG")
        write_bytes_atomic(folder / f"{n}.png", buf.getvalue())
        box = t["slice_boxes"].get(f"{t['positions'][k]:.2f}")
        write_labelme(folder / f"{n}.json", f"{n}.png", (h, w), [tuple(box)] if box else [], label="tumor")


def generate_exam(
    out_dir,
    seed: int = 0,
    patient_index: int = 0,
    cls: str | None = None,
    member: str | None = None,
    matrix: int = 256,
    slice_thickness: float = 2.5,
    n_slices: int | None = None,
    slices_only: str | None = None,
    pixel_spacing: float | None = None,
) -> dict:
    """Render one patient and write OUT/<patient_id>/ (DICOM or PNG export, truth.json).

    The exam is written into a temporary folder and moved into place at the end, so a
    folder named after a patient is always complete. Returns the truth dict.
    """
    if slices_only not in SLICES_ONLY:
        raise ValueError(f"slices_only {slices_only!r}: expected None, 'dicom' or 'png'")
    exam = Exam(seed, patient_index, cls, member, matrix, slice_thickness, n_slices, pixel_spacing)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / exam.patient_id
    tmp = Path(tempfile.mkdtemp(prefix=f".{exam.patient_id}.", dir=out_dir))
    try:
        truth = exam.truth_base()
        truth["mode"] = MODES[slices_only]
        export = {"patient_id": exam.patient_id, "windows": {p: list(WINDOWS[p]) for p in PHASES}, "positions": {},
                  "pixel_spacing": [exam.grid.dy, exam.grid.dx]}
        for p in PHASES:
            volume, t, _ = exam.render_phase(p)
            if slices_only == "png":
                folder = f"export/{p}"
                _write_png_export(tmp / folder, p, volume, t)
                export["positions"][p] = list(t["picks"])
            else:
                folder = f"dicom/{exam.plans[p].folder}"
                indices = _pick_indices(t) if slices_only == "dicom" else None
                SeriesWriter(exam, p, exam.study).write(tmp / folder, volume, indices)
            t["folder"] = folder
            truth["phases"][p] = t
            del volume
        truth["report"] = exam.report()
        if slices_only == "png":
            write_json_atomic(tmp / "export" / "export.json", export)
        write_json_atomic(tmp / "truth.json", truth)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{exam.patient_id}.old.", dir=out_dir))
            os.replace(final, old / "x")
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return truth
