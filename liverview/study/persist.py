"""Save and load a Case as versioned JSON, atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from liverview.study.atomic import write_json_atomic
from liverview.study.case import Case, Study

SCHEMA = "liverview.case"
SCHEMA_VERSION = 1


class CaseFileError(ValueError):
    """A case file that cannot be read; the message names the file and the reason."""


def save_case(case: Case, path: str | os.PathLike) -> None:
    data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **case.to_dict()}
    write_json_atomic(path, data)


def load_case(path: str | os.PathLike, study: Study | None = None) -> Case:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseFileError(f"{path}: no such case file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CaseFileError(f"{path}: not a readable case file ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise CaseFileError(f"{path}: not a liverview case file (schema field missing or wrong)")
    version = data.get("schema_version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise CaseFileError(f"{path}: schema_version {version!r} is newer than this liverview reads ({SCHEMA_VERSION})")
    try:
        return Case.from_dict(data, study=study)
    except (TypeError, ValueError, KeyError) as exc:
        raise CaseFileError(f"{path}: bad case field ({exc})") from None
