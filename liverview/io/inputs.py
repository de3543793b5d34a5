"""Turn what the user points at (folder, DICOMDIR, single file, zip of either) into a list of files.

Zips are extracted into a private temporary folder, `liverview-zip-<pid>-<random>` in the
system's temporary folder, that lives as long as the returned ExamInput: it is removed when
the input is closed or the process exits, and folders left by a killed process are removed
the next time a zip is opened. Members whose names would land outside that folder (absolute
paths, `..`, drive letters, symbolic links) are never written and are listed as skipped;
the other names are made safe for any disk (no control or reserved characters, at most
120 bytes a component, unique even on a case-insensitive disk). Zip bombs are refused: a
member that claims more than 100 times its compressed size (above 1 MiB), or an archive
that would expand beyond 4 GiB.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pydicom

from liverview.io.errors import ExamError, one_line, printable

# Four phases of 800 thin slices of 512 x 512 take 1.6 GB, and the pixel cap is 2 GiB.
DEFAULT_MAX_EXTRACT_BYTES = 4 * 1024**3
MAX_RATIO = 100  # DICOM deflates 2-10:1; zeros deflate 1000:1
RATIO_MIN_BYTES = 1 << 20  # small members (a blank slice) may compress well and cost nothing
MAX_MEMBERS = 200_000
MAX_NAME_BYTES = 120
TEMP_PREFIX = "liverview-zip-"
_CHUNK = 1 << 20
_UNSAFE_CHARS = re.compile(r'[\x00-\x1f\x7f<>:"|?*\\]')
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(10)), *(f"LPT{i}" for i in range(10))}
_LEFTOVER = re.compile(re.escape(TEMP_PREFIX) + r"(\d+)-")


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
        """Remove the extraction folder of a zip (the files listed are gone after this)."""
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


def walk_files(root: Path, problems: list[str] | None = None) -> list[Path]:
    """Every regular file under `root`, recursively, in a stable order; links are not followed.

    A folder that cannot be listed is named in `problems`.
    """
    out: list[Path] = []

    def unreadable(exc: OSError) -> None:
        if problems is not None:
            where = printable(exc.filename or root)
            problems.append(f"{where}: folder not readable ({one_line(exc.strerror or exc)}): its files were not looked at")

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
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
        return [p for p in walk_files(path.parent, inp.problems) if p != path]


def _member_parts(name: str) -> tuple[str, ...] | None:
    """The path components of a zip member name, or None if the name would escape the folder."""
    clean = name.replace("\\", "/")
    parts = PurePosixPath(clean).parts
    if not parts or clean.startswith("/") or any(p in ("..", "") for p in parts) or ":" in parts[0]:
        return None
    return tuple(p for p in parts if p != ".") or None


def safe_name(part: str) -> str:
    """One path component that every disk accepts: no control or reserved characters, at most MAX_NAME_BYTES."""
    name = _UNSAFE_CHARS.sub("_", printable(part)).strip().rstrip(".")
    if not name or name in (".", ".."):
        name = "_"
    if name.split(".")[0].upper() in _RESERVED:
        name = "_" + name
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        digest = hashlib.sha1(part.encode("utf-8", "surrogateescape")).hexdigest()[:10]
        stem, dot, ext = name.rpartition(".")
        ext = dot + ext if dot and len(ext) <= 8 else ""
        keep = MAX_NAME_BYTES - len(digest) - 1 - len(ext.encode("utf-8"))
        head = (stem if ext else name).encode("utf-8")[:keep].decode("utf-8", "ignore")
        name = f"{head}~{digest}{ext}"
    return name


class _Names:
    """Safe, unique relative paths for zip members; folders keep their members together."""

    def __init__(self) -> None:
        self.dirs: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.taken: set[tuple[str, ...]] = set()  # casefolded, files and folders

    def _unique(self, parent: tuple[str, ...], name: str) -> tuple[str, ...]:
        stem, dot, ext = name.rpartition(".")
        if not dot or not stem:
            stem, ext = name, ""
        else:
            ext = "." + ext
        candidate, k = name, 1
        while tuple(p.casefold() for p in (*parent, candidate)) in self.taken:
            k += 1
            tail = f"~{k}{ext}"
            room = MAX_NAME_BYTES - len(tail.encode("utf-8"))
            candidate = stem.encode("utf-8")[:room].decode("utf-8", "ignore") + tail
        path = (*parent, candidate)
        self.taken.add(tuple(p.casefold() for p in path))
        return path

    def place(self, parts: tuple[str, ...]) -> tuple[str, ...]:
        parent: tuple[str, ...] = ()
        for k in range(len(parts) - 1):
            key = parts[: k + 1]
            safe = self.dirs.get(key)
            if safe is None:
                safe = self.dirs[key] = self._unique(parent, safe_name(parts[k]))
            parent = safe
        return self._unique(parent, safe_name(parts[-1]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def remove_leftovers(tmp: str | None = None) -> list[str]:
    """Remove extraction folders whose process is gone (a killed run); returns the folders removed."""
    tmp = tmp or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(tmp))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        m = _LEFTOVER.match(entry.name)
        if m is None:
            continue
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            if uid is not None and entry.stat(follow_symlinks=False).st_uid != uid:
                continue
        except OSError:
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.path)
    return removed


def _refusal(info: zipfile.ZipInfo) -> str | None:
    """Why a member is not extracted before reading it, or None."""
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link inside the zip: not extracted"
    if info.flag_bits & 0x1:
        return "encrypted zip member: not extracted"
    if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        ratio = info.file_size / max(info.compress_size, 1)
        return (
            f"claims {info.file_size / 1024**2:.0f} MiB from {info.compress_size} compressed bytes "
            f"(ratio {ratio:.0f}:1, more than {MAX_RATIO}:1): not extracted"
        )
    if _member_parts(info.filename) is None:
        return "unsafe path in zip (would land outside the extraction folder): not extracted"
    return None


def extract_zip(path: Path, inp: ExamInput, max_bytes: int = DEFAULT_MAX_EXTRACT_BYTES) -> Path:
    """Extract a zip into a private temporary folder (kept on `inp`), guarding against zip-slip and zip bombs."""
    try:
        zf = zipfile.ZipFile(path)
    except UnicodeDecodeError as exc:
        raise ExamError(f"{path}: zip member names are flagged UTF-8 but are not ({one_line(exc)})") from None
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ExamError(f"{path}: not a readable zip archive ({one_line(exc)})") from None
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if len(infos) > MAX_MEMBERS:
            raise ExamError(f"{path}: zip holds {len(infos)} files, more than the {MAX_MEMBERS} allowed")
        kept = []
        for info in infos:
            why = _refusal(info)
            if why:
                inp.skipped.append((f"{path}:{printable(info.filename)}", why))
            else:
                kept.append(info)
        declared = sum(i.file_size for i in kept)
        if declared > max_bytes:
            raise ExamError(
                f"{path}: zip expands to {declared / 1024**3:.1f} GiB, more than the {max_bytes / 1024**3:.1f} GiB allowed"
            )
        remove_leftovers()
        inp.tempdir = tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{os.getpid()}-")
        root = Path(inp.tempdir.name)
        names = _Names()
        renamed: list[tuple[str, str]] = []
        for info in kept:
            where = f"{path}:{printable(info.filename)}"
            parts = _member_parts(info.filename)
            safe = names.place(parts)
            if safe != parts:
                renamed.append((printable(info.filename), "/".join(safe)))
            target = root.joinpath(*safe)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    written = 0
                    while chunk := src.read(_CHUNK):
                        written += len(chunk)
                        if written > info.file_size:
                            raise ExamError("member is larger than the zip declares: not extracted")
                        dst.write(chunk)
            except (ExamError, zipfile.BadZipFile, OSError, EOFError, RuntimeError, NotImplementedError, ValueError) as exc:
                if target.is_file():
                    target.unlink()
                inp.skipped.append((where, str(exc) if isinstance(exc, ExamError) else f"cannot extract: {one_line(exc)}"))
        if renamed:
            n = len(renamed)
            inp.problems.append(
                f"{path}: {n} zip member name{'s' if n != 1 else ''} made safe (too long, colliding or not "
                f"portable): first '{renamed[0][0]}' extracted as '{renamed[0][1]}'"
            )
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
        inp.files = walk_files(p, inp.problems)
        return inp
    if zipfile.is_zipfile(p):
        inp = ExamInput(path=str(p), kind="zip", root=p)
        try:
            inp.root = extract_zip(p, inp, max_extract_bytes)
            inp.files = walk_files(inp.root, inp.problems)
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

