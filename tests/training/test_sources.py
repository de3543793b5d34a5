"""Cohorts from the phantom: in memory, through DICOM + truth.json, and through the PNG + LabelMe export."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from liverview.phantom import generate_exam, render_exam
from training.cohort import CohortError, load_cohort, save_cohort
from training.sources import class_plan, exam_from_truth, folder_cohort, phantom_cohort

TINY = {"matrix": 64, "n_slices": 8}


def _check_exam_boxes(cohort, i):
    assert cohort.present[i].all()
    b = cohort.boxes[i]
    assert not np.isnan(b).any()
    assert (b[..., 2] > b[..., 0]).all() and (b[..., 3] > b[..., 1]).all()
    assert b.min() >= 0 and b.max() <= cohort.matrix[0]


def test_in_memory_phantom_cohort_follows_the_mix_and_keeps_truth_boxes(tmp_path):
    c = phantom_cohort(4, seed=11, mix={"HH": 1, "OBHT": 1, "HB": 1, "OMHT": 1}, matrix=64,
                       render_args={"n_slices": 8})
    assert sorted(c.classes) == ["HB", "HH", "OBHT", "OMHT"]
    assert c.classes == class_plan(4, 11, {"HH": 1, "OBHT": 1, "HB": 1, "OMHT": 1})
    assert c.slices.shape == (4, 4, 3, 64, 64) and c.slices.dtype == np.uint8
    assert len(set(c.patient_ids)) == 4
    for i in range(4):
        _check_exam_boxes(c, i)
        # the liver and the lesion are inside the window: not a blank or saturated slice
        assert 20 < c.slices[i].mean() < 235
    back = load_cohort(save_cohort(c, tmp_path / "c.npz"))
    assert back.meta["seed"] == 11 and back.classes == c.classes


def test_dicom_exam_folder_gives_the_same_slices_as_the_in_memory_render(tmp_path):
    truth = generate_exam(tmp_path / "exams", seed=5, patient_index=0, **TINY)
    c = folder_cohort(tmp_path / "exams", matrix=64)
    assert c.patient_ids == [truth["patient_id"]] and c.classes == [truth["class"]]
    volumes, t = render_exam(5, 0, **TINY)
    ref = exam_from_truth(volumes, t)
    # DICOM stores integer HU: windowed 8-bit values agree within rounding
    assert np.abs(c.slices[0].astype(int) - ref.slices.astype(int)).max() <= 2
    np.testing.assert_allclose(c.boxes[0], ref.boxes)


def test_png_labelme_export_with_a_labels_table(tmp_path):
    truth = generate_exam(tmp_path / "exports", seed=6, patient_index=1, slices_only="png", **TINY)
    table = tmp_path / "labels.csv"
    with table.open("w", newline="") as fh:
        csv.writer(fh).writerows([["patient_id", "class"], [truth["patient_id"], truth["class"]]])
    c = folder_cohort(tmp_path / "exports", labels_csv=table, matrix=64)
    assert c.classes == [truth["class"]]
    _check_exam_boxes(c, 0)
    volumes, t = render_exam(6, 1, **TINY)
    ref = exam_from_truth(volumes, t)
    np.testing.assert_allclose(c.boxes[0], ref.boxes, atol=1.0)
    assert np.abs(c.slices[0].astype(int) - ref.slices.astype(int)).max() <= 2


def test_a_bad_labels_table_names_the_file_and_line(tmp_path):
    generate_exam(tmp_path / "exports", seed=6, patient_index=1, slices_only="png", **TINY)
    table = tmp_path / "labels.csv"
    table.write_text("patient_id,class\nPH6-0001,HCC\n")
    with pytest.raises(CohortError, match="labels.csv: line 2.*'HCC'"):
        folder_cohort(tmp_path / "exports", labels_csv=table, matrix=64)
