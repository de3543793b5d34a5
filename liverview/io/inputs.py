"""Turn what the user points at (folder, DICOMDIR, single file, zip of either) into a list of files.

Zips are extracted into a private temporary folder that lives as long as the returned
ExamInput; members whose names would land outside that folder (absolute paths, `..`,
drive letters, symbolic links) are never written and are listed as skipped.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pydicom

from liverview.io.errors import ExamError, one_line

DEFAULT_MAX_EXTRACT_BYTES = 16 * 1024**3
_CHUNK = 1 << 20


@dataclass(eq=False)
class ExamInput:
    """The files of an exam, where they came from, and what was left out on the way."""

    path: str
    kind: str  # "folder" | "file" | "dicomdir" | "zip"
    root: Path
    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tempdir: tempfile.TemporaryDirectory | None = None

    def close(self) -> None:
        if self.tempdir is not None:
            self.tempdir.cleanup()
            self.tempdir = None


def is_dicomdir(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    try:
        with open(path, "rb") as fp:
            head = fp.read(512)
    except OSError:
        return False
    return head[128:132] == b"DICM" and b"1.2.840.10008.1.3.10" in head


def walk_files(root: Path) -> list[Path]:
    """Every regular file under `root`, recursively, in a stable order; links are not followed."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                out.append(p)
    return out


def _dicomdir_files(path: Path, inp: ExamInput) -> list[Path]:
    from pydicom.fileset import FileSet

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fs = FileSet(pydicom.dcmread(path))
        for w in caught:  # e.g. records whose file is missing: FileSet drops them with a warning
            text = one_line(w.message)
            if "does not exist" in text:
                text = f"DICOMDIR lists a file that is missing ({text})"
            inp.problems.append(f"{path}: {text}")
        files = []
        for instance in fs:
            p = Path(instance.path)
            if p.is_file():
                files.append(p)
            else:
                inp.problems.append(f"{path}: DICOMDIR lists {p.name} ({instance.FileID}) but the file is missing")
        return files
    except Exception as exc:  # a malformed index must not hide the images next to it
        inp.problems.append(f"{path}: DICOMDIR unreadable ({one_line(exc)}): scanned its folder instead")
        return [p for p in walk_files(path.parent) if p != path]


def _safe_member_path(root: Path, name: str) -> Path | None:
    """Where a zip member may be written under `root`, or None if its name would escape it."""
    clean = name.replace("\\", "/")
    parts = PurePosixPath(clean).parts
    if not parts or clean.startswith("/") or any(p in ("..", "") for p in parts) or ":" in parts[0]:
        return None
    target = root.joinpath(*parts)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(target)]) != real_root:
        return None
    return target


def extract_zip(path: Path, inp: ExamInput, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES) -> Path:
    """Extract a zip into a private temporary folder (kept on `inp`), guarding against zip-slip."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExamError(f"{path}: not a readable zip archive ({one_line(exc)})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        declared = sum(i.file_size for i in infos)
        if declared > max_bytes:
            raise ExamError(
                f"{path}: zip expands to {declared / 1024**3:.1f} GiB, more than the {max_bytes / 1024**3:.1f} GiB allowed"
            )
        inp.tempdir = tempfile.TemporaryDirectory(prefix="liverview-zip-")
        root = Path(inp.tempdir.name)
        for info in infos:
            where = f"{path}:{info.filename}"
            if stat.S_ISLNK(info.external_attr >> 16):
                inp.skipped.append((where, "symbolic link inside the zip: not extracted"))
                continue
            if info.flag_bits & 0x1:
                inp.skipped.append((where, "encrypted zip member: not extracted"))
                continue
            target = _safe_member_path(root, info.filename)
            if target is None:
                inp.skipped.append((where, "unsafe path in zip (would land outside the extraction folder): not extracted"))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, open(target, "wb") as dst:
                    written = 0
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > info.file_size:
                            raise ExamError(f"{where}: member is larger than the zip declares (refused)")
                        dst.write(chunk)
            except ExamError:
                raise
            except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError) as exc:
                target.unlink(missing_ok=True)
                inp.skipped.append((where, f"cannot extract: {one_line(exc)}"))
        return root


def open_input(path: str | os.PathLike, max_extract_bytes: int = DEFAULT_MAX_EXTRACT_BYTES) -> ExamInput:
    """List the files of an exam; ExamError when the path cannot be read at all."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ExamError(f"{p}: no such file or folder")
    if p.is_dir():
        inp = ExamInput(path=str(p), kind="folder", root=p)
        if not os.access(p, os.R_OK | os.X_OK):
            raise ExamError(f"{p}: folder is not readable")
        inp.files = walk_files(p)
        return inp
    if zipfile.is_zipfile(p):
        inp = ExamInput(path=str(p), kind="zip", root=p)
        try:
            inp.root = extract_zip(p, inp, max_extract_bytes)
            inp.files = walk_files(inp.root)
        except BaseException:
            inp.close()
            raise
        return inp
    if not os.access(p, os.R_OK):
        raise ExamError(f"{p}: file is not readable")
    if is_dicomdir(p):
        inp = ExamInput(path=str(p), kind="dicomdir", root=p.parent)
        inp.files = _dicomdir_files(p, inp)
        return inp
    return ExamInput(path=str(p), kind="file", root=p.parent, files=[p])

