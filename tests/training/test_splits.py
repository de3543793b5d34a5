"""Patient-level splits and the leakage checks."""

from __future__ import annotations

import pytest

from training.splits import LeakageError, check_cohorts_disjoint, check_disjoint, load_splits, save_splits, stratified_split


def _paper_mix():
    ids, cls = [], []
    for c, n in (("HH", 77), ("OBHT", 14), ("HB", 47), ("OMHT", 4)):
        ids += [f"{c}-{i}" for i in range(n)]
        cls += [c] * n
    return ids, cls


def test_split_is_70_30_by_patient_and_keeps_rare_classes_on_both_sides():
    ids, cls = _paper_mix()
    s = stratified_split(ids, cls, 0.3, seed=7)
    assert len(s["train"]) + len(s["validation"]) == len(ids)
    assert abs(len(s["validation"]) / len(ids) - 0.3) < 0.03
    for c in ("HH", "OBHT", "HB", "OMHT"):
        assert any(p.startswith(c + "-") for p in s["train"])
        assert any(p.startswith(c + "-") for p in s["validation"])
    check_disjoint(s)


def test_split_depends_on_seed_not_on_input_order():
    ids, cls = _paper_mix()
    a = stratified_split(ids, cls, 0.3, seed=3)
    b = stratified_split(ids[::-1], cls[::-1], 0.3, seed=3)
    c = stratified_split(ids, cls, 0.3, seed=4)
    assert a == b
    assert a != c


def test_a_patient_in_two_splits_fails_loudly_naming_the_patient(tmp_path):
    with pytest.raises(LeakageError, match="'P7'.*'train'.*'validation'"):
        check_disjoint({"train": ["P1", "P7"], "validation": ["P7", "P9"]})
    with pytest.raises(LeakageError, match="P7"):
        save_splits(tmp_path / "s.json", {"train": ["P7"], "validation": ["P7"]})
    save_splits(tmp_path / "ok.json", {"train": ["P1"], "validation": ["P2"]}, seed=0)
    assert load_splits(tmp_path / "ok.json") == {"train": ["P1"], "validation": ["P2"]}


def test_same_images_under_another_id_in_a_test_cohort_is_caught(cohort_factory):
    train = cohort_factory(["HH", "HB", "OBHT"], seed=1, prefix="A")
    test = cohort_factory(["HH", "HB"], seed=2, prefix="B")
    check_cohorts_disjoint({"train": train, "test": test})
    test.slices[1] = train.slices[2]
    with pytest.raises(LeakageError, match="'B001'.*'A002'"):
        check_cohorts_disjoint({"train": train, "test": test})
    renamed = cohort_factory(["HH"], seed=9, prefix="A")
    with pytest.raises(LeakageError, match="A000"):
        check_cohorts_disjoint({"train": train, "test": renamed})
