"""PACS image exports (windowed PNG/JPEG + LabelMe), LabelMe read/write, YOLO labels."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from liverview.io import ExamError, LabelMeError, load_exam, load_export, read_labelme, write_labelme
from liverview.io.labelme import read_labelme_document
from liverview.io.yolo_labels import read_yolo_labels, write_yolo_labels, yolo_lines
from liverview.study.case import Case


def _export(root: Path, folders=("P", "arterial", "Venous", "delayed"), n=3, size=(20, 24), boxes=True,
            config: dict | None = None, ext=".png") -> Path:
    h, w = size
    for f_i, folder in enumerate(folders):
        d = root / folder
        d.mkdir(parents=True)
        # natural order: 2 < 10; a plain string sort would put "img10" first
        for k, name in enumerate(["img2", "img10", "img11"][:n]):
            arr = np.full((h, w), 40 * f_i + 10 * k, np.uint8)
            Image.fromarray(arr).save(d / f"{name}{ext}")
            if boxes:
                write_labelme(d / f"{name}.json", f"{name}{ext}", (h, w), [(2 + k, 3, 10 + k, 12)])
    if config is not None:
        (root / "export.json").write_text(json.dumps(config))
    return root


def test_export_folder_loads_windowed_volumes_with_picks_and_boxes(tmp_path):
    root = _export(tmp_path / "EX1", config={
        "patient_id": "P007",
        "windows": {"P": [40, 250], "A": [45, 290]},
        "pixel_spacing": [0.8, 0.7],
        "positions": {"V": [30.0, 35.0, 40.0]},
    })
    load = load_exam(root)
    study = load.study
    assert study.phases == ["P", "A", "V", "D"]
    assert study.intensity == "windowed"
    assert study.patient_id == "P007"
    vol_a = study.volumes["A"]
    assert vol_a.pixels.dtype == np.uint8 and vol_a.shape == (3, 20, 24)
    assert vol_a.window == (45.0, 290.0)
    assert study.volumes["V"].window is None
    # natural sort: img2, img10, img11 -> values 0, 10, 20 (+40 for A)
    assert [int(vol_a.pixels[k, 0, 0]) for k in range(3)] == [40, 50, 60]
    assert vol_a.meta["files"] == ["img2.png", "img10.png", "img11.png"]
    assert vol_a.spacing == pytest.approx((1.0, 0.8, 0.7))
    np.testing.assert_allclose(study.volumes["V"].positions, [30.0, 35.0, 40.0])
    seed = load.case_seed
    assert seed.picks["V"] == pytest.approx([30.0, 35.0, 40.0])
    assert len(seed.boxes) == 12
    b = next(b for b in seed.boxes if b.phase == "V" and abs(b.position - 35.0) < 1e-6)
    assert (b.x0, b.y0, b.x1, b.y1) == (3.0, 3.0, 11.0, 12.0)
    assert b.origin == "user" and b.author == "labelme" and b.label == "tumor"
    case = Case(study)
    seed.apply(case)
    assert case.picks["A"] == pytest.approx(list(vol_a.positions))
    assert len(case.boxes_on("A", vol_a.position_of(1), "user")) == 1


def test_export_inside_a_zip_with_a_top_folder(tmp_path):
    root = _export(tmp_path / "EX2", folders=("pre", "art", "PV", "DP"), ext=".jpg")
    archive = tmp_path / "ex2.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, "EX2/" + p.relative_to(root).as_posix())
    load = load_exam(archive)
    assert load.study.phases == ["P", "A", "V", "D"]
    assert load.study.volumes["D"].intensity == "windowed"
    assert any("no pixel_spacing" in p for p in load.problems)
    load.scan.close()


def test_export_problems_are_reported_not_raised(tmp_path):
    root = _export(tmp_path / "EX3", folders=("P", "A", "V"))
    (root / "A" / "img10.json").write_text("{not json")
    load = load_export(root)
    assert load.study.phases == ["P", "A", "V"]
    assert any("img10.json" in p and "invalid JSON" in p for p in load.problems)
    assert any(p.startswith("phase D") for p in load.problems)
    assert len([b for b in load.case_seed.boxes if b.phase == "A"]) == 2


@pytest.mark.parametrize(
    "config, field",
    [
        ({"windows": {"A": [45]}}, "windows.A"),
        ({"windows": {"X": [45, 290]}}, "windows.X"),
        ({"positions": {"P": [1, 2]}}, "positions.P"),
        ({"pixel_spacing": [0, 1]}, "pixel_spacing"),
        ({"pixel_spacing": "0.7"}, "pixel_spacing"),
    ],
)
def test_bad_export_json_names_the_field(tmp_path, config, field):
    root = _export(tmp_path / "EX4", config=config)
    with pytest.raises(ExamError) as err:
        load_export(root)
    msg = str(err.value)
    assert field in msg and "export.json" in msg and "\n" not in msg


def test_images_of_one_phase_must_share_a_size(tmp_path):
    root = _export(tmp_path / "EX5", boxes=False)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "Venous" / "img11.png")
    with pytest.raises(ExamError, match="img11.png"):
        load_export(root)


def test_not_an_export(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ExamError, match="not an image export"):
        load_export(tmp_path)


def test_labelme_round_trip_and_polygons(tmp_path):
    path = tmp_path / "a.json"
    write_labelme(path, "a.png", (100, 120), [(30, 40, 10, 20), ("cyst", 1, 2, 3, 4)])
    data = json.loads(path.read_text())
    assert data["imageHeight"] == 100 and data["imageWidth"] == 120 and data["imagePath"] == "a.png"
    assert data["shapes"][0]["points"] == [[10.0, 20.0], [30.0, 40.0]]
    assert read_labelme(path) == [("tumor", 10.0, 20.0, 30.0, 40.0), ("cyst", 1.0, 2.0, 3.0, 4.0)]
    data["shapes"].append({"label": "tumor", "shape_type": "polygon", "points": [[5, 9], [15, 2], [8, 12]]})
    data["shapes"].append({"label": "tumor", "shape_type": "point", "points": [[5, 9]]})
    path.write_text(json.dumps(data))
    doc = read_labelme_document(path)
    assert doc.rects[-1] == ("tumor", 5.0, 2.0, 15.0, 12.0)
    assert doc.ignored == ["shapes[3] is a point, not a box"]


@pytest.mark.parametrize(
    "content, field",
    [
        ("[]", "top level"),
        ('{"shapes": {}}', "'shapes'"),
        ('{"shapes": [{"label": "", "points": [[0,0],[1,1]]}]}', "shapes[0].label"),
        ('{"shapes": [{"label": "t", "shape_type": "rectangle", "points": [[0,0]]}]}', "shapes[0].points"),
        ('{"shapes": [{"label": "t", "points": [[0,"x"],[1,1]]}]}', "shapes[0].points[0]"),
        ('{"shapes": [], "imageHeight": -3}', "imageHeight"),
        ("{", "invalid JSON"),
    ],
)
def test_labelme_errors_name_file_and_field(tmp_path, content, field):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(LabelMeError) as err:
        read_labelme(path)
    assert str(path) in str(err.value) and field in str(err.value)


def test_yolo_labels_normalised_and_clipped(tmp_path):
    lines = yolo_lines([(10, 20, 30, 60), (-5, -5, 10, 10), (200, 200, 210, 210)], (100, 200))
    assert lines[0] == "0 0.100000 0.400000 0.100000 0.400000"
    assert lines[1] == "0 0.025000 0.050000 0.050000 0.100000"  # clipped to the image
    assert len(lines) == 2  # the box outside the image is dropped
    path = tmp_path / "labels" / "a.txt"
    write_yolo_labels(path, [(10, 20, 30, 60)], (100, 200))
    assert path.read_text() == lines[0] + "\n"
    back = read_yolo_labels(path, (100, 200))
    assert back[0][0] == 0 and np.allclose(back[0][1:], (10, 20, 30, 60))
    write_yolo_labels(path, [], (100, 200))
    assert path.read_text() == ""


def _full_series_export(root: Path, n=20, size=(16, 18), boxed=(7,)) -> Path:
    """Every slice of each phase exported (n images a phase), LabelMe boxes on a few of them."""
    h, w = size
    for f_i, folder in enumerate(("P", "A", "V", "D")):
        d = root / folder
        d.mkdir(parents=True)
        for k in range(n):
            Image.fromarray(np.full((h, w), 10 * f_i + k, np.uint8)).save(d / f"IM{k + 1}.png")
            if k in boxed:
                write_labelme(d / f"IM{k + 1}.json", f"IM{k + 1}.png", (h, w), [(2, 3, 9, 11)])
    return root


def test_full_series_export_brings_no_picks_but_keeps_its_boxes_on_their_slices(tmp_path):
    root = _full_series_export(tmp_path / "FULL", boxed=(7, 15))
    load = load_exam(root)
    seed = load.case_seed
    assert seed.picks == {}  # the first three images in name order are not picks
    vol = load.study.volumes["A"]
    assert vol.shape[0] == 20
    assert vol.meta["files"][:3] == ["IM1.png", "IM2.png", "IM3.png"]  # natural order, 2 before 10
    boxes_a = sorted((b for b in seed.boxes if b.phase == "A"), key=lambda b: b.position)
    assert [b.position for b in boxes_a] == pytest.approx([vol.position_of(7), vol.position_of(15)])
    assert int(vol.pixels[7, 0, 0]) == 10 + 7  # the box's slice is the image it was drawn on
    line = next(p for p in load.problems if "full series" in p)
    assert "P (20), A (20), V (20), D (20)" in line and "auto-pick" in line
    case = Case(load.study)
    seed.apply(case)
    assert not any(case.picks.values())
    assert len(case.boxes_on("A", vol.position_of(15), "user")) == 1


def test_three_images_a_phase_stay_the_picks_and_a_mixed_export_picks_per_phase(tmp_path):
    root = _export(tmp_path / "MIX", boxes=False)
    d = root / "Venous"
    for k in range(3, 9):
        Image.fromarray(np.zeros((20, 24), np.uint8)).save(d / f"img{20 + k}.png")
    load = load_export(root)
    assert sorted(load.case_seed.picks) == ["A", "D", "P"]
    assert len(load.case_seed.picks["A"]) == 3
    assert any("full series exported for phase V (9)" in p for p in load.problems)
