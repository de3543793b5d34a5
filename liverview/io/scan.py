"""Scan an exam location: read every header (no pixels), group studies and series, guess phases."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from liverview.io.errors import LoadCancelled, one_line, printable
from liverview.io.headers import SliceHeader, read_header
from liverview.io.inputs import ExamInput, open_input
from liverview.io.phase_id import assign_phases
from liverview.io.series import DEFAULT_MAX_PIXEL_BYTES, SeriesRecord, StudyRecord, group_studies

Progress = Callable[[int, int, str], None]


@dataclass(eq=False)
class ScanResult:
    """Everything found at a location: studies with their series, skipped files, problems."""

    path: str
    kind: str
    studies: list[StudyRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    n_files: int = 0
    input: ExamInput | None = None  # keeps an extracted zip alive while the result is in use

    def study(self, uid: str) -> StudyRecord | None:
        return next((s for s in self.studies if s.uid == uid), None)

    @property
    def series(self) -> list[SeriesRecord]:
        return [s for st in self.studies for s in st.series]

    def all_problems(self) -> list[str]:
        """Input problems, then per study its own problems and those of its series."""
        out = list(self.problems)
        for st in self.studies:
            out.extend(st.problems)
            for s in st.series:
                out.extend(s.problems)
                if s.refusal:
                    out.append(f"{s.label}: not loadable: {s.refusal}")
        return out

    def close(self) -> None:
        if self.input is not None:
            self.input.close()


def is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    is_set = getattr(cancel, "is_set", None)
    return bool(is_set() if callable(is_set) else cancel())


def display_path(inp: ExamInput, p: str | os.PathLike) -> str:
    """How a file is named to the user: inside a zip as ZIP:member, else its path."""
    if inp.kind == "zip":
        try:
            return printable(f"{inp.path}:{Path(p).relative_to(inp.root).as_posix()}")
        except ValueError:
            return printable(p)
    return printable(p)


def read_headers(
    inp: ExamInput, progress: Progress | None = None, cancel=None
) -> tuple[list[SliceHeader], list[tuple[str, str]]]:
    headers: list[SliceHeader] = []
    skipped: list[tuple[str, str]] = []
    total = len(inp.files)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about every oddity; problems are reported instead
        for i, f in enumerate(inp.files):
            if i % 64 == 0:
                if is_cancelled(cancel):
                    raise LoadCancelled(f"{inp.path}: scan cancelled")
                if progress is not None:
                    progress(i, total, "reading headers")
            try:
                h = read_header(f)
            except Exception as exc:  # the per-file boundary: one bad file never ends the scan
                h = f"unreadable DICOM header: {one_line(exc) or type(exc).__name__}"
            if isinstance(h, str):
                skipped.append((display_path(inp, f), h))
            else:
                headers.append(h)
    if progress is not None:
        progress(total, total, "reading headers")
    return headers, skipped


def scan_input(
    inp: ExamInput, max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES, progress: Progress | None = None, cancel=None
) -> ScanResult:
    headers, skipped = read_headers(inp, progress, cancel)
    result = ScanResult(
        path=inp.path,
        kind=inp.kind,
        skipped=inp.skipped + skipped,
        problems=list(inp.problems),
        n_files=len(inp.files),
        input=inp,
    )
    if not headers:
        result.problems.append(f"{inp.path}: no DICOM image files found ({len(inp.files)} files looked at)")
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result.studies = group_studies(headers, max_pixel_bytes)
    for st in result.studies:
        assign_phases(st)
    return result


def scan(
    path: str | os.PathLike,
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
    progress: Progress | None = None,
    cancel=None,
) -> ScanResult:
    """Read the headers of every file at `path` (folder, DICOMDIR, file or zip); decode nothing.

    Raises ExamError only when the path itself cannot be opened; unreadable files are
    listed in `skipped` with their reason, and every problem found is a one-line string.
    """
    inp = open_input(path)
    try:
        return scan_input(inp, max_pixel_bytes, progress, cancel)
    except BaseException:
        inp.close()
        raise
