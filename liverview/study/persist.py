"""Save and load a Case as versioned, validated JSON, atomically; case files of another study are refused, bad ones set aside."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from liverview.study.atomic import remove_interrupted_saves, write_bytes_atomic
from liverview.study.case import MAX_BOXES, MAX_PICKS, ORIGINS, Case, Study, short
from liverview.study.phases import PHASES
from liverview.study.volume import HU, WINDOWED

__all__ = [
    "CASE_SCHEMA", "CaseFileError", "CaseOfAnotherStudy", "load_case", "remove_interrupted_saves",
    "save_case", "schema_text", "set_aside",
]

log = logging.getLogger(__name__)

SCHEMA = "liverview.case"
SCHEMA_VERSION = 1
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_DEPTH = 64  # a saved case is about 8 levels deep; findings add a few
MAX_READS = 10_000
MAX_COORD = 1e6  # pixels: far beyond any image
MAX_MM = 1e7  # slice positions and patient coordinates, in mm

_ID = {"type": "string", "maxLength": 256}
_TEXT = {"type": "string", "maxLength": 4096}
_MM = {"type": "number", "minimum": -MAX_MM, "maximum": MAX_MM}
_PIXEL = {"type": "number", "minimum": 0, "maximum": MAX_COORD}

# What load_case accepts and save_case writes. docs/schemas/case.schema.json is this as text
# (schema_text()), with findings referring to findings.schema.json; tests/study/test_persist.py
# checks that the two agree.
CASE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "case.schema.json",
    "title": "liverview case file",
    "description": (
        "A reader's work on one exam: picked slice positions, boxes, findings and reads. Written by "
        "liverview.study.persist.save_case; load_case refuses a file that does not validate, whose "
        "numbers are not finite, that is nested deeper than 64 levels or larger than 32 MiB, or that "
        "belongs to another study."
    ),
    "type": "object",
    "required": ["schema", "schema_version"],
    "additionalProperties": False,
    "properties": {
        "schema": {"const": SCHEMA},
        "schema_version": {"const": SCHEMA_VERSION},
        "case_id": _ID,
        "study": {
            "description": "The exam the case was made on; a case file is applied only to that exam.",
            "type": ["object", "null"],
            "additionalProperties": False,
            "properties": {
                "study_uid": {**_ID, "description": "StudyInstanceUID; empty for image exports without one"},
                "patient_id": _ID,
                "path": _TEXT,
                "intensity": {"enum": [HU, WINDOWED, "mixed"]},
                "identity": {
                    "description": "What the exam's content was when the case was saved (io: exports hash their "
                                   "images, DICOM exams list their series and a digest of their SOP Instance UIDs)",
                    "type": ["object", "null"],
                    "maxProperties": 20,
                    "additionalProperties": {"anyOf": [_TEXT, {"type": "object", "maxProperties": 20,
                                                               "additionalProperties": _TEXT},
                                                       {"type": "array", "maxItems": 20, "items": _TEXT}]},
                },
                "phases": {
                    "type": "object",
                    "propertyNames": {"enum": list(PHASES)},
                    "additionalProperties": {
                        "type": "object",
                        "required": ["series_uid"],
                        "additionalProperties": False,
                        "properties": {
                            "series_uid": _ID,
                            "description": _TEXT,
                            "evidence": {"type": "array", "maxItems": 100, "items": _TEXT},
                            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                            "overridden": {
                                "type": "boolean",
                                "description": "the reader assigned this series to the phase",
                            },
                        },
                    },
                },
            },
        },
        "picks": {
            "description": "Picked slice positions (mm along the slice normal) per phase.",
            "type": "object",
            "propertyNames": {"enum": list(PHASES)},
            "additionalProperties": {"type": "array", "maxItems": MAX_PICKS, "items": _MM},
        },
        "boxes": {
            "type": "array",
            "maxItems": MAX_BOXES,
            "items": {
                "type": "object",
                "required": ["phase", "position", "x0", "y0", "x1", "y1"],
                "additionalProperties": False,
                "properties": {
                    "phase": {"enum": list(PHASES)},
                    "position": _MM,
                    "x0": _PIXEL,
                    "y0": _PIXEL,
                    "x1": _PIXEL,
                    "y1": _PIXEL,
                    "origin": {"enum": list(ORIGINS)},
                    "author": _ID,
                    "score": {"type": ["number", "null"]},
                    "accepted": {"type": "boolean"},
                    "label": _ID,
                    "id": _ID,
                    "patient": {
                        "description": "the two corners in patient space (LPS mm), null when the volume was not known",
                        "type": ["array", "null"],
                        "minItems": 2,
                        "maxItems": 2,
                        "items": {"type": "array", "minItems": 3, "maxItems": 3, "items": _MM},
                    },
                },
            },
        },
        "findings": {
            "description": "The last analysis (liverview.findings), or null.",
            "type": ["object", "null"],
        },
        "findings_stale": {
            "description": (
                "true when the findings were not computed from the case as saved (their computed_from "
                "digest differs, or they have none); false when there are no findings"
            ),
            "type": "boolean",
        },
        "reads": {"type": "array", "maxItems": MAX_READS, "items": {"type": "object"}},
    },
}
_VALIDATOR = Draft202012Validator(CASE_SCHEMA)


def schema_text() -> str:
    """CASE_SCHEMA as the text of docs/schemas/case.schema.json, findings given by findings.schema.json.

    load_case itself checks findings only as an object or null: findings that another
    liverview wrote differently are run again, and are no reason to set a reader's picks and
    boxes aside.
    """
    doc = json.loads(json.dumps(CASE_SCHEMA))
    doc["properties"]["findings"] = {
        "description": (
            "The last analysis (findings.schema.json), or null. load_case checks only that it is an "
            "object or null; findings_stale tells whether it still matches the case."
        ),
        "anyOf": [{"type": "null"}, {"$ref": "findings.schema.json"}],
    }
    return json.dumps(doc, indent=2) + "\n"


class CaseFileError(ValueError):
    """A case file that cannot be read; the message (one line) names the file, the field and the reason."""


class CaseOfAnotherStudy(CaseFileError):
    """A case file whose study is not the open exam; `reasons` says what differs."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


