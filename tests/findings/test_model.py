"""The findings dataclasses: dict round trip, computed_from, schema versions, and the one class vocabulary."""

from __future__ import annotations

import copy
import json

import pytest

from liverview.findings import SCHEMA_VERSION, Findings, FindingsError
from liverview.findings.vocabulary import CLASS_NAMES, CLASSES, GROUP_OF, GROUPS, MEMBER_CLASS, MEMBERS, MODEL_CLASSES
from liverview.study.inputs import analysis_inputs, inputs_digest


def test_round_trip_gives_the_same_document(analysed):
    _, f = analysed
    d = f.to_dict()
    assert json.loads(json.dumps(d)) == d  # JSON-able as it is
    back = Findings.from_dict(d)
    assert back.to_dict() == d
    assert Findings.from_dict(json.loads(json.dumps(d))).to_dict() == d


def test_read_back_explanations_keep_the_cam_but_not_the_in_memory_maps(analysed):
    _, f = analysed
    back = Findings.from_dict(f.to_dict())
    for mine, theirs in zip(f.composites, back.composites):
        assert mine.final_class == theirs.final_class
        for stage, e in mine.explanations.items():
            assert e.maps, "the engine keeps the per-phase maps in memory"
            r = theirs.explanations[stage]
            assert r.maps == {}
            assert r.square == e.square and r.stage == stage
            assert abs(r.roi_cam - e.roi_cam).max() <= 0.5 / 255 + 1e-6
    assert back.exam.consistent == f.exam.consistent


def test_computed_from_is_what_the_case_was_analysed_from(analysed):
    case, f = analysed
    d = f.to_dict()
    assert d["schema_version"] == SCHEMA_VERSION == 2
    assert d["computed_from"] == {"digest": inputs_digest(case), **analysis_inputs(case)}
    assert len(d["computed_from"]["boxes"]) == 12  # the user box on each of 3 picks x 4 phases


def test_version_1_documents_are_read_without_computed_from(analysed):
    _, f = analysed
    old = copy.deepcopy(f.to_dict())
    old["schema_version"] = 1
    del old["computed_from"]
    back = Findings.from_dict(old)
    assert back.computed_from is None
    assert back.to_dict()["computed_from"] is None
    assert back.to_dict()["exam"] == old["exam"]


def test_unknown_documents_are_refused_naming_the_field(analysed):
    _, f = analysed
    d = f.to_dict()
    with pytest.raises(FindingsError, match="schema_version: 3"):
        Findings.from_dict({**d, "schema_version": 3})
    with pytest.raises(FindingsError, match="schema: expected 'liverview.findings'"):
        Findings.from_dict({**d, "schema": "liverview.case"})
    broken = copy.deepcopy(d)
    del broken["exam"]
    with pytest.raises(FindingsError, match="exam: missing"):
        Findings.from_dict(broken)


def test_the_vocabulary_is_defined_once_and_used_everywhere():
    import liverview.engine.bundle as bundle
    import liverview.engine.findings as engine_findings
    import liverview.phantom.priors as priors
    import liverview.qt.findings_panel as panel
    import training.tasks as tasks

    assert CLASSES == ("HH", "OBHT", "HB", "OMHT") and GROUPS == ("benign", "malignant")
    assert set(CLASS_NAMES) == set(CLASSES) == set(MEMBERS) == set(GROUP_OF)
    assert all(MEMBER_CLASS[m] == c for c, ms in MEMBERS.items() for m in ms)
    assert MODEL_CLASSES["stage1"] == GROUPS
    assert all(GROUP_OF[c] == g for g in GROUPS for c in MODEL_CLASSES[g])
    assert bundle.CLASSES == {k: list(v) for k, v in MODEL_CLASSES.items()}
    assert priors.CLASSES is CLASSES and priors.GROUP is GROUP_OF and priors.MEMBERS is MEMBERS
    assert priors.MEMBER_CLASS is MEMBER_CLASS
    assert tasks.CLASSES is CLASSES and tasks.GROUP is GROUP_OF
    assert tasks.TASKS["stage1"].classes == GROUPS
    assert all(tasks.TASKS["stage1"].label(c) == GROUPS.index(GROUP_OF[c]) for c in CLASSES)
    assert tasks.TASKS["benign"].classes == MODEL_CLASSES["benign"]
    assert tasks.TASKS["malignant"].classes == MODEL_CLASSES["malignant"]
    assert panel.CLASS_NAMES is CLASS_NAMES and panel.GROUP_OF is GROUP_OF
    assert engine_findings.Findings is Findings
