"""Read the PACS image export the published study used: windowed 8-bit slices with LabelMe boxes.

Accepted layout (the folder given, or its only sub-folder, or a zip of either)::

    EXAM/
      export.json            optional, see below
      P/  (or pre, plain, PC, NC, native, 平扫 ...)         one folder per phase,
      A/  (or arterial, art, AP, HAP, 动脉期 ...)           names case-insensitive
      V/  (or venous, portal, PV, PVP, 门脉期 ...)
      D/  (or delayed, delay, DP, equilibrium, 延迟期 ...)
        001.png  001.json    the slices (PNG or JPEG), natural-sort order = depth order;
        002.png  002.json    next to an image, a LabelMe file with the same stem holds
        003.png              its rectangles (optional)

export.json (every field optional)::

    {"patient_id": "P001",
     "windows": {"P": [40, 250], "A": [45, 290], ...},     level, width of the export (HU)
     "positions": {"P": [z0, z1, z2], ...},                slice positions in mm, image order
     "pixel_spacing": [row_mm, col_mm],
     "slice_spacing": 5.0,                                  used when positions are absent
     "study_uid": "..."}

Each phase becomes one Volume with intensity "windowed" (uint8 pixels, the images in order),
window = the export's window when given. Slice positions come from export.json, else
0, 1, 2 ... times slice_spacing (1 mm when absent). A phase of at most three images holds
the picked slices (every image is a pick); more images are the phase's series to scroll and
bring no picks. Every LabelMe rectangle becomes a Box (origin "user", author "labelme") on
its image's slice.

The Study's `info["identity"]` names the export by content, not by where it lies: a
digest of the images (and export.json, which places them) and one of the LabelMe files,
computed from the bytes read anyway, so a case saved for other images is never applied.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from liverview.io.errors import ExamError, LabelMeError, one_line
from liverview.io.inputs import ExamInput, open_input, walk_files
from liverview.io.labelme import read_labelme_document
from liverview.io.loader import CaseSeed, ExamLoad
from liverview.io.messages import condense, plural
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
    try:
        images = _images(folder)
        others = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() not in (*IMAGE_SUFFIXES, ".json")]
    except OSError:  # an unreadable phase folder: the scan names it
        return False
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


def layout_hint(root: Path, files: list[Path]) -> str | None:
    """What to do with a folder of PNG/JPEG images that is not an export: None when it holds no images."""
    images = [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES]
    if not images:
        return None
    by_folder: dict[Path, int] = {}
    for f in images:
        by_folder[f.parent] = by_folder.get(f.parent, 0) + 1

    def name(folder: Path) -> str:
        rel = folder.relative_to(root).as_posix() if folder != root and folder.is_relative_to(root) else folder.name
        return f"'{rel}'"

    if len(by_folder) == 1:
        where = name(next(iter(by_folder)))
    else:
        where = ", ".join(f"{name(f)} ({n})" for f, n in list(by_folder.items())[:4])
    if len(by_folder) > 4:
        where += f" and {len(by_folder) - 4} more folders"
    if root in by_folder and len(by_folder) == 1:
        why = "they sit directly in the folder, not in phase folders"
    elif not any(folder_phase(f.name) for f in by_folder):
        why = "no folder holding them is named for a phase"
    else:
        why = "their folders do not form one export (one folder per phase, in the folder opened or its only sub-folder)"
    return (
        f"{plural(len(images), 'PNG/JPEG image')} in {where} but no DICOM; {why}. To open images as a PACS "
        "image export, put each phase's images in a folder named P, A, V or D (or pre, arterial, venous, delayed, "
        "...) inside the folder you open or its only sub-folder, e.g. EXAM/A/001.jpg, EXAM/A/002.jpg (natural "
        "name order is depth order), with LabelMe boxes beside them as EXAM/A/001.json (optional)"
    )


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


def _grey(path: Path, problems: list[str], digest) -> np.ndarray:
    """The image as 8-bit grey; its bytes, read once, also go into `digest`."""
    try:
        data = path.read_bytes()
        digest.update(hashlib.sha256(data).digest())
        with Image.open(io.BytesIO(data)) as im:
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


LABELME_EVIDENCE = "LabelMe files sha256 "


def _labels_evidence(source: PhaseSource | dict | None) -> str | None:
    evidence = (source.get("evidence") if isinstance(source, dict) else getattr(source, "evidence", None)) or []
    return next((e for e in evidence if isinstance(e, str) and e.startswith(LABELME_EVIDENCE)), None)


def changed_labelme_phases(saved_study_block: dict, study: Study) -> list[str]:
    """Phases whose LabelMe files differ from those a case file was saved with (its study block).

    Each export phase's evidence names the digest of its LabelMe files, so a case file keeps
    it; a case file from before that (no digest) is taken as unchanged.
    """
    saved = saved_study_block.get("phases") if isinstance(saved_study_block, dict) else None
    if not isinstance(saved, dict):
        return []
    out = []
    for phase, source in study.sources.items():
        now, then = _labels_evidence(source), _labels_evidence(saved.get(phase))
        if now is not None and then is not None and now != then:
            out.append(phase)
    return out


def labelme_change_message(phases: list[str], saved_boxes: dict[str, int], seed: CaseSeed) -> str:
    """One line for the reader: which phases' LabelMe boxes changed, how many there are now and were."""
    parts = []
    for p in phases:
        now = sum(1 for b in seed.boxes if b.phase == p)
        parts.append(f"phase {p} ({plural(now, 'box', 'boxes')}, were {saved_boxes.get(p, 0)})")
    return ("the export's LabelMe boxes changed since your case was saved: " + ", ".join(parts)
            + "; the new LabelMe boxes replace the old ones, your own boxes and picks are kept")


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
    images_digest = hashlib.sha256()
    label_digests: dict[str, str] = {}
    series_phases: dict[str, int] = {}
    for phase in PHASES:
        if phase not in folders:
            problems.append(f"phase {phase}: no folder in the export")
            continue
        folder = folders[phase][0]
        images = _images(folder)
        arrays = []
        for img in images:
            images_digest.update(f"{phase}/{img.name}\0".encode())
            arr = _grey(img, problems, images_digest)
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
        if n > MAX_PICKS:
            series_phases[phase] = n  # a series to scroll, not the picked slices
        else:
            seed.picks[phase] = [float(p) for p in vol.positions]
        labels = hashlib.sha256()
        for idx, k in enumerate(order):
            img = images[k]
            used.add(img)
            ann = img.with_suffix(".json")
            if not ann.is_file():
                continue
            used.add(ann)
            try:
                labels.update(f"{ann.name}\0".encode() + hashlib.sha256(ann.read_bytes()).digest())
            except OSError:
                pass  # read_labelme_document says why
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
        label_digests[phase] = labels.hexdigest()
        sources[phase] = PhaseSource(
            series_uid="",
            description=folder.name,
            evidence=[f"export folder '{folder.name}'", LABELME_EVIDENCE + label_digests[phase][:32]],
            confidence=1.0 if folder.name.upper() == phase else 0.95,
        )
    if not volumes:
        raise ExamError(f"{root}: no phase folders with images")
    if series_phases:
        which = ", ".join(f"{p} ({n})" for p, n in series_phases.items())
        problems.append(
            f"full series exported for phase{'s' if len(series_phases) > 1 else ''} {which}: these images are "
            f"slices to scroll, not picks (an export of picks holds at most {MAX_PICKS} images a phase); "
            "pick the slices, or let auto-pick choose"
        )
    if meta_path.is_file():
        images_digest.update(b"export.json\0" + hashlib.sha256(meta_path.read_bytes()).digest())
    all_labels = hashlib.sha256("".join(f"{p}={d};" for p, d in label_digests.items()).encode())
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
        info={
            "source": "export",
            "export_json": meta_path.is_file(),
            "identity": {
                "kind": "export",
                "images_sha256": images_digest.hexdigest(),
                "labels_sha256": all_labels.hexdigest(),
                "labels_sha256_by_phase": label_digests,
            },
        },
    )
    return ExamLoad(study=study, scan=result, problems=condense(problems), candidates=[], case_seed=seed)


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
