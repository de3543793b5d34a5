"""Case editing: picks, boxes with patient coordinates, undo/redo, events, JSON round trip."""

import json

import numpy as np
import pytest

from liverview.study.case import Box, Case
from liverview.study.persist import CaseFileError, load_case, save_case


def test_volume_positions_follow_affine(study):
    vol = study.volumes["A"]
    assert vol.spacing == pytest.approx((2.5, 0.7, 0.7))
    assert vol.positions[0] == pytest.approx(-52.5)
    assert np.all(np.diff(vol.positions) > 0)
    assert vol.index_at(vol.positions[4] + 0.4) == 4
    np.testing.assert_allclose(vol.to_pixel(vol.to_patient(3.0, 5.0, 2.0)), [3.0, 5.0, 2.0])


def test_picks_are_sorted_capped_and_unique(case):
    for pos in (-40.0, -45.0, -42.5):
        assert case.add_pick("V", pos)
    assert case.picks["V"] == [-45.0, -42.5, -40.0]
    assert not case.add_pick("V", -37.5), "a fourth pick must be refused"
    assert not case.add_pick("A", -45.0) or case.picks["A"] == [-45.0]
    assert not case.add_pick("A", -45.0), "the same slice cannot be picked twice"
    assert "phase P: 0 of 3 slices picked" in case.pick_warnings()
    with pytest.raises(ValueError, match="unknown phase 'X'"):
        case.add_pick("X", 0.0)


def test_box_gets_patient_coordinates(case, study):
    box = case.add_box(Box("A", study.volumes["A"].positions[2], 10, 12, 4, 20))
    assert box.rect == (4.0, 12.0, 10.0, 20.0), "corners are normalised"
    # box coordinates are pixel edges: edge (4, 12) lies half a pixel before the centre of pixel (4, 12),
    # whose position the affine gives: x = -10 + 3.5*0.7, y = -20 + 11.5*0.7, z = slice position
    assert box.patient[0] == pytest.approx([-10 + 3.5 * 0.7, -20 + 11.5 * 0.7, study.volumes["A"].positions[2]])
    assert box.patient[1] == pytest.approx([-10 + 9.5 * 0.7, -20 + 19.5 * 0.7, study.volumes["A"].positions[2]])


def test_a_one_pixel_box_spans_exactly_that_pixel_in_patient_space(case, study):
    vol = study.volumes["A"]
    box = case.add_box(Box("A", vol.positions[0], 0, 0, 1, 1))
    centre = vol.to_patient(0, 0, 0)
    np.testing.assert_allclose(np.mean(box.patient, axis=0), centre, atol=1e-3)
    np.testing.assert_allclose(np.subtract(box.patient[1], box.patient[0])[:2], [0.7, 0.7], atol=1e-3)


def test_positions_are_cached_read_only_and_follow_a_new_affine(study):
    vol = study.volumes["V"]
    first = vol.positions
    assert vol.positions is first, "asking twice must not recompute"
    with pytest.raises(ValueError):
        first[0] = 0.0
    shifted = vol.affine.copy()
    shifted[2, 3] += 10.0
    vol.affine = shifted
    assert vol.positions[0] == pytest.approx(first[0] + 10.0)


def test_set_all_picks_is_one_undo_step_with_an_event_per_phase(case, study):
    seen = []
    case.events.connect(lambda kind, payload: seen.append((kind, payload.get("phase"))))
    picks = {p: [float(study.volumes[p].positions[k]) for k in (2, 3, 4)] for p in "PAVD"}
    case.set_all_picks(picks)
    assert case.picks == picks
    assert sorted(ph for kind, ph in seen if kind == "picks") == sorted("PAVD")
    assert case.undo()
    assert all(case.picks[p] == [] for p in "PAVD"), "one undo takes back the whole auto-pick"
    assert not case.can_undo
    with pytest.raises(ValueError, match="at most 3 picks"):
        case.set_all_picks({"P": [1.0, 2.0, 3.0, 4.0], "A": [1.0]})
    assert case.picks["A"] == [], "a refused batch changes nothing"


def test_undo_redo_every_edit(case):
    case.add_pick("P", -40.0)
    b = case.add_box(Box("P", -40.0, 1, 1, 5, 5))
    case.update_box(b.id, x1=9)
    assert case.box(b.id).x1 == 9
    assert case.undo() and case.box(b.id).x1 == 5
    assert case.undo() and case.boxes == []
    assert case.undo() and case.picks["P"] == []
    assert not case.undo()
    assert case.redo() and case.picks["P"] == [-40.0]
    assert case.redo() and case.redo() and case.box(b.id).x1 == 9
    assert not case.redo()
    case.undo()
    case.remove_pick("P", -40.0)
    assert not case.can_redo, "a new edit clears the redo stack"


def test_events_reach_listeners_and_a_bad_listener_is_contained(case):
    seen = []
    case.events.connect(lambda kind, payload: seen.append((kind, payload.get("phase"))))
    case.events.connect(lambda kind, payload: 1 / 0)
    case.add_pick("D", -40.0)
    case.add_box(Box("D", -40.0, 0, 0, 3, 3))
    assert seen == [("picks", "D"), ("boxes", "D")]


def test_reader_box_prefers_user_then_accepted_ai(case):
    case.add_box(Box("V", -40.0, 0, 0, 3, 3, origin="ai", score=0.9, accepted=False))
    assert case.reader_box("V", -40.0) is None
    ai = case.add_box(Box("V", -40.0, 0, 0, 4, 4, origin="ai", score=0.8, accepted=True))
    assert case.reader_box("V", -40.0) is ai
    user = case.add_box(Box("V", -40.0, 1, 1, 2, 2, origin="user"))
    assert case.reader_box("V", -40.0) is user


def test_save_load_round_trip_is_atomic(tmp_path, case, study):
    case.add_pick("A", -40.0)
    case.add_box(Box("A", -40.0, 2, 3, 8, 9, author="dr x"))
    path = tmp_path / "case.json"
    save_case(case, path)
    assert [p.name for p in tmp_path.iterdir()] == ["case.json"], "no temporary file is left behind"
    again = load_case(path, study)
    assert again.picks == case.picks
    assert [b.rect for b in again.boxes] == [(2.0, 3.0, 8.0, 9.0)]
    assert again.boxes[0].author == "dr x"
    assert again.boxes[0].patient == case.boxes[0].patient


def test_load_case_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CaseFileError, match="bad.json: not a readable case file"):
        load_case(bad)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"schema": "liverview.case", "schema_version": 99}))
    with pytest.raises(CaseFileError, match="newer.json: schema_version 99"):
        load_case(newer)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"schema": "liverview.case", "schema_version": 1, "boxes": [{"phase": "Q"}]}))
    with pytest.raises(CaseFileError, match=r"wrong.json: boxes\[0\]: missing field position"):
        load_case(wrong)


def test_failed_save_keeps_the_previous_file(tmp_path, case, monkeypatch):
    path = tmp_path / "case.json"
    save_case(case, path)
    before = path.read_text()
    case.add_pick("A", -40.0)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        save_case(case, path)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["case.json"]
