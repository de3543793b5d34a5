"""Case files that cannot hurt the viewer: validation, another study's file, stale findings, set-aside and leftover temp files."""

import copy
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from liverview.study import atomic
from liverview.study.case import BOX_FIELDS, MAX_BOXES, Box, Case, PhaseSource, Study
from liverview.study.inputs import inputs_digest
from liverview.study.persist import (
    CASE_SCHEMA,
    MAX_DEPTH,
    CaseFileError,
    CaseOfAnotherStudy,
    load_case,
    remove_interrupted_saves,
    save_case,
    schema_text,
    set_aside,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exam(study):
    """The conftest study with a patient and the series of each phase recorded, as a loaded exam has."""
    study.patient_id = "A"
    study.sources = {p: PhaseSource(series_uid=v.series_uid, description=f"series {p}") for p, v in study.volumes.items()}
    return study


def full_case(study) -> Case:
    """A case with picks, a user box, an accepted and an unaccepted AI box, a read and current findings."""
    case = Case(study)
    for phase, vol in study.volumes.items():
        case.set_picks(phase, [float(vol.positions[k]) for k in (2, 4, 6)])
    pos = float(study.volumes["A"].positions[4])
    case.add_box(Box("A", pos, 2, 3, 8, 9, author="dr x"))
    case.add_box(Box("A", pos, 10, 10, 20, 18, origin="ai", author="engine", score=0.91, accepted=True))
    case.add_box(Box("V", float(study.volumes["V"].positions[2]), 1, 1, 5, 6, origin="ai", author="engine",
                     score=0.4, accepted=False))
    case.add_read({"reader": "dr x", "diagnosis": "hepatoblastoma"})
    case.set_findings({"exam": {"label": "HB", "p": 0.8}, "composites": [],
                       "computed_from": {"digest": inputs_digest(case)}})
    return case


def saved(tmp_path, case, name="case.json") -> tuple[Path, dict]:
    path = tmp_path / name
    save_case(case, path)
    return path, json.loads(path.read_text(encoding="utf-8"))


def write_json(tmp_path, data, name="case.json", raw=None) -> Path:
    path = tmp_path / name
    text = json.dumps(data)
    for placeholder, literal in (raw or {}).items():
        text = text.replace(json.dumps(placeholder), literal)
    path.write_text(text, encoding="utf-8")
    return path


def refused(path, study=None, kind=CaseFileError) -> str:
    """load_case's message for a refused file: a `kind`, one line, beginning with the file."""
    with pytest.raises(CaseFileError) as info:
        load_case(path, study)
    assert isinstance(info.value, kind)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert len(message) < 400 + len(str(path)), "a message never prints a large value"
    return message[len(str(path)) + 2:]


# ---- a valid file ---------------------------------------------------------------------------
def test_round_trip_gives_the_same_case(tmp_path, exam):
    case = full_case(exam)
    path, data = saved(tmp_path, case)
    again = load_case(path, exam)
    assert again.to_dict() == case.to_dict()
    assert data["findings_stale"] is False
    assert [p.name for p in tmp_path.iterdir()] == ["case.json"]


def test_schema_file_is_the_schema_save_case_writes_to(tmp_path, exam):
    schemas = ROOT / "docs" / "schemas"
    doc = schemas / "case.schema.json"
    assert doc.read_text(encoding="utf-8") == schema_text(), "regenerate docs/schemas/case.schema.json from persist.schema_text()"
    schema = json.loads(doc.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    findings_schema = json.loads((schemas / "findings.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(findings_schema)
    _, data = saved(tmp_path, full_case(exam))
    assert {b["origin"] for b in data["boxes"]} == {"user", "ai"} and data["findings"] and any(data["picks"].values())

    def errors(findings_resource):
        registry = Registry().with_resource("findings.schema.json", Resource.from_contents(findings_resource))
        return [(list(e.absolute_path), e.message) for e in Draft202012Validator(schema, registry=registry).iter_errors(data)]

    # the findings of this case are made up: everything else validates, they are checked by findings.schema.json
    assert errors({"$schema": findings_schema["$schema"], "type": "object"}) == []
    assert [where for where, _ in errors(findings_schema)] == [["findings"]]
    data["findings"] = None
    assert errors(findings_schema) == []
    assert CASE_SCHEMA["properties"]["findings"]["type"] == ["object", "null"], "load_case checks findings as an object"


def test_schema_names_every_box_and_phase_source_field():
    props = CASE_SCHEMA["properties"]
    assert set(props["boxes"]["items"]["properties"]) == set(BOX_FIELDS) == {f.name for f in fields(Box)}
    source = props["study"]["properties"]["phases"]["additionalProperties"]["properties"]
    assert set(source) == {f.name for f in fields(PhaseSource)}
    assert set(props) >= set(Case().to_dict()) | {"schema", "schema_version"}


def test_an_older_file_without_findings_stale_and_a_minimal_one_load(tmp_path, exam):
    _, data = saved(tmp_path, full_case(exam))
    del data["findings_stale"]
    case = load_case(write_json(tmp_path, data, "old.json"), exam)
    assert case.findings_stale is False, "worked out from the findings, not read from the file"
    minimal = {"schema": "liverview.case", "schema_version": 1, "study": {"study_uid": "1.2.3"}, "picks": {"A": [-40.0]}}
    assert load_case(write_json(tmp_path, minimal, "min.json"), exam).picks["A"] == [-40.0]


# ---- attacks --------------------------------------------------------------------------------
def attack(tmp_path, exam, change, raw=None) -> str:
    _, data = saved(tmp_path, full_case(exam), "good.json")
    change(data)
    return refused(write_json(tmp_path, data, raw=raw), exam)


def set_in(path, value):
    def change(data):
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return change


def test_nan_literal_coordinate(tmp_path, exam):
    msg = attack(tmp_path, exam, set_in(["boxes", 1, "x0"], "@nan@"), raw={"@nan@": "NaN"})
    assert msg == "boxes[1].x0: NaN is not a finite number"


def test_huge_number_coordinate(tmp_path, exam):
    msg = attack(tmp_path, exam, set_in(["boxes", 1, "x0"], "@big@"), raw={"@big@": "1e999"})
    assert msg == "boxes[1].x0: 1e999 is not a finite number"
    msg = attack(tmp_path, exam, set_in(["boxes", 0, "y1"], "@big@"), raw={"@big@": "9" * 400})
    assert msg.startswith("boxes[0].y1: 99999") and msg.endswith("is not a finite number")


def test_infinity_in_a_pick_and_deep_in_findings(tmp_path, exam):
    assert attack(tmp_path, exam, set_in(["picks", "A", 0], "@x@"), raw={"@x@": "-Infinity"}) == (
        "picks.A[0]: -Infinity is not a finite number")
    msg = attack(tmp_path, exam, set_in(["findings", "exam", "p"], "@x@"), raw={"@x@": "NaN"})
    assert msg == "findings.exam.p: NaN is not a finite number"


def test_string_score(tmp_path, exam):
    msg = attack(tmp_path, exam, set_in(["boxes", 1, "score"], "0.9"))
    assert msg == "boxes[1].score: expected number or null, got the string '0.9'"


def test_dict_label(tmp_path, exam):
    assert attack(tmp_path, exam, set_in(["boxes", 0, "label"], {"x": 1})) == "boxes[0].label: expected string, got an object"


def test_findings_as_a_string(tmp_path, exam):
    msg = attack(tmp_path, exam, set_in(["findings"], "HB 80%"))
    assert msg == "findings: expected object or null, got the string 'HB 80%'"


def test_a_hundred_thousand_boxes(tmp_path, exam):
    def change(data):
        data["boxes"] = [dict(data["boxes"][0], id=f"b{i}") for i in range(100_000)]
    t0 = time.perf_counter()
    assert attack(tmp_path, exam, change) == f"boxes: 100000 items, at most {MAX_BOXES}"
    assert time.perf_counter() - t0 < 30


def test_picks_as_a_string(tmp_path, exam):
    assert attack(tmp_path, exam, set_in(["picks"], "-40,-42")) == "picks: expected object, got the string '-40,-42'"


def test_a_ten_thousand_deep_nested_list(tmp_path, exam):
    deep = "[" * 10_000 + "]" * 10_000
    msg = attack(tmp_path, exam, set_in(["reads", 0, "note"], "@deep@"), raw={"@deep@": deep})
    assert re.fullmatch(rf"reads\[0\]\.note(\[0\])+\.\.\.\[0\]\[0\]: nested deeper than {MAX_DEPTH} levels", msg), msg
    path = tmp_path / "list.json"
    path.write_text(deep)
    assert refused(path, exam).endswith(f": nested deeper than {MAX_DEPTH} levels")


def test_nesting_below_the_parser_limit_is_refused_too(tmp_path, exam):
    deep = "{\"a\":" * 200 + "1" + "}" * 200
    msg = attack(tmp_path, exam, set_in(["findings", "extra"], "@deep@"), raw={"@deep@": deep})
    assert msg.startswith("findings.extra.a.a") and msg.endswith(f"nested deeper than {MAX_DEPTH} levels")


def test_a_truncated_file(tmp_path, exam):
    good, _ = saved(tmp_path, full_case(exam), "good.json")
    text = good.read_text()
    cut = text.index('"x1"', text.index('"boxes"')) + len('"x1": ')
    path = tmp_path / "case.json"
    path.write_text(text[:cut])
    msg = refused(path, exam)
    assert msg.startswith("boxes[0].x1: not a readable case file: truncated"), msg
    path.write_text(text[: len(text) // 3])
    assert "truncated" in refused(path, exam)


def test_a_file_that_is_not_utf8(tmp_path, exam):
    good, _ = saved(tmp_path, full_case(exam), "good.json")
    raw = good.read_bytes().replace(b'"dr x"', b'"dr \xff"', 1)
    path = tmp_path / "case.json"
    path.write_bytes(raw)
    msg = refused(path, exam)
    offset = raw.index(b"\xff")
    assert msg == f"boxes[0].author: not a readable case file: not UTF-8 text (byte 0xff at offset {offset})"


def test_a_100_mb_file_is_refused_before_it_is_read(tmp_path, exam, monkeypatch):
    path = tmp_path / "case.json"
    with open(path, "wb") as fh:
        fh.truncate(100 * 1024 * 1024)
    opened = []
    real_open = open
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a[0]) or real_open(*a, **k))
    assert refused(path, exam) == "100.0 MiB, more than the 32.0 MiB a case file may be"
    assert str(path) not in map(str, opened)


@pytest.mark.parametrize(
    "change, expected",
    [
        (set_in(["boxes", 0, "x0"], -3.0), "boxes[0].x0: -3.0 is below the minimum 0"),
        (set_in(["boxes", 0, "x1"], True), "boxes[0].x1: expected number, got a boolean"),
        (set_in(["boxes", 0, "phase"], "Q"), "boxes[0].phase: the string 'Q' is not one of P, A, V, D"),
        (set_in(["boxes", 0, "origin"], "robot"), "boxes[0].origin: the string 'robot' is not one of user, ai, truth"),
        (set_in(["boxes", 0, "sneaky"], 1), "boxes[0]: unknown field 'sneaky'"),
        (set_in(["boxes", 0, "patient"], [[1, 2], [3, 4, 5]]), "boxes[0].patient[0]: 2 items, at least 3"),
        (set_in(["boxes"], {"0": {}}), "boxes: expected array, got an object"),
        (set_in(["boxes", 2], "box"), "boxes[2]: expected object, got the string 'box'"),
        (set_in(["picks", "A"], [1.0, 2.0, 3.0, 4.0]), "picks.A: 4 items, at most 3"),
        (set_in(["picks", "X"], [1.0]), "picks: unknown key 'X': expected one of P, A, V, D"),
        (set_in(["reads"], [1, 2]), "reads[0]: expected object, got the number 1"),
        (set_in(["case_id"], 7), "case_id: expected string, got the number 7"),
        (set_in(["findings_stale"], "no"), "findings_stale: expected boolean, got the string 'no'"),
        (set_in(["study", "phases", "A", "overridden"], 1), "study.phases.A.overridden: expected boolean, got the number 1"),
        (set_in(["boxes", 0, "label"], "x" * 100_000), "boxes[0].label: a string of 100000 characters, at most 256"),
        (set_in(["extra"], 1), "the document: unknown field 'extra'"),
    ],
)
def test_every_malformed_field_is_a_case_file_error_naming_it(tmp_path, exam, change, expected):
    assert attack(tmp_path, exam, change) == expected


@pytest.mark.parametrize("text", ["[]", "null", "42", '"case"', "{}", '{"schema": "liverview.findings"}', ""])
def test_documents_that_are_not_case_files(tmp_path, text):
    path = tmp_path / "case.json"
    path.write_text(text)
    assert "case file" in refused(path)


def test_schema_version_missing_or_newer(tmp_path):
    path = write_json(tmp_path, {"schema": "liverview.case"})
    assert refused(path) == "schema_version: expected an integer, got null"
    path = write_json(tmp_path, {"schema": "liverview.case", "schema_version": 2})
    assert refused(path) == "schema_version 2 is newer than this liverview reads (1)"


def test_a_folder_or_a_missing_file(tmp_path):
    (tmp_path / "dir.json").mkdir()
    assert "not a plain file" in refused(tmp_path / "dir.json")
    assert refused(tmp_path / "none.json") == "no such case file"


# ---- Case.from_dict on its own --------------------------------------------------------------
@pytest.mark.parametrize(
    "data, field",
    [
        ({"picks": "-40"}, "picks: expected an object"),
        ({"picks": {"A": "-40"}}, "picks.A: expected an array"),
        ({"picks": {"A": [None]}}, "picks.A[0]: expected a number, got null"),
        ({"picks": {"Z": [1.0]}}, "picks: unknown phase 'Z'"),
        ({"boxes": {"a": 1}}, "boxes: expected an array, got an object"),
        ({"boxes": ["x"]}, "boxes[0]: expected an object, got a string"),
        ({"boxes": [{"phase": "A"}]}, "boxes[0].position: missing"),
        ({"boxes": [{"phase": "A", "position": 0, "x0": float("nan"), "y0": 0, "x1": 1, "y1": 1}]},
         "boxes[0].x0: nan is not a finite number"),
        ({"boxes": [{"phase": "A", "position": 0, "x0": 0, "y0": 0, "x1": 1, "y1": 1, "score": "high"}]},
         "boxes[0].score: expected a number, got a string"),
        ({"boxes": [{"phase": "A", "position": 0, "x0": 0, "y0": 0, "x1": 1, "y1": 1, "label": {}}]},
         "boxes[0].label: expected a string, got an object"),
        ({"boxes": [{"phase": "A", "position": 0, "x0": 0, "y0": 0, "x1": 1, "y1": 1, "patient": [1, 2]}]},
         "boxes[0].patient: expected null or two"),
        ({"boxes": [{"phase": "Q", "position": 0, "x0": 0, "y0": 0, "x1": 1, "y1": 1}]}, "boxes[0].phase: unknown phase 'Q'"),
        ({"findings": "HB"}, "findings: expected an object or null, got a string"),
        ({"reads": [3]}, "reads[0]: expected an object"),
        ("case", "case: expected an object"),
    ],
)
def test_from_dict_names_the_field(data, field):
    with pytest.raises(ValueError) as info:
        Case.from_dict(data)
    assert str(info.value).startswith(field), str(info.value)


def test_boxes_are_finite_and_inside_the_image_edges():
    with pytest.raises(ValueError, match="x1: inf is not a finite number"):
        Box("A", 0.0, 0, 0, float("inf"), 1)
    assert Box("A", 0.0, -4, -2, 5, 6).rect == (0.0, 0.0, 5.0, 6.0), "a LabelMe box past the border is clamped"
    case = Case()
    case.replace_boxes("ai", [Box("A", 0.0, 0, 0, 1, 1, origin="ai") for _ in range(MAX_BOXES)])
    with pytest.raises(ValueError, match=f"at most {MAX_BOXES} boxes"):
        case.add_box(Box("A", 0.0, 0, 0, 1, 1))


# ---- another study ----------------------------------------------------------------------------
def other_exam(study, **changes) -> Study:
    other = Study(volumes=study.volumes, sources=copy.deepcopy(study.sources), study_uid=study.study_uid,
                  patient_id=study.patient_id, path=study.path)
    for key, value in changes.items():
        setattr(other, key, value)
    return other


def test_a_case_file_of_another_study_is_refused(tmp_path, exam):
    # same slice range (the very same volumes), another patient's study
    path, _ = saved(tmp_path, full_case(other_exam(exam, study_uid="1.2.4", patient_id="B")))
    msg = refused(path, exam, CaseOfAnotherStudy)
    assert msg == "study.study_uid: case file is for study 1.2.4 (patient B), the open exam is 1.2.3 (patient A)"


def test_exports_without_uids_are_told_apart_by_patient_and_path(tmp_path, exam):
    mine = other_exam(exam, study_uid="", path="/exams/a")
    for n, change in enumerate(({"patient_id": "B"}, {"path": "/exams/b"})):
        path, _ = saved(tmp_path, full_case(other_exam(mine, **change)), f"c{n}.json")
        msg = refused(path, mine, CaseOfAnotherStudy)
        assert msg.startswith(f"study.{next(iter(change))}: case file is for study without a StudyInstanceUID")
        assert "the open exam is without a StudyInstanceUID (patient A, at /exams/a)" in msg
    path, _ = saved(tmp_path, full_case(mine), "same.json")
    assert load_case(path, other_exam(mine)).picks == full_case(mine).picks


def test_a_file_naming_series_the_exam_does_not_have_is_refused(tmp_path, exam):
    elsewhere = other_exam(exam)
    elsewhere.sources["V"] = PhaseSource(series_uid="9.9.9")
    path, _ = saved(tmp_path, full_case(elsewhere))
    msg = refused(path, exam, CaseOfAnotherStudy)
    assert msg.startswith("study.phases.V.series_uid: case file names series '9.9.9' for phase V, which the open exam 1.2.3")


def test_a_file_without_a_study_block_is_not_applied_to_an_exam(tmp_path, exam):
    _, data = saved(tmp_path, full_case(exam))
    data["study"] = None
    path = write_json(tmp_path, data, "nostudy.json")
    assert refused(path, exam, CaseOfAnotherStudy).startswith("study: the case file names no study")
    assert load_case(path).picks == full_case(exam).picks, "without an exam to compare with it loads"


def test_reassigned_phases_may_name_other_series_of_the_same_study(tmp_path, exam):
    """The viewer loads the case file with the phases it guessed, then reopens the exam with the
    assignment the file records (its phase override): the file must load in between."""
    reassigned = other_exam(exam)
    reassigned.sources["A"] = PhaseSource(series_uid="1.2.77", evidence=["set by user"], overridden=True)
    reassigned.sources["V"] = PhaseSource(series_uid="1.2.78")  # guessed around the reader's choice
    path, data = saved(tmp_path, full_case(reassigned))
    case = load_case(path, exam)
    assert case.picks == full_case(reassigned).picks
    assert {p: s["series_uid"] for p, s in data["study"]["phases"].items() if s["overridden"]} == {"A": "1.2.77"}
    # the same reassignment in a file of another study is still refused
    path, _ = saved(tmp_path, full_case(other_exam(reassigned, study_uid="1.2.4")), "other.json")
    refused(path, exam, CaseOfAnotherStudy)
    # and without a StudyInstanceUID to confirm it, a file sharing no series with the exam is refused
    nouid = other_exam(exam, study_uid="")
    strange = other_exam(nouid, sources={p: PhaseSource(series_uid=f"8.{p}", overridden=True) for p in "PAVD"})
    path, _ = saved(tmp_path, full_case(strange), "strange.json")
    assert refused(path, nouid, CaseOfAnotherStudy).startswith("study.phases.P.series_uid")


# ---- stale findings -------------------------------------------------------------------------
def test_findings_stale_follows_the_analysis_inputs(exam):
    case = full_case(exam)
    assert case.findings_stale is False, "right after findings with the matching digest"
    assert case.to_dict()["findings_stale"] is False
    case.remove_pick("P", case.picks["P"][0])
    assert case.findings_stale is True and case.to_dict()["findings_stale"] is True
    case.undo()
    assert case.findings_stale is False
    box = case.add_box(Box("A", case.picks["A"][0], 1, 1, 4, 4))
    assert case.findings_stale is True, "a new user box"
    case.undo()
    case.update_box(case.boxes[0].id, x1=30)
    assert case.findings_stale is True, "a moved user box"
    case.undo()
    case.add_box(Box("V", case.picks["V"][0], 1, 1, 4, 4, origin="ai", accepted=False))
    assert case.findings_stale is False, "an AI proposal is the analysis' output, not its input"
    exam.sources["A"] = PhaseSource(series_uid="1.2.99", overridden=True)
    assert case.findings_stale is True, "another series for a phase"
    case.set_findings({"exam": {}, "computed_from": {"digest": inputs_digest(case)}})
    assert case.findings_stale is False
    assert box.id not in [b.id for b in case.boxes]


def test_findings_without_computed_from_count_as_stale(exam):
    case = Case(exam)
    assert case.findings_stale is False, "no findings"
    case.set_findings({"exam": {"label": "HB"}})
    assert case.findings_stale is True
    case.set_findings({"exam": {}, "computed_from": {"digest": None}})
    assert case.findings_stale is True


def test_a_saved_case_says_whether_its_findings_are_stale(tmp_path, exam):
    case = full_case(exam)
    case.remove_pick("P", case.picks["P"][0])
    _, data = saved(tmp_path, case)
    assert data["findings_stale"] is True
    assert load_case(tmp_path / "case.json", exam).findings_stale is True


# ---- saving only what loads -----------------------------------------------------------------
def test_save_refuses_what_load_would_refuse_and_keeps_the_old_file(tmp_path, exam):
    case = full_case(exam)
    path, _ = saved(tmp_path, case)
    before = path.read_text()
    case.picks["A"] = [float("nan")]
    with pytest.raises(CaseFileError, match=r"not saved: picks.A\[0\]: nan is not a finite number"):
        save_case(case, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["case.json"]


def test_a_nan_in_the_findings_does_not_keep_the_case_from_being_saved(tmp_path, exam):
    case = full_case(exam)
    case.findings["exam"]["p"] = float("nan")
    path, data = saved(tmp_path, case)
    assert data["findings"]["exam"]["p"] is None
    assert load_case(path, exam).picks == case.picks


# ---- set aside ------------------------------------------------------------------------------
def test_set_aside_keeps_the_file_under_a_new_name_and_never_overwrites(tmp_path, monkeypatch):
    path = tmp_path / "1.2.3.json"
    path.write_text("{bad")
    monkeypatch.setattr(time, "gmtime", lambda *a: time.struct_time((2026, 5, 9, 7, 35, 25, 5, 129, 0)))
    first = set_aside(path, "not JSON")
    assert first.name == "1.2.3.unreadable-20260509T073525Z.json"
    assert first.read_text() == "{bad" and not path.exists()
    path.write_text("{worse")
    second = set_aside(path, "not JSON either")
    assert second.name == "1.2.3.unreadable-20260509T073525Z-2.json"
    assert first.read_text() == "{bad" and second.read_text() == "{worse"
    with pytest.raises(OSError):
        set_aside(path, "gone")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, second.name])


def test_set_aside_name_has_the_utc_time(tmp_path):
    path = tmp_path / "case.json"
    path.write_text("x")
    assert re.fullmatch(r"case\.unreadable-\d{8}T\d{6}Z\.json", set_aside(path, "why").name)


# ---- leftovers of interrupted saves -----------------------------------------------------------
def old(path: Path, content: str = "partial") -> Path:
    path.write_text(content)
    past = time.time() - 60
    os.utime(path, (past, past))
    return path


def test_remove_interrupted_saves_removes_only_leftover_temp_files(tmp_path):
    leftover = old(tmp_path / ".case.json.abc123.tmp")
    other_leftover = old(tmp_path / ".1.2.3.json.k_9x2q1m.tmp")
    keep = [
        old(tmp_path / "case.json", "{}"),
        old(tmp_path / "case.json.abc123.tmp"),  # no leading dot
        old(tmp_path / ".case.json.abc123.tmp.bak"),
        old(tmp_path / ".case.json..tmp"),  # no random part
        old(tmp_path / ".case.json.ab-c.tmp"),  # not a mkstemp name
        old(tmp_path / "notes.tmp"),
        old(tmp_path / "case.unreadable-20260509T073525Z.json"),
    ]
    (tmp_path / ".dir.json.abc123.tmp").mkdir()
    target = old(tmp_path / "target.txt")
    (tmp_path / ".link.json.abc123.tmp").symlink_to(target)
    young = tmp_path / ".case.json.young1.tmp"
    young.write_text("being written")
    removed = remove_interrupted_saves(tmp_path)
    assert sorted(removed) == sorted([leftover, other_leftover])
    assert not leftover.exists() and not other_leftover.exists()
    assert all(p.exists() for p in keep) and young.exists() and target.exists()
    assert (tmp_path / ".dir.json.abc123.tmp").is_dir() and (tmp_path / ".link.json.abc123.tmp").is_symlink()
    assert remove_interrupted_saves(tmp_path / "missing") == []


@pytest.mark.skipif(atomic.fcntl is None, reason="flock: POSIX only")
def test_a_temp_file_another_process_is_writing_is_left_alone(tmp_path):
    tmp = old(tmp_path / ".case.json.w0rk1ng.tmp")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time\n"
         "fh = open(sys.argv[1], 'ab'); fcntl.flock(fh, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
         str(tmp)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "locked"
        assert remove_interrupted_saves(tmp_path, grace_s=0) == [] and tmp.exists()
    finally:
        writer.kill()
        writer.wait()
    assert remove_interrupted_saves(tmp_path, grace_s=0) == [tmp], "a killed writer's lock goes with it"


def test_save_case_leaves_nothing_behind_and_its_temp_file_is_locked_while_written(tmp_path, exam, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        # what a second process cleaning the folder during the write would do
        seen.append(remove_interrupted_saves(tmp_path, grace_s=0))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    path, _ = saved(tmp_path, full_case(exam))
    if atomic.fcntl is not None:
        assert seen == [[]], "the temporary file is locked until it has replaced the case file"
    assert [p.name for p in tmp_path.iterdir()] == ["case.json"]
