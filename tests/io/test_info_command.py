"""`liverview info`: what the loader found, and the exit status (0 four phases, 3 fewer, 2 unreadable)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from liverview.cli import main
from liverview.io.labelme import write_labelme


def test_info_prints_phases_with_evidence_and_problems(tmp_path, exam_writer, capsys):
    exam_writer(tmp_path, descriptions=("ABD NC", "ART 5.0", "PV 5.0", "Delayed 3min"))
    (tmp_path / "readme.txt").write_text("x")
    rc = main(["info", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "1 study, 4 series" in out
    assert "phase A (arterial): series #2 'ART 5.0' (…" in out
    assert "[CT] 6 slices (6 files), 16x12, spacing 2.5 x 0.7 x 0.8 mm" in out
    assert "evidence: description 'ART 5.0' names arterial ('art')" in out
    assert "readme.txt: not a DICOM file" in out
    assert "problems: 0 (none)" in out


def test_info_exit_3_when_a_phase_is_missing_and_lists_problems(tmp_path, exam_writer, capsys):
    exam_writer(tmp_path, descriptions=("Pre", "Arterial", "Portal venous"), contrast=(None, "X", "X"),
                times=("100000", "100030", "100100"), z=[0, 2.5, 5, 10])
    rc = main(["info", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 3
    assert "phase D (delayed): not found" in out
    assert "non-uniform slice spacing" in out


def test_info_exit_2_on_unreadable_input(tmp_path, capsys):
    rc = main(["info", str(tmp_path / "nothing-here")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip().count("\n") == 0 and "nothing-here" in err
    (tmp_path / "a.txt").write_text("hello")
    rc = main(["info", str(tmp_path)])
    assert rc == 2
    assert "no DICOM images" in capsys.readouterr().err


def test_info_on_an_export_folder(tmp_path, capsys):
    for phase in ("P", "A", "V", "D"):
        d = tmp_path / phase
        d.mkdir()
        for k in range(3):
            Image.fromarray(np.zeros((8, 10), np.uint8)).save(d / f"{k}.png")
            write_labelme(d / f"{k}.json", f"{k}.png", (8, 10), [(1, 1, 4, 4)])
    rc = main(["info", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "PACS image export (windowed 8-bit images, not HU)" in out
    assert "phase V (portal venous): folder 'V', 3 images 10x8 (3 picks), window unknown, 3 LabelMe boxes" in out
    assert "identity: images sha256 " in out
