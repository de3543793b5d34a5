"""Read the PACS image export the published study used: windowed 8-bit slices with LabelMe boxes.

Accepted layout (the folder given, or its only sub-folder, or a zip of either)::

    EXAM/
      export.json            optional, see below
      P/  (or pre, plain, PC, NC, native, 平扫 ...)         one folder per phase,
      A/  (or arterial, art, AP, HAP, 动脉期 ...)           names case-insensitive
      V/  (or venous, portal, PV, PVP, 门脉期 ...)
      D/  (or delayed, delay, DP, equilibrium, 延迟期 ...)
        001.png  001.json    the picked slices (PNG or JPEG), natural-sort order = depth
        002.png  002.json    order; next to an image, a LabelMe file with the same stem
        003.png              holds its rectangles (optional)

export.json (every field optional)::

    {"patient_id": "P001",
     "windows": {"P": [40, 250], "A": [45, 290], ...},     level, width of the export (HU)
     "positions": {"P": [z0, z1, z2], ...},                slice positions in mm, image order
     "pixel_spacing": [row_mm, col_mm],
     "slice_spacing": 5.0,                                  used when positions are absent
     "study_uid": "..."}

Each phase becomes one Volume with intensity "windowed" (uint8 pixels, the images in order),
window = the export's window when given. Slice positions come from export.json, else
0, 1, 2 ... times slice_spacing (1 mm when absent). Every image is a pick, and every
LabelMe rectangle becomes a Box (origin "user", author "labelme").
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from liverview.io.errors import ExamError, LabelMeError, one_line
from liverview.io.inputs import ExamInput, open_input, walk_files
from liverview.io.labelme import read_labelme_document
from liverview.io.loader import CaseSeed, ExamLoad
from liverview.io.phase_id import keyword_phases
from liverview.io.scan import ScanResult, display_path
from liverview.study.case import MAX_PICKS, Box, PhaseSource, Study
from liverview.study.phases import PHASES
from liverview.study.volume import WINDOWED, Volume

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
EXPORT_JSON = "export.json"
_FOLDER_ALIASES = {
    "P": {"p", "pc", "pre", "plain", "precontrast", "noncontrast", "nc", "native", "unenhanced", "plainscan"},
    "A": {"a", "ap", "art", "arterial", "hap", "arterialphase"},
    "V": {"v", "pv", "pvp", "venous", "portal", "portalvenous", "portovenous", "venousphase", "portalphase"},
    "D": {"d", "dp", "delay", "delayed", "equilibrium", "late", "delayedphase"},
}


def folder_phase(name: str) -> str | None:
    """The phase a folder name stands for (case-insensitive), or None."""
    key = re.sub(r"[\s_\-.]+", "", name.lower())
    for phase, names in _FOLDER_ALIASES.items():
        if key in names:
            return phase
    found = keyword_phases(name)
    return next(iter(found)) if len(found) == 1 else None


def natural_key(name: str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _images(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )


def _mostly_images(folder: Path) -> bool:
    """A folder of exported slices: images (with their JSON) outnumber any other files."""
    images = _images(folder)
    others = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() not in (*IMAGE_SUFFIXES, ".json")]
    return bool(images) and len(images) > len(others)


def phase_folders(root: Path) -> dict[str, list[Path]]:
    """Phase -> folders under `root` that name it and hold at least one image."""
    found: dict[str, list[Path]] = {}
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return {}
    for child in children:
        phase = folder_phase(child.name)
        if phase is not None and _mostly_images(child):
            found.setdefault(phase, []).append(child)
    return found


def find_export_root(root: Path) -> Path | None:
    """The folder holding the phase sub-folders: `root` itself or its only sub-folder.

    Files beside that sub-folder (a truth.json, a case file) do not matter; images do.
    """
    if phase_folders(root):
        return root
    try:
        children = [p for p in root.iterdir() if p.is_dir()]
        images = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    except OSError:
        return None
    if len(children) == 1 and not images and phase_folders(children[0]):
        return children[0]
    return None


def _read_export_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ExamError(f"{path}: cannot read ({one_line(exc)})") from None
    except json.JSONDecodeError as exc:
        raise ExamError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise ExamError(f"{path}: top level must be an object")

    def numbers(value, n: int | None, where: str) -> list[float]:
        if not isinstance(value, list) or (n is not None and len(value) != n):
            want = f"a list of {n} numbers" if n else "a list of numbers"
            raise ExamError(f"{path}: field '{where}' must be {want}, got {value!r}")
        try:
            out = [float(v) for v in value if not isinstance(v, bool)]
        except (TypeError, ValueError):
            raise ExamError(f"{path}: field '{where}' must hold numbers, got {value!r}") from None
        if len(out) != len(value) or not all(np.isfinite(out)):
            raise ExamError(f"{path}: field '{where}' must hold finite numbers, got {value!r}")
        return out

    for key in ("windows", "positions"):
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise ExamError(f"{path}: field '{key}' must be an object keyed by phase")
        for phase, v in value.items():
            if phase not in PHASES:
                raise ExamError(f"{path}: field '{key}.{phase}': unknown phase (expected {', '.join(PHASES)})")
            value[phase] = numbers(v, 2 if key == "windows" else None, f"{key}.{phase}")
            if key == "windows" and value[phase][1] <= 0:
                raise ExamError(f"{path}: field 'windows.{phase}': width must be positive")
    if "pixel_spacing" in data:
        data["pixel_spacing"] = numbers(data["pixel_spacing"], 2, "pixel_spacing")
        if min(data["pixel_spacing"]) <= 0:
            raise ExamError(f"{path}: field 'pixel_spacing' must be positive")
    if "slice_spacing" in data:
        spacing = numbers([data["slice_spacing"]], 1, "slice_spacing")[0]
        if spacing <= 0:
            raise ExamError(f"{path}: field 'slice_spacing' must be positive")
        data["slice_spacing"] = spacing
    return data


def _grey(path: Path, problems: list[str]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise ExamError(f"{path}: {mode} image: an export holds 8-bit windowed images")
            if mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                rgb = np.asarray(im.convert("RGB"))
                if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])):
                    problems.append(f"{path}: colour image converted to grey")
                return np.asarray(im.convert("L"))
            return np.asarray(im.convert("L"))
    except ExamError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ExamError(f"{path}: not a readable image ({one_line(exc)})") from None


def load_export_input(inp: ExamInput, root: Path) -> ExamLoad:
    """Read an export whose phase folders sit under `root` (see the module docstring)."""
    problems: list[str] = list(inp.problems)
    folders = phase_folders(root)
    for phase, fs in folders.items():
        if len(fs) > 1:
            names = ", ".join(f.name for f in fs)
            raise ExamError(f"{root}: {len(fs)} folders stand for phase {phase} ({names}); keep one")
    meta_path = root / EXPORT_JSON
    config = _read_export_json(meta_path) if meta_path.is_file() else {}
    spacing = config.get("pixel_spacing")
    if spacing is None:
        problems.append(f"{root}: no pixel_spacing in {EXPORT_JSON}: 1 mm pixels assumed")
        spacing = [1.0, 1.0]
    slice_spacing = config.get("slice_spacing", 1.0)
    windows = config.get("windows", {})
    all_positions = config.get("positions", {})

    volumes: dict[str, Volume] = {}
    sources: dict[str, PhaseSource] = {}
    seed = CaseSeed()
    used: set[Path] = set()
    for phase in PHASES:
        if phase not in folders:
            problems.append(f"phase {phase}: no folder in the export")
            continue
        folder = folders[phase][0]
        images = _images(folder)
        arrays = []
        for img in images:
            arr = _grey(img, problems)
            if arrays and arr.shape != arrays[0].shape:
                raise ExamError(
                    f"{img}: image is {arr.shape[1]}x{arr.shape[0]} but {images[0].name} is "
                    f"{arrays[0].shape[1]}x{arrays[0].shape[0]}; one phase needs one size"
                )
            arrays.append(arr)
        n = len(images)
        positions = all_positions.get(phase)
        if positions is not None and len(positions) != n:
            raise ExamError(f"{meta_path}: field 'positions.{phase}' has {len(positions)} values for {n} images in {folder}")
        if positions is None:
            positions = [k * slice_spacing for k in range(n)]
        order = sorted(range(n), key=lambda k: positions[k])
        if len({round(p, 4) for p in positions}) != n:
            raise ExamError(f"{meta_path}: field 'positions.{phase}' repeats a position")
        pos = [float(positions[k]) for k in order]
        step = (pos[-1] - pos[0]) / (n - 1) if n > 1 else slice_spacing
        if n > 2 and np.ptp(np.diff(pos)) > 1e-3 * max(abs(step), 1.0):
            problems.append(
                f"phase {phase}: export positions are not evenly spaced; slices sit at the mean step, "
                "true positions are in meta['slice_positions']"
            )
        affine = np.eye(4)
        affine[0, 0] = spacing[1]
        affine[1, 1] = spacing[0]
        affine[2, 2] = step
        affine[2, 3] = pos[0]
        window = windows.get(phase)
        vol = Volume(
            pixels=np.stack([arrays[k] for k in order]).astype(np.uint8, copy=False),
            affine=affine,
            intensity=WINDOWED,
            window=(float(window[0]), float(window[1])) if window else None,
            series_uid="",
            description=folder.name,
            meta={
                "source": "export",
                "folder": str(folder),
                "files": [images[k].name for k in order],
                "slice_positions": pos,
            },
        )
        volumes[phase] = vol
        sources[phase] = PhaseSource(
            series_uid="",
            description=folder.name,
            evidence=[f"export folder '{folder.name}'"],
            confidence=1.0 if folder.name.upper() == phase else 0.95,
        )
        seed.picks[phase] = [float(p) for p in vol.positions][:MAX_PICKS]
        if n > MAX_PICKS:
            problems.append(f"phase {phase}: {n} images; the first {MAX_PICKS} in depth order are the picks")
        for idx, k in enumerate(order):
            img = images[k]
            used.add(img)
            ann = img.with_suffix(".json")
            if not ann.is_file():
                continue
            used.add(ann)
            try:
                doc = read_labelme_document(ann)
            except LabelMeError as exc:
                problems.append(f"{exc} (boxes of {img.name} not loaded)")
                continue
            h, w = arrays[k].shape
            if (doc.height, doc.width) not in ((None, None), (h, w)):
                problems.append(f"{ann}: annotates a {doc.width}x{doc.height} image but {img.name} is {w}x{h}")
            problems.extend(f"{ann}: {line}" for line in doc.ignored)
            position = vol.position_of(idx)
            for label, x0, y0, x1, y1 in doc.rects:
                box = Box(phase=phase, position=position, x0=x0, y0=y0, x1=x1, y1=y1,
                          origin="user", author="labelme", label=label)
                box.patient = [[round(c, 3) for c in corner] for corner in vol.box_to_patient(x0, y0, x1, y1, idx)]
                seed.boxes.append(box)
    if not volumes:
        raise ExamError(f"{root}: no phase folders with images")
    used.add(meta_path)
    skipped = [
        (display_path(inp, f), "not part of the export layout (phase folders of PNG/JPEG + LabelMe JSON)")
        for f in walk_files(inp.root)
        if f not in used
    ]
    result = ScanResult(
        path=inp.path, kind="export", skipped=inp.skipped + skipped, problems=list(inp.problems),
        n_files=len(inp.files), input=inp,
    )
    study = Study(
        volumes=volumes,
        sources=sources,
        study_uid=str(config.get("study_uid", "") or ""),
        patient_id=str(config.get("patient_id", "") or root.name),
        path=inp.path,
        info={"source": "export", "export_json": meta_path.is_file()},
    )
    return ExamLoad(study=study, scan=result, problems=problems, candidates=[], case_seed=seed)


def load_export(path) -> ExamLoad:
    """Load a PACS image export (folder or zip); ExamError when the layout is not there."""
    inp = open_input(path)
    try:
        root = find_export_root(inp.root) if inp.kind in ("folder", "zip") else None
        if root is None:
            raise ExamError(
                f"{path}: not an image export (expected phase folders P/A/V/D or pre/arterial/venous/delayed "
                "holding PNG/JPEG images)"
            )
        return load_export_input(inp, root)
    except BaseException:
        inp.close()
        raise
