"""Where a study's case file lives and how it is restored: validated, never another study's, bad files set aside."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

from liverview.study.case import Case, Study
from liverview.study.atomic import remove_interrupted_saves
from liverview.study.persist import CaseFileError, load_case, set_aside


def case_key(study: Study) -> str:
    """What names a study's case file: an image export's content digest, else its StudyInstanceUID, else a path hash.

    An export is named by its images, never by its folder: a case saved for other images is not applied.
    """
    identity = study.info.get("identity") or {}
    if identity.get("kind") == "export" and identity.get("images_sha256"):
        return "export-" + identity["images_sha256"][:32]
    if study.study_uid:
        return study.study_uid
    return "path-" + hashlib.sha1(os.path.abspath(study.path or "").encode()).hexdigest()[:16]


def case_path_for(case_dir: Path, study: Study) -> Path:
    """The case file of a study inside `case_dir`, named from its key made safe for any file system."""
    safe = re.sub(r"[^0-9A-Za-z._-]", "_", case_key(study) or "unknown")[:120]
    return case_dir / f"{safe}.json"


def restore_case(case_dir: Path | None, study: Study) -> tuple[Case | None, Path | None, list[str]]:
    """(the saved case or None, where the case is saved, problems to tell the reader).

    Leftovers of interrupted saves are removed first. A case file that fails validation, or
    belongs to another study, is moved aside (kept, named in the message) and the exam
    opens with a new case.
    """
    if case_dir is None:
        return None, None, []
    case_dir.mkdir(parents=True, exist_ok=True)
    notes = []
    removed = remove_interrupted_saves(case_dir)
    if removed:
        notes.append(f"removed {len(removed)} leftover temporary file{'s' if len(removed) != 1 else ''} "
                     f"of interrupted saves in {case_dir}")
    path = case_path_for(case_dir, study)
    if not path.exists():
        return None, path, notes + cases_of_other_images(case_dir, study)
    try:
        return load_case(path, study), path, notes
    except CaseFileError as exc:
        kept = set_aside(path, str(exc))
        notes.append(f"{exc} (kept as {kept.name}; starting a new case)")
        return None, path, notes


def cases_of_other_images(case_dir: Path, study: Study) -> list[str]:
    """One line per case file saved for this export's location but on other images (none for DICOM exams)."""
    if not str(case_key(study)).startswith("export-") or not study.path:
        return []
    here = os.path.abspath(study.path)
    legacy = case_dir / f"path-{hashlib.sha1(here.encode()).hexdigest()[:16]}.json"
    out = []
    for other in sorted(case_dir.glob("export-*.json")) + ([legacy] if legacy.is_file() else []):
        where = saved_study_block(other).get("path")
        if other == legacy or (isinstance(where, str) and os.path.abspath(where) == here):
            out.append(f"your case for {study.path} ({other.name}) was saved on other images: the export's images "
                       "changed since, so it is not applied (the file is kept; this exam starts a new case)")
    return out


def saved_study_block(path: Path | None) -> dict[str, Any]:
    """The study block a case file was saved with ({} when there is none or it cannot be read)."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return {}
    block = data.get("study") if isinstance(data, dict) else None
    return block if isinstance(block, dict) else {}
