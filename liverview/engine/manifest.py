"""Bundle manifests as untrusted data (no torch): capped reads, the manifest.sha256 seal, and every field type- and range-checked."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import stat
from pathlib import Path, PurePosixPath
from typing import Any

from liverview.engine.errors import BundleError
from liverview.findings.vocabulary import MODEL_CLASSES
from liverview.study.phases import PHASES

MANIFEST = "manifest.json"
SEAL = "manifest.sha256"
TASK = "liver-tumor-two-stage"
MODEL_KEYS = ("detector", "stage1", "benign", "malignant")
CLASSES = {k: list(v) for k, v in MODEL_CLASSES.items()}  # lists: compared with the manifest's JSON arrays
DETECTOR_CLASSES = ["tumor"]
INTENSITIES = ("HU", "windowed")
WEIGHT_SUFFIX = ".safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
WEIGHTS_DTYPES = ("float16", "float32")

MAX_MANIFEST_BYTES = 4 << 20  # the default manifest is ~30 kB
MAX_SEAL_BYTES = 4096
MAX_DEPTH = 64  # the default manifest nests 7 levels
MAX_WEIGHT_BYTES = 1 << 30
MAX_BUNDLE_BYTES = 2 << 30  # all weight files together: they are held in memory until the networks are built
MAX_FILES = 16
MAX_TEXT = 100_000
CHUNK = 1 << 20

DETECTOR_ARCHS = ("yolov8n", "yolov8s", "yolov8m")
DETECTOR_CHANNELS = len(PHASES)
DETECTOR_STRIDE = 32
DETECTOR_SIZES = (32, 1024)
CLASSIFIER_SIZES = (16, 1024)
# Smallest input each backbone still reduces to a feature map (DenseNet's last transition pools 2x2).
MIN_SIZE = {"resnet18": 16, "densenet121": 32, "vit": 16}
WINDOW_LEVEL = (-2048.0, 4096.0)
WINDOW_WIDTH = (0.0, 8192.0)  # width > 0
NORM_MEAN = (-1000.0, 1000.0)
NORM_STD = (1e-6, 1000.0)
ROI_MARGIN = (0.0, 1.0)

# Kept equal to liverview.engine.networks (tests/engine/test_bundle_attacks.py checks it): that module imports torch.
BACKBONES = ("resnet18", "densenet121", "vit")
_INT, _BOOL, _PROB = "int", "bool", "prob"
ARCH_ARGS: dict[str, dict[str, tuple]] = {
    "resnet18": {"layers": ("ints", 4, 1, 8), "zero_init_residual": (_BOOL,)},
    "densenet121": {
        "growth_rate": (_INT, 1, 64),
        "block_config": ("ints", 4, 1, 64),
        "num_init_features": (_INT, 1, 256),
        "bn_size": (_INT, 1, 8),
        "drop_rate": (_PROB,),
        "memory_efficient": (_BOOL,),
    },
    "vit": {
        "patch_size": (_INT, 1, 64),
        "num_layers": (_INT, 1, 24),
        "num_heads": (_INT, 1, 32),
        "hidden_dim": (_INT, 1, 1024),
        "mlp_dim": (_INT, 1, 4096),
        "dropout": (_PROB,),
        "attention_dropout": (_PROB,),
    },
}

# What a detector description in a manifest ("yaml", kept for older bundles) may hold: the
# shape of liverview/engine/yolov8.yaml and nothing else. ultralytics evaluates "activation"
# with eval() and resolves module names through globals(), so neither may come from a manifest.
YAML_KEYS = frozenset({"nc", "scales", "scale", "channels", "ch", "yaml_file", "backbone", "head"})
YAML_MODULES = frozenset({"Conv", "C2f", "SPPF", "nn.Upsample", "Concat", "Detect"})
YAML_ARG_STRINGS = frozenset({"nc", "nearest", "None"})  # the string literals yolov8.yaml itself uses
YAML_MAX_LAYERS = 64

_HEX64 = re.compile(r"[0-9a-f]{64}")
_MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_]+)*")
_STRING_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(rb"[\[\]{}]")


def show(value: Any, limit: int = 60) -> str:
    """repr(value) cut to `limit` characters: one short line, whatever the manifest holds."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fail(where: Path, field_name: str, why: str) -> BundleError:
    return BundleError(f"{where}: {field_name}: {why}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int_in(where: Path, name: str, v: Any, lo: int, hi: int) -> int:
    if not _is_int(v):
        raise _fail(where, name, f"expected an integer, got {show(v)}")
    if not lo <= v <= hi:
        raise _fail(where, name, f"{v} is outside {lo}..{hi}")
    return v


def _num_in(where: Path, name: str, v: Any, lo: float, hi: float, low_open: bool = False) -> float:
    if not _is_num(v):
        raise _fail(where, name, f"expected a finite number, got {show(v)}")
    if not (lo < v <= hi if low_open else lo <= v <= hi):
        raise _fail(where, name, f"{v} is outside {'(' if low_open else ''}{lo:g}..{hi:g}")
    return float(v)


def _text(where: Path, name: str, v: Any, required: bool, limit: int = MAX_TEXT, line: bool = False) -> None:
    if v is None and not required:
        return
    if not isinstance(v, str) or (required and not v):
        raise _fail(where, name, f"expected {'a non-empty ' if required else 'a '}string, got {show(v)}")
    if len(v) > limit:
        raise _fail(where, name, f"{len(v)} characters, more than {limit}")
    if line and any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise _fail(where, name, f"control characters in {show(v)}")


def _object(where: Path, name: str, v: Any) -> dict:
    if not isinstance(v, dict):
        raise _fail(where, name, f"expected an object, got {show(v)}")
    return v


# ---------------------------------------------------------------------------------------------
# reading files


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    return "not a regular file"


def _link_target(path: Path, folder: Path) -> str:
    try:
        target = os.readlink(path)
    except OSError:
        return "a symbolic link"
    resolved = os.path.realpath(path)
    inside = os.path.commonpath([resolved, os.path.realpath(folder)]) == os.path.realpath(folder)
    return f"a symbolic link to {show(target)} ({'inside' if inside else 'outside'} the bundle folder)"


def read_regular(path: Path, folder: Path, limit: int, size: int | None = None) -> bytes:
    """The bytes of `path`, a regular file inside `folder` (never a link, FIFO or device), at most `limit` bytes.

    The file is opened without following links and without blocking; its size (and, with `size`,
    the size it must have) is checked on the open file before anything is read, and no more than
    that is ever read. BundleError names the file and what it is instead.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing") from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise BundleError(f"{path}: refused: {_link_target(path, folder)}; bundle files must be regular files (not read)")
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{path}: refused: {_kind(st.st_mode)}, not a regular file (not read)")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # replaced by a link since the lstat
            raise BundleError(f"{path}: refused: a symbolic link; bundle files must be regular files (not read)") from None
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"{path}: refused: {_kind(st.st_mode)}, not a regular file (not read)")
        if size is not None and st.st_size != size:
            raise BundleError(f"{path}: size mismatch, refusing the bundle: manifest says {size} bytes, "
                              f"file has {st.st_size} bytes (not read)")
        if st.st_size > limit:
            raise BundleError(f"{path}: {st.st_size} bytes, more than the {limit} a bundle file may have (not read)")
        want = st.st_size if size is None else size
        parts, got = [], 0
        while got <= want:  # one byte past what is expected shows a file that grew meanwhile
            chunk = fh.read(min(CHUNK, want + 1 - got))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
    data = b"".join(parts)
    if len(data) != want:
        raise BundleError(f"{path}: changed while it was read ({want} bytes expected, {len(data)}{'+' if len(data) > want else ''} read)")
    return data


def read_weight(folder: Path, filename: str, meta: Any, where: Path) -> bytes:
    """The verified bytes of a weight file the manifest lists: regular file, declared size, then sha256."""
    check_filename(folder, filename, where)
    path = folder / filename
    if not os.path.lexists(path):
        raise BundleError(f"{path}: listed in the manifest but missing")
    data = read_regular(path, folder, MAX_WEIGHT_BYTES, size=meta["size"])
    digest = hashlib.sha256(data).hexdigest()
    if digest != meta["sha256"]:
        raise BundleError(
            f"{path}: checksum mismatch, refusing the bundle: manifest says sha256 {meta['sha256']} "
            f"({meta['size']} bytes), file has sha256 {digest} ({len(data)} bytes)"
        )
    return data


# ---------------------------------------------------------------------------------------------
# the manifest file and its seal


def seal_text(raw: bytes) -> str:
    """What manifest.sha256 holds for manifest bytes `raw`: one sha256sum line (`sha256sum -c` reads it)."""
    return f"{hashlib.sha256(raw).hexdigest()}  {MANIFEST}\n"


def _sealed_digest(folder: Path) -> str | None:
    """The sha256 manifest.sha256 records, or None where the bundle has no seal."""
    path = folder / SEAL
    try:
        os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    text = read_regular(path, folder, MAX_SEAL_BYTES).decode("ascii", errors="replace")
    fields = text.split()
    if len(fields) not in (1, 2) or not _HEX64.fullmatch(fields[0]) or fields[1:] not in ([], [MANIFEST], ["*" + MANIFEST]):
        raise BundleError(f"{path}: expected one line '<sha256>  {MANIFEST}', got {show(text)}")
    return fields[0]


def check_depth(raw: bytes, where: Path, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON text nested deeper than `limit` before a parser recurses into it."""
    depth = 0
    for m in _BRACKET.finditer(_STRING_TOKEN.sub(b'""', raw)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise BundleError(f"{where}: nested more than {limit} levels deep (refused before parsing)")
        else:
            depth -= 1


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {show(key)}")
        out[key] = value
    return out


def parse_manifest(raw: bytes, where: Path) -> Any:
    """The JSON value of `raw` (UTF-8, nesting and size already bounded here), or BundleError."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BundleError(f"{where}: {len(raw)} bytes, more than the {MAX_MANIFEST_BYTES} a manifest may have")
    check_depth(raw, where)
    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as exc:
        raise BundleError(f"{where}: not valid JSON (not UTF-8: {exc.reason} at byte {exc.start})") from None
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{where}: not valid JSON ({show(str(exc), 200)[1:-1]})") from None


def read_manifest(folder: Path) -> tuple[bytes, Any, bool]:
    """(raw bytes, parsed JSON, sealed) of a bundle's manifest; a seal that does not match is refused.

    `sealed` is False for a bundle without manifest.sha256 (written before seals existed).
    """
    if not folder.is_dir():
        raise BundleError(f"{folder}: no model bundle folder here")
    mpath = folder / MANIFEST
    if not os.path.lexists(mpath):
        raise BundleError(f"{mpath}: missing; a bundle folder holds manifest.json and its weight files")
    raw = read_regular(mpath, folder, MAX_MANIFEST_BYTES)
    sealed = _sealed_digest(folder)
    if sealed is not None:
        actual = hashlib.sha256(raw).hexdigest()
        if actual != sealed:
            raise BundleError(f"{mpath}: does not match its seal, refusing the bundle: {SEAL} says sha256 {sealed}, "
                              f"the manifest has sha256 {actual} (changed after it was written)")
    return raw, parse_manifest(raw, mpath), sealed is not None


def seal_manifest(folder: str | os.PathLike) -> str:
    """Write manifest.sha256 for the manifest as it is now; returns the digest.

    It vouches for whatever the manifest holds: for a writer that has just written it (or a
    person who has checked an edit), never for a manifest of unknown origin.
    """
    from liverview.study.atomic import write_bytes_atomic

    folder = Path(folder)
    raw = read_regular(folder / MANIFEST, folder, MAX_MANIFEST_BYTES)
    write_bytes_atomic(folder / SEAL, seal_text(raw).encode("ascii"))
    return hashlib.sha256(raw).hexdigest()


# ---------------------------------------------------------------------------------------------
# fields


def check_filename(folder: Path, filename: Any, where: Path) -> str:
    """A weight file name: a plain .safetensors name inside the bundle; pickles refused unread."""
    if not isinstance(filename, str) or not filename:
        raise _fail(where, "files", f"{show(filename)} is not a file name")
    pure = PurePosixPath(filename)
    if (
        "/" in filename or "\\" in filename or "\x00" in filename or filename in (".", "..") or ".." in filename
        or filename.startswith(".") or len(filename) > 255 or any(ord(c) < 32 or ord(c) == 127 for c in filename)
    ):
        raise _fail(where, "files", f"{show(filename)} must be a plain file name inside the bundle "
                                    "(no separators, NUL, control characters or '..')")
    suffix = pure.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise BundleError(
            f"{folder / filename}: refused: {suffix} weight files are Python pickles that can run code "
            f"when loaded; bundles carry {WEIGHT_SUFFIX} weights only (the file was not read)"
        )
    if suffix != WEIGHT_SUFFIX:
        raise BundleError(f"{folder / filename}: refused: weight files must be {WEIGHT_SUFFIX}, not {suffix or 'no suffix'}")
    return filename


def _files(m: dict, folder: Path, where: Path) -> dict:
    files = _object(where, "files", m["files"])
    if not files:
        raise _fail(where, "files", "lists no weight file")
    if len(files) > MAX_FILES:
        raise _fail(where, "files", f"{len(files)} entries, more than {MAX_FILES}")
    for filename, meta in files.items():
        check_filename(folder, filename, where)
        name = f"files.{filename}"
        if not isinstance(meta, dict) or set(meta) != {"sha256", "size"}:
            raise _fail(where, name, f"expected {{sha256, size}}, got {show(meta)}")
        if not (isinstance(meta["sha256"], str) and _HEX64.fullmatch(meta["sha256"])):
            raise _fail(where, f"{name}.sha256", f"expected 64 lower-case hex digits, got {show(meta['sha256'])}")
        _int_in(where, f"{name}.size", meta["size"], 0, MAX_WEIGHT_BYTES)
    total = sum(meta["size"] for meta in files.values())
    if total > MAX_BUNDLE_BYTES:
        raise _fail(where, "files", f"{total} bytes of weights in all, more than {MAX_BUNDLE_BYTES}")
    return files


def _windows(m: dict, where: Path) -> None:
    windows = _object(where, "windows", m["windows"])
    if set(windows) != set(PHASES):
        raise _fail(where, "windows", f"expected [level, width] for each of {list(PHASES)}, got keys {show(list(windows))}")
    for p in PHASES:
        lw = windows[p]
        name = f"windows.{p}"
        if not (isinstance(lw, list) and len(lw) == 2 and all(_is_num(v) for v in lw)):
            raise _fail(where, name, f"expected [level, width] as two finite numbers, got {show(lw)}")
        _num_in(where, f"{name}[0] (level)", lw[0], *WINDOW_LEVEL)
        _num_in(where, f"{name}[1] (width)", lw[1], *WINDOW_WIDTH, low_open=True)


def check_detector_yaml(cfg: Any, where: Path, name: str = "models.detector.yaml") -> None:
    """Allow-list check of a manifest's detector description, before ultralytics may see any of it.

    Keys from YAML_KEYS only (no `activation`), module names from YAML_MODULES, and layer
    arguments that are integers, booleans, null or the strings yolov8.yaml itself uses.
    """
    cfg = _object(where, name, cfg)
    for key in cfg:
        if key not in YAML_KEYS:
            raise _fail(where, f"{name}.{key}" if isinstance(key, str) else name,
                        f"not allowed in a detector description (allowed: {', '.join(sorted(YAML_KEYS))})")
    if "nc" in cfg:
        _int_in(where, f"{name}.nc", cfg["nc"], 1, 1)
    for key in ("channels", "ch"):
        if key in cfg:
            _int_in(where, f"{name}.{key}", cfg[key], DETECTOR_CHANNELS, DETECTOR_CHANNELS)
    if "scale" in cfg and cfg["scale"] not in [a[-1] for a in DETECTOR_ARCHS]:
        raise _fail(where, f"{name}.scale", f"expected one of {[a[-1] for a in DETECTOR_ARCHS]}, got {show(cfg['scale'])}")
    if "yaml_file" in cfg and cfg["yaml_file"] not in [f"{a}.yaml" for a in DETECTOR_ARCHS]:
        raise _fail(where, f"{name}.yaml_file", f"expected one of {[f'{a}.yaml' for a in DETECTOR_ARCHS]}, got {show(cfg['yaml_file'])}")
    if "scales" in cfg:
        scales = _object(where, f"{name}.scales", cfg["scales"])
        for letter, row in scales.items():
            if letter not in ("n", "s", "m", "l", "x"):
                raise _fail(where, f"{name}.scales", f"unknown scale {show(letter)}")
            if not (isinstance(row, list) and len(row) == 3 and _is_num(row[0]) and _is_num(row[1]) and _is_int(row[2])):
                raise _fail(where, f"{name}.scales.{letter}", f"expected [depth, width, max_channels], got {show(row)}")
            _num_in(where, f"{name}.scales.{letter}[0]", row[0], 0.0, 2.0, low_open=True)
            _num_in(where, f"{name}.scales.{letter}[1]", row[1], 0.0, 2.0, low_open=True)
            _int_in(where, f"{name}.scales.{letter}[2]", row[2], 1, 2048)
    for part in ("backbone", "head"):
        layers = cfg.get(part)
        if not (isinstance(layers, list) and 0 < len(layers) <= YAML_MAX_LAYERS):
            raise _fail(where, f"{name}.{part}", f"expected a list of 1..{YAML_MAX_LAYERS} layers, got {show(layers)}")
        for i, layer in enumerate(layers):
            lname = f"{name}.{part}[{i}]"
            if not (isinstance(layer, list) and len(layer) == 4):
                raise _fail(where, lname, f"expected [from, repeats, module, args], got {show(layer)}")
            frm, repeats, module, args = layer
            froms = frm if isinstance(frm, list) else [frm]
            if not (0 < len(froms) <= 8 and all(_is_int(f) and -YAML_MAX_LAYERS <= f < 2 * YAML_MAX_LAYERS for f in froms)):
                raise _fail(where, f"{lname}[0] (from)", f"expected layer indices, got {show(frm)}")
            _int_in(where, f"{lname}[1] (repeats)", repeats, 1, 16)
            if not (isinstance(module, str) and module in YAML_MODULES):
                raise _fail(where, f"{lname}[2] (module)", f"{show(module)} is not one of {', '.join(sorted(YAML_MODULES))}")
            if not (isinstance(args, list) and len(args) <= 8):
                raise _fail(where, f"{lname}[3] (args)", f"expected a list of at most 8 arguments, got {show(args)}")
            for j, a in enumerate(args):
                ok = a is None or isinstance(a, bool) or (_is_int(a) and -4096 <= a <= 4096) or (
                    isinstance(a, str) and a in YAML_ARG_STRINGS)
                if not ok:
                    raise _fail(where, f"{lname}[3][{j}]",
                                f"{show(a)} is not an allowed argument (integers, true/false, null, {sorted(YAML_ARG_STRINGS)})")


def _detector(det: dict, where: Path) -> None:
    p = "models.detector"
    if det.get("arch") not in DETECTOR_ARCHS:
        raise _fail(where, f"{p}.arch", f"expected one of {', '.join(DETECTOR_ARCHS)}, got {show(det.get('arch'))}")
    _int_in(where, f"{p}.channels", det.get("channels"), DETECTOR_CHANNELS, DETECTOR_CHANNELS)
    if "nc" in det:
        _int_in(where, f"{p}.nc", det["nc"], 1, 1)
    if "classes" in det and det["classes"] != DETECTOR_CLASSES:
        raise _fail(where, f"{p}.classes", f"expected {DETECTOR_CLASSES}, got {show(det['classes'])}")
    size = _int_in(where, f"{p}.input_size", det.get("input_size"), *DETECTOR_SIZES)
    if size % DETECTOR_STRIDE:
        raise _fail(where, f"{p}.input_size", f"{size} is not a multiple of {DETECTOR_STRIDE} (the YOLOv8 stride)")
    for k in ("conf", "iou"):
        _num_in(where, f"{p}.{k}", det.get(k), 0.0, 1.0)
    if "training" in det and det["training"] is not None:
        _object(where, f"{p}.training", det["training"])
    if "yaml" in det:
        if isinstance(det["yaml"], str):
            if det["yaml"] != det["arch"]:
                raise _fail(where, f"{p}.yaml", f"a text description must name the arch {det['arch']!r}, got {show(det['yaml'])}")
        else:
            check_detector_yaml(det["yaml"], where)


def _arch_args(key: str, backbone: str, args: Any, input_size: int, where: Path) -> None:
    p = f"models.{key}.arch_args"
    args = _object(where, p, args)
    rules = ARCH_ARGS[backbone]
    for name, value in args.items():
        rule = rules.get(name)
        if rule is None:
            raise _fail(where, f"{p}.{name}" if isinstance(name, str) else p,
                        f"not an argument of {backbone} (allowed: {', '.join(sorted(rules))})")
        kind = rule[0]
        if kind == _BOOL and not isinstance(value, bool):
            raise _fail(where, f"{p}.{name}", f"expected true or false, got {show(value)}")
        if kind == _PROB:
            _num_in(where, f"{p}.{name}", value, 0.0, 1.0)
        if kind == _INT:
            _int_in(where, f"{p}.{name}", value, rule[1], rule[2])
        if kind == "ints":
            n, lo, hi = rule[1:]
            if not (isinstance(value, list) and len(value) == n):
                raise _fail(where, f"{p}.{name}", f"expected {n} integers, got {show(value)}")
            for i, v in enumerate(value):
                _int_in(where, f"{p}.{name}[{i}]", v, lo, hi)
    if backbone == "vit":
        patch = args.get("patch_size", 16)
        if input_size % patch:
            raise _fail(where, f"models.{key}.input_size", f"{input_size} is not a multiple of the ViT patch size {patch}")
        if args.get("hidden_dim", 192) % args.get("num_heads", 3):
            raise _fail(where, f"{p}.hidden_dim", "must be a multiple of num_heads")


def _classifier(key: str, entry: dict, where: Path) -> None:
    p = f"models.{key}"
    backbone = entry.get("backbone")
    if backbone not in BACKBONES:
        raise _fail(where, f"{p}.backbone", f"expected one of {list(BACKBONES)}, got {show(backbone)}")
    if entry.get("classes") != CLASSES[key]:
        raise _fail(where, f"{p}.classes", f"expected {CLASSES[key]}, got {show(entry.get('classes'))}")
    size = _int_in(where, f"{p}.input_size", entry.get("input_size"), *CLASSIFIER_SIZES)
    if size < MIN_SIZE[backbone]:
        raise _fail(where, f"{p}.input_size", f"{size} is below {MIN_SIZE[backbone]}, the smallest input {backbone} takes")
    _arch_args(key, backbone, entry.get("arch_args") or {}, size, where)
    norm = _object(where, f"{p}.normalisation", entry.get("normalisation"))
    for part, (lo, hi) in (("mean", NORM_MEAN), ("std", NORM_STD)):
        values = norm.get(part)
        if not (isinstance(values, list) and len(values) == len(PHASES)):
            raise _fail(where, f"{p}.normalisation.{part}", f"expected {len(PHASES)} numbers, got {show(values)}")
        for i, v in enumerate(values):
            _num_in(where, f"{p}.normalisation.{part}[{i}]", v, lo, hi)
    _num_in(where, f"{p}.roi_margin", entry.get("roi_margin"), *ROI_MARGIN)
    layer = entry.get("cam_target_layer")
    if not (isinstance(layer, str) and len(layer) <= 200 and _MODULE_PATH.fullmatch(layer)):
        raise _fail(where, f"{p}.cam_target_layer", f"expected a dotted module name, got {show(layer)}")
    if key == "stage1":
        _num_in(where, f"{p}.threshold", entry.get("threshold"), 0.0, 1.0)
    if "training" in entry and entry["training"] is not None:
        _object(where, f"{p}.training", entry["training"])


def validate_manifest(m: Any, where: Path) -> None:
    """Raise BundleError naming the first manifest field that is missing, of the wrong type or out of range.

    Torch-free; what needs the networks themselves (does cam_target_layer name a module? does
    a detector description match the named arch?) is checked by liverview.engine.bundle.
    """
    if not isinstance(m, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object")
    for key in ("name", "version", "task", "phase_order", "windows", "intensity", "models", "files"):
        if key not in m:
            raise _fail(where, key, "missing")
    _text(where, "name", m["name"], True, 200, line=True)
    _text(where, "version", m["version"], True, 100, line=True)
    if m["task"] != TASK:
        raise _fail(where, "task", f"expected {TASK!r}, got {show(m['task'])}")
    if m["phase_order"] != list(PHASES):
        raise _fail(where, "phase_order", f"expected {list(PHASES)}, got {show(m['phase_order'])}")
    if m["intensity"] not in INTENSITIES:
        raise _fail(where, "intensity", f"expected one of {list(INTENSITIES)}, got {show(m['intensity'])}")
    _windows(m, where)
    for key in ("intended_use", "research_notice", "created"):
        _text(where, key, m.get(key), False)
    if not (m.get("training_data") is None or isinstance(m["training_data"], (str, dict))):
        raise _fail(where, "training_data", f"expected a text or an object, got {show(m['training_data'])}")
    for key in ("metrics", "build"):
        if m.get(key) is not None:
            _object(where, key, m[key])
    if "weights_dtype" in m and m["weights_dtype"] not in WEIGHTS_DTYPES:
        raise _fail(where, "weights_dtype", f"expected one of {list(WEIGHTS_DTYPES)}, got {show(m['weights_dtype'])}")
    files = _files(m, where.parent, where)
    models = _object(where, "models", m["models"])
    for key in MODEL_KEYS:
        entry = models.get(key)
        if not isinstance(entry, dict):
            raise _fail(where, f"models.{key}", "missing" if entry is None else f"expected an object, got {show(entry)}")
        if "file" not in entry:
            raise _fail(where, f"models.{key}.file", "missing")
        if not isinstance(entry["file"], str) or entry["file"] not in files:
            raise _fail(where, f"models.{key}.file", f"{show(entry['file'])} is not listed in files")
    used = {models[key]["file"] for key in MODEL_KEYS}
    for filename in files:
        if filename not in used:
            raise _fail(where, f"files.{filename}", "no model uses it (a bundle lists its weight files only)")
    _detector(models["detector"], where)
    for key in CLASSES:
        _classifier(key, models[key], where)
