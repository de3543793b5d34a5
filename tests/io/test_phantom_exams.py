"""Acceptance: `liverview phantom --patients 4` then the loader finds 4 exams with 4 phases each, with evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from liverview.cli import main
from liverview.io import load_exam, scan


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    rc = main(["phantom", "--out", str(out), "--patients", "4", "--seed", "1", "--matrix", "48", "--slices", "14"])
    assert rc == 0
    return out


def test_loader_finds_four_exams_with_four_phases_and_evidence(cohort, capsys):
    capsys.readouterr()
    result = scan(cohort)
    assert len(result.studies) == 4
    truths = {json.loads(p.read_text())["patient_id"]: json.loads(p.read_text()) for p in cohort.glob("*/truth.json")}
    assert len(truths) == 4
    for st in result.studies:
        truth = truths[st.patient_id]
        assert sorted(st.phases) == ["A", "D", "P", "V"], st.label
        for phase, uid in st.phases.items():
            # the phase each series was given is the one the phantom wrote it as
            assert uid == truth["phases"][phase]["series_uid"], (st.patient_id, phase)
            guess = st.series_by_uid(uid).guess
            assert guess.phase == phase and guess.evidence and guess.confidence >= 0.7
            assert any("names" in e for e in guess.evidence)
    assert not [p for p in result.all_problems() if "series" in p]


def test_each_phantom_exam_loads_at_truth_positions(cohort):
    exam = sorted(p for p in cohort.iterdir() if p.is_dir())[0]
    truth = json.loads((exam / "truth.json").read_text())
    load = load_exam(exam)
    assert load.study.patient_id == truth["patient_id"]
    for phase, info in truth["phases"].items():
        vol = load.study.volumes[phase]
        assert vol.ready.all()
        np.testing.assert_allclose(vol.positions, sorted(info["positions"]), atol=1e-3)


def test_info_command_on_the_cohort_exits_0(cohort, capsys):
    assert main(["info", str(cohort)]) == 0
    out = capsys.readouterr().out
    assert out.count("phase D (delayed): series") == 4
