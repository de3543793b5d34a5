"""`liverview analyze` on tiny DICOM exams with a random bundle: outputs, picks files, exit codes."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from liverview.cli import main
from liverview import analyze_command as cmd
from liverview.study.case import Box, Case
from liverview.study.persist import save_case


def test_analyze_writes_json_and_overlays(four_phase_exam, random_bundle, tmp_path, capsys):
    out_json, png = tmp_path / "findings.json", tmp_path / "png"
    rc = main(["analyze", str(four_phase_exam), "--bundle", str(random_bundle), "--json", str(out_json), "--png", str(png)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "final class:" in printed and "picks: auto" in printed
    d = json.loads(out_json.read_text())
    assert d["bundle"]["manifest_sha256"] == hashlib.sha256((random_bundle / "manifest.json").read_bytes()).hexdigest()
    assert sum(d["exam"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    for c in d["composites"]:
        assert set(c["detections"][0]["phases"]) == {"P", "A", "V", "D"}
    files = sorted(p.name for p in png.iterdir())
    assert len(files) == 3 * 4 * 2
    img = Image.open(png / "composite1_V_stage1.png")
    assert img.mode == "RGB" and min(img.size) >= 64
    # the exam table's sum column shows every composite summing to one
    rows = [line for line in printed.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"], ["exam"])]
    assert len(rows) == 4 and all(line.split()[-1] == "1.000" for line in rows)


def test_picks_from_case_file_keep_user_boxes(four_phase_exam, random_bundle, tmp_path, capsys):
    from liverview.io import load_exam

    study = load_exam(four_phase_exam).study
    case = Case(study)
    for p in "PAVD":
        vol = study.volumes[p]
        positions = [vol.position_of(k) for k in (4, 6, 8)]
        case.set_picks(p, positions)
        for z in positions:
            case.add_box(Box(p, z, 34, 20, 54, 40, origin="user"))
    save_case(case, tmp_path / "case.json")
    out = tmp_path / "f.json"
    rc = main(["analyze", str(four_phase_exam), "--bundle", str(random_bundle), "--picks", str(tmp_path / "case.json"), "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    d = json.loads(out.read_text())
    assert [c["slice_index"]["V"] for c in d["composites"]] == [4, 6, 8]
    assert {c["roi"]["source"] for c in d["composites"]} == {"user"}


def test_picks_from_truth_json(four_phase_exam, random_bundle, tmp_path, capsys):
    # the phantom's truth.json layout: phases.<phase>.picks in mm
    truth = {"schema": "liverview.phantom.truth", "phases": {p: {"picks": [5.0, 12.5, 20.0]} for p in "PAVD"}}
    (tmp_path / "truth.json").write_text(json.dumps(truth))
    out = tmp_path / "f.json"
    rc = main(["analyze", str(four_phase_exam), "--bundle", str(random_bundle), "--picks", str(tmp_path / "truth.json"), "--json", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert [c["slice_index"]["A"] for c in json.loads(out.read_text())["composites"]] == [2, 5, 8]


def test_bad_picks_file_is_one_line(four_phase_exam, random_bundle, tmp_path, capsys):
    (tmp_path / "x.json").write_text("[1, 2]")
    rc = main(["analyze", str(four_phase_exam), "--bundle", str(random_bundle), "--picks", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert rc == cmd.EXIT_INPUT and "x.json" in err and len(err.splitlines()) == 1


def test_missing_phase_exit_code_and_allow_missing(write_exam, random_bundle, tmp_path, capsys):
    exam = write_exam(tmp_path / "three", phases=("P", "A", "V"))
    rc = main(["analyze", str(exam), "--bundle", str(random_bundle)])
    err = capsys.readouterr().err
    assert rc == cmd.EXIT_MISSING_PHASES and "D (delayed)" in err and "--allow-missing" in err
    out = tmp_path / "f.json"
    rc = main(["analyze", str(exam), "--bundle", str(random_bundle), "--allow-missing", "--json", str(out)])
    assert rc == 0
    d = json.loads(out.read_text())
    assert d["phases_used"] == ["P", "A", "V"] and d["phases_missing"] == ["D"]


def test_unmatched_phases_exit_code(write_exam, random_bundle, tmp_path, capsys):
    exam = write_exam(tmp_path / "shifted", z_shift={"D": 400.0})
    rc = main(["analyze", str(exam), "--bundle", str(random_bundle)])
    err = capsys.readouterr().err
    assert rc == cmd.EXIT_UNMATCHED and "phase D" in err and "overlap" in err


def test_tampered_bundle_exit_code(four_phase_exam, random_bundle, tmp_path, capsys):
    bad = shutil.copytree(random_bundle, tmp_path / "bad")
    path = bad / "detector.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    rc = main(["analyze", str(four_phase_exam), "--bundle", str(bad)])
    err = capsys.readouterr().err
    assert rc == cmd.EXIT_BUNDLE and hashlib.sha256(data).hexdigest() in err and "detector.safetensors" in err


def test_windowed_export_without_window_exit_code(monkeypatch, make_case, random_bundle, capsys):
    study = make_case().study
    for v in study.volumes.values():
        v.pixels = np.clip((v.pixels + 160) / 400 * 255, 0, 255).astype(np.float32)  # exported at W400/L40: fat stays body
        v.intensity = "windowed"

    class Load:
        problems: list = []
        candidates: list = []
        case_seed = None

    Load.study = study
    import liverview.io.loader

    monkeypatch.setattr(liverview.io.loader, "load_exam", lambda path, **kwargs: Load)
    rc = main(["analyze", "export-folder", "--bundle", str(random_bundle)])
    err = capsys.readouterr().err
    assert rc == cmd.EXIT_INTENSITY and "bundle wants HU" in err and "--assume-windows" in err
    rc = main(["analyze", "export-folder", "--bundle", str(random_bundle), "--assume-windows"])
    captured = capsys.readouterr()
    assert rc == 0 and "converting: phase P" in captured.err


def test_unreadable_exam_is_one_line(tmp_path, random_bundle, capsys):
    rc = main(["analyze", str(tmp_path / "nothing-here"), "--bundle", str(random_bundle)])
    err = capsys.readouterr().err.strip()
    assert rc == cmd.EXIT_INPUT and len(err.splitlines()) == 1 and "nothing-here" in err
