"""Phase identification: vendor descriptions, contrast tags, bolus timing, acquisition order, overrides."""

from __future__ import annotations

import pytest

from liverview.io import ExamError, load_exam, scan
from liverview.io.phase_id import keyword_phases


@pytest.mark.parametrize(
    "description, phase",
    [
        ("Pre contrast 5mm", "P"),
        ("PLAIN ABDOMEN", "P"),
        ("Non-Contrast 1.25mm", "P"),
        ("ABD NC 5.0 B30f", "P"),
        ("Nativ 5.0 B30f", "P"),
        ("Unenhanced liver", "P"),
        ("ABD W/O", "P"),
        ("Abdomen C-", "P"),
        ("平扫 5mm", "P"),
        ("Arterial 1.25mm", "A"),
        ("ART 5.0 B30f", "A"),
        ("Late arterial phase", "A"),
        ("HAP 2.5mm", "A"),
        ("AP liver", "A"),
        ("动脉期", "A"),
        ("Portal venous 5mm", "V"),
        ("PV 5.0 B30f", "V"),
        ("PVP", "V"),
        ("Venous phase", "V"),
        ("门脉期 1.25", "V"),
        ("Delayed 5mm", "D"),
        ("Equilibrium", "D"),
        ("Late 5.0", "D"),
        ("DP 3min", "D"),
        ("3 min delay", "D"),
        ("延迟期", "D"),
    ],
)
def test_vendor_descriptions_name_one_phase(description, phase):
    assert set(keyword_phases(description)) == {phase}


@pytest.mark.parametrize("description", ["Abdomen 5mm B30f", "Body 1.25 Std", "Topogram 0.6 T20s", ""])
def test_descriptions_without_phase_words_name_none(description):
    assert keyword_phases(description) == {}


def test_descriptions_identify_phases_with_evidence(tmp_path, exam_writer):
    _, uids = exam_writer(
        tmp_path,
        descriptions=("ABD NC 5.0", "ART 5.0 B30f", "PV 5.0 B30f", "Delayed 3min"),
        contrast=(None, None, None, None),
        times=(None, None, None, None),
    )
    st = scan(tmp_path).studies[0]
    assert st.phases == {
        "P": uids["ABD NC 5.0"], "A": uids["ART 5.0 B30f"], "V": uids["PV 5.0 B30f"], "D": uids["Delayed 3min"],
    }
    arterial = st.series_by_uid(uids["ART 5.0 B30f"])
    assert arterial.guess.phase == "A"
    assert any("'ART 5.0 B30f'" in e and "arterial" in e for e in arterial.guess.evidence)
    assert arterial.guess.confidence >= 0.7


def test_contrast_tags_and_time_order_alone_identify_the_phases(tmp_path, exam_writer):
    # no telling descriptions; shuffled series numbers; only the tags and times say it
    _, uids = exam_writer(
        tmp_path,
        descriptions=("Abdomen 5mm #3", "Abdomen 5mm #1", "Abdomen 5mm #4", "Abdomen 5mm #2"),
        contrast=("IOHEXOL", None, "IOHEXOL", "IOHEXOL"),
        times=("101200", "100000", "101500", "101100"),
    )
    st = scan(tmp_path).studies[0]
    assert st.phases == {
        "P": uids["Abdomen 5mm #1"], "A": uids["Abdomen 5mm #2"], "V": uids["Abdomen 5mm #3"], "D": uids["Abdomen 5mm #4"],
    }
    pre = st.series_by_uid(uids["Abdomen 5mm #1"])
    assert any("no contrast bolus tags" in e for e in pre.guess.evidence)
    venous = st.series_by_uid(uids["Abdomen 5mm #3"])
    assert any("acquired 3rd of 4" in e for e in venous.guess.evidence)
    assert venous.guess.confidence < 0.7  # weaker than a description


