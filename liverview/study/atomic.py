"""Atomic file writes (temporary file in the same folder, fsync, replace) and removal of the leftovers of interrupted ones."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: an open file cannot be deleted there, which protects a write in progress
    fcntl = None

# The name tempfile.mkstemp gives with prefix ".{name}." and suffix ".tmp": a dot, the target's
# name, a dot, random letters, digits or underscores, ".tmp".
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<random>[A-Za-z0-9_]+)\.tmp$")
# A temporary file younger than this is left alone even when nobody holds its lock: a writer
# takes the lock right after creating the file, and this covers that instant.
TEMP_GRACE_S = 2.0


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` so that `path` is always either the old file or the whole new one.

    The temporary file is locked (flock, where there is one) from creation until it has replaced
    `path`, so that `remove_interrupted_saves` in another process can tell it is being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if fcntl is not None:
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                except OSError:  # a file system without locks: the grace time alone protects this write
                    pass
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
            if fcntl is not None:
                # replaced while still open and locked: the lock covers the file until it has its final name
                os.replace(tmp, path)
        if fcntl is None:
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=False).encode("utf-8"))


def remove_interrupted_saves(folder: str | os.PathLike, grace_s: float = TEMP_GRACE_S) -> list[Path]:
    """Delete the temporary files that writes in `folder` left behind when they were killed; the deleted paths.

    Only plain files named as `write_bytes_atomic` names its temporary files are considered
    (`.{name}.{random}.tmp`). A file is left alone while a writer may still own it: when
    another process (a second viewer on the same case folder) holds its lock, when it is
    younger than `grace_s` seconds, or (Windows, no flock) when it cannot be deleted because it
    is open. A killed writer's lock goes with it, so its leftover is removed at the next call.
    """
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not TEMP_NAME.match(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        path = Path(entry.path)
        if _remove_if_abandoned(path, grace_s):
            removed.append(path)
    return removed


def _remove_if_abandoned(path: Path, grace_s: float) -> bool:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a writer holds it (or the file system has no locks: leaving a leftover is harmless)
                return False
        st = os.fstat(fd)
        if time.time() - st.st_mtime < grace_s:
            return False
        try:
            now = os.stat(path, follow_symlinks=False)
        except OSError:
            return False
        if (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev):  # renamed over meanwhile
            return False
        if fcntl is None:
            os.close(fd)  # Windows deletes no open file, not even our own handle
            fd = -1
        try:
            os.unlink(path)
        except OSError:
            return False
        return True
    finally:
        if fd >= 0:
            os.close(fd)