# ---- saving ---------------------------------------------------------------------------------
def save_case(case: Case, path: str | os.PathLike) -> None:
    """Write `case` to `path` atomically; CaseFileError (nothing written) when load_case would refuse the result.

    Only `case.to_dict()` is used, so a snapshot taken on another thread will do.
    """
    path = Path(path)
    data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **case.to_dict()}
    try:
        for key in ("findings", "reads"):
            # engine output and free-form notes: a NaN there must not keep the reader's picks and boxes from being saved
            bad = _first_bad_number(data.get(key))
            if bad:
                log.warning("%s: %s saved with null for numbers that are not finite (%s)", path, key, bad)
                data[key] = _nulled(data[key])
        text = json.dumps(data, indent=2, allow_nan=False)
    except RecursionError:
        raise CaseFileError(f"{path}: not saved: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:
        # a NaN or infinity somewhere (engine output, say): name where
        raise CaseFileError(f"{path}: not saved: {_first_bad_number(data) or 'a number is not finite'}") from None
    except TypeError as exc:
        raise CaseFileError(f"{path}: not saved: {_one_line(exc)}") from None
    raw = text.encode("utf-8")
    if len(raw) > MAX_FILE_BYTES:
        raise CaseFileError(f"{path}: not saved: {_mib(len(raw))}, more than the {_mib(MAX_FILE_BYTES)} a case file may be")
    try:
        _check_text(text)
    except _Refused as exc:
        raise CaseFileError(f"{path}: not saved: {_one_line(exc)}") from None
    write_bytes_atomic(path, raw)


# ---- loading --------------------------------------------------------------------------------
class _Refused(Exception):
    """Why a case document is refused ('field: reason'); load_case adds the file name."""


class _NotFinite:
    """What the JSON parser puts where the text has NaN, Infinity or a number too large for a float."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def load_case(path: str | os.PathLike, study: Study | None = None) -> Case:
    """The case saved at `path`, checked in full before anything is built.

    Raises CaseFileError for every file that cannot be used: missing, larger than 32 MiB,
    not UTF-8, not JSON (a truncated file), nested deeper than 64 levels, NaN or infinite
    numbers, anything the case schema refuses; and CaseOfAnotherStudy (a CaseFileError) when
    `study` is given and the file was saved for another study. The message is one line:
    the file, the field, the reason.
    """
    path = Path(path)
    try:
        data = _read(path)
        if study is not None:
            _check_same_study(path, data.get("study"), study)
        return Case.from_dict(data, study=study)
    except CaseFileError:
        raise
    except _Refused as exc:
        raise CaseFileError(f"{path}: {_one_line(exc)}") from None
    except ValueError as exc:  # from_dict names the field
        raise CaseFileError(f"{path}: {_one_line(exc)}") from None
    # anything else is a file neither the schema nor from_dict foresaw: still a case file error
    except (TypeError, KeyError, IndexError, AttributeError, ArithmeticError, RecursionError) as exc:
        raise CaseFileError(f"{path}: bad case field ({type(exc).__name__}: {_one_line(exc)})") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CaseFileError(f"{path}: no such case file") from None
    except OSError as exc:
        raise CaseFileError(f"{path}: not a readable case file ({_one_line(exc)})") from None
    if not path.is_file():
        raise CaseFileError(f"{path}: not a readable case file (not a plain file)")
    if st.st_size > MAX_FILE_BYTES:
        raise _Refused(f"{_mib(st.st_size)}, more than the {_mib(MAX_FILE_BYTES)} a case file may be")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)  # the file may grow after stat
    except OSError as exc:
        raise CaseFileError(f"{path}: not a readable case file ({_one_line(exc)})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _Refused(f"more than the {_mib(MAX_FILE_BYTES)} a case file may be")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        start = 3 if raw.startswith(b"\xef\xbb\xbf") else 0
        before = raw[start:exc.start].decode("utf-8", errors="replace")
        where = _field(_path_at(before, len(before)))
        raise _Refused(f"{where + ': ' if where else ''}not a readable case file: not UTF-8 text "
                       f"(byte 0x{raw[exc.start]:02x} at offset {exc.start})") from None
    return _check_text(text)


def _check_text(text: str) -> dict[str, Any]:
    """The case document in `text`, or _Refused naming the field and the reason."""
    deep = _too_deep_at(text)
    if deep is not None:
        where = _field(_path_at(text, deep)) or "the document"
        raise _Refused(f"{where}: nested deeper than {MAX_DEPTH} levels")
    flagged: list[_NotFinite] = []

    def flag(literal: str) -> _NotFinite:
        flagged.append(_NotFinite(literal))
        return flagged[-1]

    def as_float(literal: str) -> float | _NotFinite:
        value = float(literal)
        return value if math.isfinite(value) else flag(literal)

    def as_int(literal: str) -> int | _NotFinite:
        try:
            value = int(literal)
            float(value)
        except (ValueError, OverflowError):  # more digits than Python converts, or beyond any float
            return flag(literal if len(literal) <= 20 else literal[:17] + "...")
        return value

    # Without a long digit run or a 3-digit exponent no number can overflow: then the parser
    # need not call back for every number.
    hooks = {"parse_float": as_float, "parse_int": as_int} if _MAYBE_HUGE.search(text) else {}
    try:
        data = json.loads(text, parse_constant=flag, **hooks)
    except json.JSONDecodeError as exc:
        where = _field(_path_at(text, exc.pos))
        ends = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        what = "truncated (the file ends inside the document)" if ends else "not valid JSON"
        raise _Refused(f"{where + ': ' if where else ''}not a readable case file: {what}: "
                       f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise _Refused(f"not a readable case file ({_one_line(exc)})") from None
    if flagged:  # only then is the document walked, to name the field
        raise _Refused(_first_bad_number(data) or f"{flagged[0].text} is not a finite number")
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise _Refused("not a liverview case file (schema field missing or wrong)")
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise _Refused(f"schema_version: expected an integer, got {_json_kind(version)}")
    if version > SCHEMA_VERSION:
        raise _Refused(f"schema_version {short(version)} is newer than this liverview reads ({SCHEMA_VERSION})")
    # counted before the schema, which would otherwise look at each of a hundred thousand boxes
    for key, cap in (("boxes", MAX_BOXES), ("reads", MAX_READS)):
        items = data.get(key)
        if isinstance(items, list) and len(items) > cap:
            raise _Refused(f"{key}: {len(items)} items, at most {cap}")
    error = next(_VALIDATOR.iter_errors(data), None)  # the first, in the order of the document
    if error is not None:
        raise _Refused(_schema_message(error))
    return data


def _first_bad_number(data: Any) -> str | None:
    """'field: X is not a finite number' for the first NaN or infinity in `data`, else None."""
    stack: list[tuple[Any, tuple]] = [(data, ())]
    while stack:
        value, where = stack.pop()
        if isinstance(value, _NotFinite):
            return f"{_field(where) or 'the document'}: {value.text} is not a finite number"
        if isinstance(value, (float, np.floating)) and not math.isfinite(value):
            return f"{_field(where) or 'the document'}: {value} is not a finite number"
        if isinstance(value, dict):
            stack.extend((v, (*where, k)) for k, v in reversed(list(value.items())))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, (*where, i)) for i, v in reversed(list(enumerate(value))))
    return None


def _nulled(value: Any) -> Any:
    """`value` with None for every NaN or infinity in it (a copy; containers become dicts and lists)."""
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _nulled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulled(v) for v in value]
    return value


_MAYBE_HUGE = re.compile(r"\d{300}|[eE]\+?0*[1-9]\d\d")
# JSON strings (possessive, so no backtracking) and the characters that open or close a level.
_STRING = r'"(?:[^"\\]++|\\.)*+"'
_TOKENS = re.compile(_STRING + r"|[\[\]{},:]")
_STRINGS = re.compile(_STRING)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]++")


def _too_deep_at(text: str) -> int | None:
    """The offset in `text` where nesting first goes past MAX_DEPTH, else None; never recurses.

    The depth is found with array arithmetic over the brackets outside strings, so that a
    deep file is refused before the JSON parser (which recurses) sees it.
    """
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    if len(brackets) <= MAX_DEPTH:
        return None
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    depth, chunk = 0, 1 << 20
    for start in range(0, len(codes), chunk):
        part = codes[start:start + chunk]
        steps = np.where((part == ord("[")) | (part == ord("{")), 1, -1).astype(np.int64)
        levels = depth + np.cumsum(steps)
        if levels.max() > MAX_DEPTH:
            # the JSON tokens up to that bracket tell where it is in the text
            target = start + int(np.argmax(levels > MAX_DEPTH))
            seen = -1
            for m in _TOKENS.finditer(text):
                if m.group()[0] in "[]{}":
                    seen += 1
                    if seen == target:
                        return m.start()
            return len(text)
        depth = int(levels[-1])
    return None


def _path_at(text: str, pos: int) -> tuple:
    """The path (keys and indexes) of the value being read at offset `pos` of JSON `text`, without parsing it."""
    stack: list[list] = []  # per level: ["obj", key or None, expecting a key] or ["arr", index]
    for m in _TOKENS.finditer(text):
        if m.start() >= pos:
            break
        tok = m.group()
        top = stack[-1] if stack else None
        if tok == "{":
            stack.append(["obj", None, True])
        elif tok == "[":
            stack.append(["arr", 0])
        elif tok in "}]":
            if stack:
                stack.pop()
        elif tok == ":":
            if top and top[0] == "obj":
                top[2] = False
        elif tok == ",":
            if top and top[0] == "obj":
                top[1], top[2] = None, True
            elif top:
                top[1] += 1
        elif top and top[0] == "obj" and top[2]:
            try:
                top[1] = json.loads(tok)
            except ValueError:
                top[1] = tok[1:-1]
    out: list = []
    for level in stack:
        if level[0] == "arr":
            out.append(level[1])
        elif level[1] is None:
            break
        else:
            out.append(level[1])
    return tuple(out)


def _field(where: Iterable) -> str:
    """A path as a field name: ('boxes', 3, 'x0') -> 'boxes[3].x0'; long paths are cut in the middle."""
    parts = list(where)
    if len(parts) > 8:
        parts = parts[:4] + ["..."] + parts[-2:]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p == "...":
            out += "..."
        else:
            name = " ".join(str(p).split()) or repr(p)
            name = name if len(name) <= 40 else name[:37] + "..."
            out += f".{name}" if out else name
    return out


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {short(value)}"
    if isinstance(value, str):
        return f"the string {short(value)}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _schema_message(error: ValidationError) -> str:
    """One line 'field: reason' for a schema error, never printing a large value."""
    where = _field(error.absolute_path) or "the document"
    v, kw, inst = error.validator_value, error.validator, error.instance
    if "propertyNames" in error.relative_schema_path:
        where = _field(list(error.absolute_path)) or "the document"
        reason = f"unknown key {short(inst)}: expected one of {', '.join(map(str, v))}"
    elif kw == "type":
        kinds = " or ".join(v) if isinstance(v, list) else v
        reason = f"expected {kinds}, got {_json_kind(inst)}"
    elif kw in ("enum", "const"):
        allowed = ", ".join(map(str, v)) if kw == "enum" else short(v)
        reason = f"{_json_kind(inst)} is not one of {allowed}" if kw == "enum" else f"expected {allowed}, got {_json_kind(inst)}"
    elif kw == "maxItems":
        reason = f"{len(inst)} items, at most {v}"
    elif kw == "minItems":
        reason = f"{len(inst)} items, at least {v}"
    elif kw == "maxLength":
        reason = f"a string of {len(inst)} characters, at most {v}"
    elif kw in ("minimum", "maximum"):
        reason = f"{short(inst)} is {'below the minimum' if kw == 'minimum' else 'above the maximum'} {v:g}"
    elif kw == "required":
        missing = [k for k in v if isinstance(inst, dict) and k not in inst]
        reason = f"missing field {missing[0] if missing else short(v)}"
    elif kw == "additionalProperties":
        extra = [k for k in inst if k not in error.schema.get("properties", {})] if isinstance(inst, dict) else []
        reason = f"unknown field {short(extra[0]) if extra else '?'}"
    else:
        reason = _one_line(error.message)[:200]
    return f"{where}: {reason}"


# ---- whose case file ------------------------------------------------------------------------
def _describe(uid: str, patient: str, path: str) -> str:
    text = uid or "without a StudyInstanceUID"
    text += f" (patient {patient or 'unknown'}"
    if not uid and path:
        text += f", at {path}"
    return text + ")"


def _same_path(a: str, b: str) -> bool:
    return a == b or os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _check_same_study(path: Path, block: Any, study: Study) -> None:
    """CaseOfAnotherStudy unless the case file's study block names the open `study`.

    The StudyInstanceUID decides when both have one; without (image exports) the patient ID
    and the exam's path must agree. The series of the file's phases must be series of the
    open exam, except after the reader reassigned phases (`overridden`): the viewer then
    reopens the exam with the file's assignment, and the phases it guessed around the
    reader's choice may name other series too; the study is then confirmed by its UID or by
    a series both name.
    """
    open_desc = _describe(study.study_uid, study.patient_id, study.path)
    if not isinstance(block, dict):
        raise CaseOfAnotherStudy(
            f"{path}: study: the case file names no study; cannot tell that it is for the open exam {open_desc}",
            ["study"],
        )
    uid, patient, where = (str(block.get(k) or "") for k in ("study_uid", "patient_id", "path"))
    file_desc = _describe(uid, patient, where)
    mine, theirs = block.get("identity"), study.info.get("identity") if isinstance(study.info, dict) else None
    if isinstance(mine, dict) and isinstance(theirs, dict) and mine.get("kind") == theirs.get("kind") == "export":
        # an image export is known by its images, wherever it is copied to
        if mine.get("images_sha256") != theirs.get("images_sha256"):
            raise CaseOfAnotherStudy(f"{path}: study.identity: the case file was saved on other images than the "
                                     f"open export's ({file_desc}; the open exam is {open_desc})", ["identity"])
        return
    reasons = []
    same_uid = bool(uid and study.study_uid and uid == study.study_uid)
    if uid and study.study_uid:
        if uid != study.study_uid:
            reasons.append("study_uid")
    else:
        compared = False
        if patient and study.patient_id:
            compared = True
            if patient != study.patient_id:
                reasons.append("patient_id")
        if where and study.path:
            compared = True
            if not _same_path(where, study.path):
                reasons.append("path")
        if not compared:
            raise CaseOfAnotherStudy(
                f"{path}: study: the case file ({file_desc}) and the open exam ({open_desc}) share no "
                "StudyInstanceUID, patient ID or path to tell that they are the same study",
                ["study"],
            )
    if reasons:
        raise CaseOfAnotherStudy(
            f"{path}: study.{reasons[0]}: case file is for study {file_desc}, the open exam is {open_desc}", reasons)
    phases = block.get("phases") if isinstance(block.get("phases"), dict) else {}
    named = {p: s.get("series_uid") for p, s in phases.items() if isinstance(s, dict) and s.get("series_uid")}
    known = {s.series_uid for s in study.sources.values() if s.series_uid}
    known |= {v.series_uid for v in study.volumes.values() if v.series_uid}
    if not named or not known:
        return
    unknown = {p: s for p, s in named.items() if s not in known}
    if not unknown:
        return
    reassigned = any(isinstance(s, dict) and s.get("overridden") is True for s in phases.values())
    if reassigned and (same_uid or set(named.values()) & known):
        return
    phase, series = next(iter(unknown.items()))
    raise CaseOfAnotherStudy(
        f"{path}: study.phases.{phase}.series_uid: case file names series {short(series, 70)} for phase {phase}, "
        f"which the open exam {open_desc} does not have",
        ["series_uid"],
    )


# ---- bad files ------------------------------------------------------------------------------
def set_aside(path: str | os.PathLike, reason: str) -> Path:
    """Move the case file at `path` aside, next to it, as `<stem>.unreadable-<UTC time>.json`; the new path.

    An earlier file set aside is never overwritten (a counter is added to the name). The
    reason is logged. Raises OSError when the file cannot be moved.
    """
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for n in range(1, 1000):
        suffix = "" if n == 1 else f"-{n}"
        target = path.with_name(f"{path.stem}.unreadable-{stamp}{suffix}.json")
        try:
            # the name is claimed first, so that nothing of another process is replaced
            fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        try:
            os.replace(path, target)
        except BaseException:
            try:
                os.unlink(target)
            except OSError:
                pass
            raise
        log.warning("case file %s set aside as %s: %s", path, target.name, reason)
        return target
    raise FileExistsError(f"{path}: cannot set it aside: 999 files set aside this second")


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def _one_line(exc: BaseException | str) -> str:
    return " ".join(str(exc).split())