def test_time_after_bolus_start_identifies_phases(tmp_path, series_writer):
    from pydicom.uid import generate_uid

    study = generate_uid()
    a, _ = series_writer(tmp_path / "a", study_uid=study, description="Liver", number=5,
                         contrast="IOPAMIDOL", bolus_start="100000", acquisition_time="100025")
    v, _ = series_writer(tmp_path / "v", study_uid=study, description="Liver", number=6,
                         contrast="IOPAMIDOL", bolus_start="100000", acquisition_time="100110")
    d, _ = series_writer(tmp_path / "d", study_uid=study, description="Liver", number=7,
                         contrast="IOPAMIDOL", bolus_start="100000", acquisition_time="100300")
    st = scan(tmp_path).studies[0]
    assert st.phases == {"A": a, "V": v, "D": d}
    ev = st.series_by_uid(v).guess.evidence
    assert any("70 s after the contrast bolus start" in e for e in ev)


def test_description_against_time_order_is_reported(tmp_path, exam_writer):
    # the "arterial" series was acquired after the "venous" one: flagged, confidence lowered
    _, uids = exam_writer(tmp_path, times=("100000", "100500", "100200", "100800"))
    st = scan(tmp_path).studies[0]
    art = st.series_by_uid(uids["Arterial"])
    assert art.guess.phase == "A"
    assert any("out of phase order" in e for e in art.guess.evidence)
    assert art.guess.confidence < 0.9


def test_more_than_four_candidates_keep_the_best_and_list_the_rest(tmp_path, exam_writer, series_writer):
    study, uids = exam_writer(tmp_path, n=8)
    mip, _ = series_writer(tmp_path / "mip", study_uid=study, description="Arterial MIP coronal", n=8,
                           number=9, acquisition_time="100135", contrast="IOHEXOL",
                           image_type=["DERIVED", "SECONDARY", "MIP"])
    scout, _ = series_writer(tmp_path / "scout", study_uid=study, description="Topogram", n=1,
                             number=10, acquisition_time="095900", image_type=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    load = load_exam(tmp_path)
    assert load.record.phases["A"] == uids["Arterial"]
    assert mip in {s.uid for s in load.candidates}
    mip_rec = load.record.series_by_uid(mip)
    assert mip_rec.guess.phase is None and mip_rec.guess.evidence[0].startswith("candidate, not used")
    scout_rec = load.record.series_by_uid(scout)
    assert not scout_rec.is_candidate and scout_rec.not_offered


def test_override_assigns_phases_and_is_recorded(tmp_path, exam_writer):
    _, uids = exam_writer(tmp_path)
    swap = {"A": uids["Portal venous"], "V": uids["Arterial"]}
    load = load_exam(tmp_path, phases=swap)
    assert load.study.sources["A"].series_uid == uids["Portal venous"]
    assert load.study.sources["A"].overridden
    assert load.study.sources["V"].series_uid == uids["Arterial"]
    assert load.study.sources["P"].series_uid == uids["Pre contrast"]
    assert not load.study.sources["P"].overridden
    assert load.study.volumes["A"].series_uid == uids["Portal venous"]


def test_override_naming_an_unknown_series_is_one_line_error(tmp_path, exam_writer):
    exam_writer(tmp_path)
    with pytest.raises(ExamError) as err:
        load_exam(tmp_path, phases={"A": "1.2.3.4"})
    assert "1.2.3.4" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ExamError, match="unknown phase"):
        load_exam(tmp_path, phases={"X": "1.2.3.4"})


def test_missing_phase_is_reported(tmp_path, exam_writer):
    exam_writer(tmp_path, descriptions=("Pre contrast", "Arterial", "Portal venous"),
                contrast=(None, "X", "X"), times=("100000", "100030", "100100"))
    load = load_exam(tmp_path)
    assert load.study.phases == ["P", "A", "V"]
    assert any(p.startswith("phase D") and "no series" in p for p in load.problems)
