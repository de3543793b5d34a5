"""Cohorts: class mix, stable patients, slices-only exports (DICOM, PNG + LabelMe) and the CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pydicom
import pytest
from PIL import Image

from liverview.cli import main
from liverview.io.labelme import read_labelme
from liverview.phantom import DEFAULT_MIX, generate_cohort, generate_exam, parse_mix, render_exam
from liverview.phantom.priors import CLASSES, PAPER_COUNTS, assign_classes
from liverview.study.composite import to_unit
from liverview.study.phases import PHASES, WINDOWS


def test_default_mix_is_the_papers_cohort():
    # the paper's class counts (77, 14, 47, 4) add up to 142 of its 148 patients
    n = sum(PAPER_COUNTS.values())
    classes = assign_classes(n, DEFAULT_MIX, seed=0)
    assert {c: classes.count(c) for c in CLASSES} == PAPER_COUNTS
    classes = assign_classes(148, DEFAULT_MIX, seed=0)
    assert all(abs(classes.count(c) - PAPER_COUNTS[c] * 148 / n) < 1 for c in CLASSES)


def test_any_mix_gives_its_counts_and_patients_keep_their_class():
    mix = parse_mix("HH=0.25,OBHT=0.25,HB=0.25,OMHT=0.25")
    for n in (4, 8, 20):
        classes = assign_classes(n, mix, seed=3)
        assert all(classes.count(c) == n // 4 for c in CLASSES)
    counts = parse_mix({"HB": 2, "OMHT": 1})
    classes = assign_classes(3, counts, seed=1)
    assert sorted(classes) == ["HB", "HB", "OMHT"]
    long = assign_classes(60, DEFAULT_MIX, seed=5)
    assert assign_classes(17, DEFAULT_MIX, seed=5) == long[:17]  # patient i does not depend on N
    for n in range(1, 61):  # every prefix holds each class within one patient of its share
        assert all(abs(long[:n].count(c) - DEFAULT_MIX[c] * n) < 1 for c in CLASSES)


@pytest.mark.parametrize("bad", ["HX=1", "HH", "HH=abc", "HH=-1", "HH=0,HB=0"])
def test_a_bad_mix_is_refused_with_the_entry_named(bad):
    with pytest.raises(ValueError) as err:
        parse_mix(bad)
    assert "mix" in str(err.value)


def test_cohort_writes_the_mix_cohort_csv_and_png_exports(tmp_path):
    truths = generate_cohort(tmp_path, 4, seed=2, mix="HH=0.25,OBHT=0.25,HB=0.25,OMHT=0.25", matrix=48,
                             slices_only="png")
    assert sorted(t["class"] for t in truths) == sorted(CLASSES)
    with open(tmp_path / "cohort.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["patient_id"] for r in rows] == [t["patient_id"] for t in truths]
    assert [(r["class"], r["member"], r["sex"]) for r in rows] == [(t["class"], t["member"], t["sex"]) for t in truths]
    t = truths[0]
    root = tmp_path / t["patient_id"]
    assert json.loads((root / "truth.json").read_text()) == t
    pngs = sorted(root.glob("export/*/*.png"))
    jsons = sorted(root.glob("export/[PAVD]/*.json"))
    assert len(pngs) == 12 and len(jsons) == 12
    export = json.loads((root / "export" / "export.json").read_text())
    assert export["windows"] == {p: list(WINDOWS[p]) for p in PHASES}
    assert export["pixel_spacing"] == t["pixel_spacing"]
    vols, _ = render_exam(2, 0, cls=t["class"], member=t["member"], matrix=48)
    for p in PHASES:
        tp = t["phases"][p]
        assert export["positions"][p] == tp["picks"] and tp["folder"] == f"export/{p}"
        for n, z in enumerate(tp["picks"], start=1):
            img = np.asarray(Image.open(root / "export" / p / f"{n}.png"))
            k = tp["positions"].index(z)
            expected = np.rint(to_unit(vols[p][k], p) * 255).astype(np.uint8)
            assert img.dtype == np.uint8 and np.array_equal(img, expected)  # the phase's window, 8 bit
            (label, *rect), = read_labelme(root / "export" / p / f"{n}.json")
            assert label == "tumor" and rect == tp["slice_boxes"][f"{z:.2f}"]


def test_slices_only_dicom_writes_the_twelve_picks(tmp_path):
    t = generate_exam(tmp_path, seed=9, patient_index=2, matrix=48, slices_only="dicom")
    assert t["mode"] == "slices-dicom"
    files = sorted((tmp_path / t["patient_id"]).rglob("*.dcm"))
    assert len(files) == 12
    for p in PHASES:
        tp = t["phases"][p]
        z = sorted(float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
                   for f in (tmp_path / t["patient_id"] / tp["folder"]).glob("*.dcm"))
        assert np.allclose(z, tp["picks"], atol=1e-3)


def test_same_patients_whatever_the_cohort_size_and_workers(tmp_path):
    small = generate_cohort(tmp_path / "a", 2, seed=4, matrix=48, n_slices=6, slices_only="png")
    big = generate_cohort(tmp_path / "b", 3, seed=4, matrix=48, n_slices=6, slices_only="png", workers=2)
    assert big[:2] == small
    assert len({t["patient_id"] for t in big}) == 3


def test_cli_writes_a_cohort_and_names_bad_input(tmp_path, capsys):
    out = tmp_path / "cohort"
    rc = main(["phantom", "--out", str(out), "--patients", "2", "--seed", "3", "--matrix", "48", "--slices", "8",
               "--mix", "HB=1", "--slice-thickness", "3"])
    printed = capsys.readouterr().out
    assert rc == 0
    lines = printed.splitlines()
    assert sum(line.startswith("PH3-") for line in lines) == 2 and "wrote 2 exams" in printed
    truth = json.loads((out / "PH3-0000" / "truth.json").read_text())
    assert truth["class"] == "HB" and truth["slice_thickness"] == 3.0
    assert all(len(truth["phases"][p]["positions"]) == 8 for p in PHASES)
    assert (out / "cohort.csv").exists()
    rc = main(["phantom", "--out", str(out), "--mix", "HH=1,XX=2"])
    err = capsys.readouterr().err
    assert rc == 2 and "--mix" in err and "XX" in err and "Traceback" not in err
