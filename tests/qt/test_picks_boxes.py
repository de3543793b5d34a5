"""Picking slices with keys, drawing / moving / editing boxes with the mouse, undo and redo, saving."""

from __future__ import annotations

import json

import pytest
from PySide6.QtCore import Qt
from qt_mouse import click, drag, pixel_to_widget

from liverview.qt.paths import data_dir
from liverview.session.case_files import case_path_for
from liverview.study.phases import PHASES
from liverview.study.persist import load_case


def saved(window) -> dict:
    window.saver.flush()
    return json.loads(window.case_path.read_text(encoding="utf-8"))


def pick_three_everywhere(window, qtbot):
    for key, phase in zip((Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3, Qt.Key.Key_4), PHASES):
        qtbot.keyClick(window, key)
        for _ in range(3):
            qtbot.keyClick(window, Qt.Key.Key_Space)
            qtbot.keyClick(window, Qt.Key.Key_Down)
            qtbot.keyClick(window, Qt.Key.Key_Down)
        qtbot.keyClick(window, Qt.Key.Key_Up, Qt.KeyboardModifier.NoModifier)
        for _ in range(5):
            qtbot.keyClick(window, Qt.Key.Key_Up)


def test_pick_three_slices_per_phase_with_the_space_key(shown, qtbot):
    start = shown.grid.views["P"].position
    pick_three_everywhere(shown, qtbot)
    case = shown.case
    for p in PHASES:
        assert len(case.picks[p]) == 3, p
    assert case.picks["P"] == pytest.approx([start, start + 4.0, start + 8.0])
    # every phase picked its own slices nearest to the shared positions (A is 1 mm deeper)
    vol_a = case.volume("A")
    assert case.picks["A"] == pytest.approx([float(vol_a.positions[vol_a.index_at(z)]) for z in case.picks["P"]])
    assert case.pick_warnings() == []
    strip = shown.picks
    assert all(b.isEnabled() for b in strip.rows["V"])
    assert strip.rows["V"][1].text() == f"{case.picks['V'][1]:.1f} mm"
    assert strip.counts["D"].text() == "3/3"
    # a fourth pick is refused with a message, not silently
    qtbot.keyClick(shown, Qt.Key.Key_End)
    qtbot.keyClick(shown, Qt.Key.Key_Space)
    assert len(case.picks["D"]) == 3
    assert "already has 3 picks" in shown.statusBar().currentMessage()
    # the picks are in the case file
    assert saved(shown)["picks"]["A"] == pytest.approx(case.picks["A"])


def test_space_on_a_picked_slice_unpicks_it_and_warnings_list_missing_picks(shown, qtbot):
    qtbot.keyClick(shown, Qt.Key.Key_Space)
    assert len(shown.case.picks["P"]) == 1
    assert "phase A: 0 of 3 slices picked" in shown.picks.warning_lines()
    qtbot.keyClick(shown, Qt.Key.Key_Space)
    assert shown.case.picks["P"] == []


def test_far_pick_is_warned(shown, qtbot):
    for key in (Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_3):
        qtbot.keyClick(shown, key)
        qtbot.keyClick(shown, Qt.Key.Key_Space)
    qtbot.keyClick(shown, Qt.Key.Key_4)
    for _ in range(8):
        qtbot.keyClick(shown, Qt.Key.Key_Down)  # 16 mm away from the other phases' pick
    qtbot.keyClick(shown, Qt.Key.Key_Space)
    lines = shown.picks.warning_lines()
    assert any(line.startswith("phase D: pick 1") and "far from the lesion" in line for line in lines), lines


def test_thumbnail_click_jumps_to_the_pick(shown, qtbot):
    qtbot.keyClick(shown, Qt.Key.Key_2)
    qtbot.keyClick(shown, Qt.Key.Key_Space)
    pos = shown.case.picks["A"][0]
    qtbot.keyClick(shown, Qt.Key.Key_Home)
    qtbot.keyClick(shown, Qt.Key.Key_1)
    qtbot.mouseClick(shown.picks.rows["A"][0], Qt.MouseButton.LeftButton)
    assert shown.grid.active == "A"
    assert shown.grid.views["A"].position == pytest.approx(pos)


def draw_box(window, phase, a, b, qtbot):
    grid = window.grid
    drag(grid, pixel_to_widget(grid, phase, *a), pixel_to_widget(grid, phase, *b),
         modifiers=Qt.KeyboardModifier.ShiftModifier)


def test_draw_move_resize_undo_redo_a_box_with_the_mouse(shown, qtbot):
    grid = shown.grid
    qtbot.keyClick(shown, Qt.Key.Key_3)  # V
    # drawing on a slice that is not picked is refused with a hint
    draw_box(shown, "V", (10, 10), (30, 26), qtbot)
    assert shown.case.boxes == []
    assert "pick this slice first" in shown.statusBar().currentMessage()
    qtbot.keyClick(shown, Qt.Key.Key_Space)
    draw_box(shown, "V", (10, 10), (30, 26), qtbot)
    assert len(shown.case.boxes) == 1
    box = shown.case.boxes[0]
    drawn = box.rect  # boxes are edited in place: keep the rectangles as tuples
    assert (box.phase, box.origin) == ("V", "user")
    assert box.position == pytest.approx(shown.grid.views["V"].position)
    assert drawn == pytest.approx((10, 10, 30, 26), abs=1.0)
    assert saved(shown)["boxes"][0]["id"] == box.id
    roi = grid.box_layers["V"].roi_for(box.id)
    assert roi is not None and roi.isVisible()

    # move: drag the middle of the box 8 px right, 5 px down (in image pixels)
    drag(grid, pixel_to_widget(grid, "V", 20, 18), pixel_to_widget(grid, "V", 28, 23))
    moved = shown.case.box(box.id).rect
    assert moved == pytest.approx((drawn[0] + 8, drawn[1] + 5, drawn[2] + 8, drawn[3] + 5), abs=1.0)
    assert saved(shown)["boxes"][0]["x0"] == pytest.approx(moved[0])

    # resize: drag the bottom-right handle outwards
    drag(grid, pixel_to_widget(grid, "V", moved[2], moved[3]), pixel_to_widget(grid, "V", moved[2] + 6, moved[3] + 4))
    resized = shown.case.box(box.id).rect
    assert resized[:2] == pytest.approx(moved[:2], abs=0.5)
    assert resized[2:] == pytest.approx((moved[2] + 6, moved[3] + 4), abs=1.0)

    qtbot.keyClick(shown, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the resize
    assert shown.case.box(box.id).rect == pytest.approx(moved)
    qtbot.keyClick(shown, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the move
    assert shown.case.box(box.id).rect == pytest.approx(drawn)
    r = grid.box_layers["V"].roi_for(box.id)
    vx, vy = grid.views["V"].geom.to_view(drawn[0], drawn[1])
    assert (r.pos().x(), r.pos().y()) == pytest.approx((vx, vy))  # the drawing followed the undo
    qtbot.keyClick(shown, Qt.Key.Key_Y, Qt.KeyboardModifier.ControlModifier)  # redo the move
    assert shown.case.box(box.id).rect == pytest.approx(moved)
    assert saved(shown)["boxes"][0]["x0"] == pytest.approx(moved[0])
    qtbot.keyClick(shown, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(shown, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the drawing
    assert shown.case.boxes == []
    assert saved(shown)["boxes"] == []
    assert grid.box_layers["V"].roi_for(box.id) is None
    qtbot.keyClick(shown, Qt.Key.Key_Z, Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier)
    assert len(shown.case.boxes) == 1 and shown.case.boxes[0].rect == pytest.approx(drawn)


def test_box_tool_select_delete_and_copy_to_other_phases(shown, qtbot):
    grid = shown.grid
    pick_three_everywhere(shown, qtbot)
    qtbot.keyClick(shown, Qt.Key.Key_1)
    grid.set_position(shown.case.picks["P"][1])
    qtbot.keyClick(shown, Qt.Key.Key_B)  # box tool: plain left-drag draws
    assert shown.actions["draw_box"].isChecked()
    drag(grid, pixel_to_widget(grid, "P", 12, 14), pixel_to_widget(grid, "P", 32, 40))
    qtbot.keyClick(shown, Qt.Key.Key_B)
    box = shown.case.boxes[0]
    assert shown.grid.selected_box == box.id
    qtbot.keyClick(shown, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)  # copy to A, V, D
    copies = [b for b in shown.case.boxes if b.id != box.id]
    assert sorted(b.phase for b in copies) == ["A", "D", "V"]
    for b in copies:
        assert b.position == pytest.approx(shown.case.picks[b.phase][1])  # same depth rank
        assert b.rect == pytest.approx(box.rect, abs=0.01)  # same in-plane geometry in this exam
    assert len(saved(shown)["boxes"]) == 4
    qtbot.keyClick(shown, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # the copy is one step
    assert [b.id for b in shown.case.boxes] == [box.id]
    # select by clicking on its edge and delete with the key
    grid.select_box(None)
    click(grid, pixel_to_widget(grid, "P", 12, 27))
    assert grid.selected_box == box.id
    qtbot.keyClick(shown, Qt.Key.Key_Delete)
    assert shown.case.boxes == []


def test_edits_survive_closing_and_reopening_the_exam(shown, qtbot):
    from conftest import synthetic_study

    qtbot.keyClick(shown, Qt.Key.Key_Space)
    draw_box(shown, "P", (5, 6), (20, 22), qtbot)
    path = case_path_for(data_dir() / "cases", shown.study)
    shown.saver.flush()
    assert shown.case_path == path and path.exists()
    picks, boxes = dict(shown.case.picks), [b.rect for b in shown.case.boxes]
    shown.session.close()
    reopened = load_case(path)
    assert reopened.picks == picks and [b.rect for b in reopened.boxes] == boxes
    shown._show_study(synthetic_study(shift_mm=1.0))
    assert shown.case_restored
    assert shown.case.picks == picks
    assert [b.rect for b in shown.case.boxes] == boxes
    assert shown.grid.views["P"].picked  # the middle slice, picked before, shows as picked
    assert shown.grid.box_layers["P"].roi_for(shown.case.boxes[0].id) is not None


def test_every_edit_is_written_before_the_next(shown, qtbot):
    writes = []
    shown.session.saved.connect(writes.append)
    for _ in range(3):
        qtbot.keyClick(shown, Qt.Key.Key_Space)
        qtbot.keyClick(shown, Qt.Key.Key_Down)
        shown.saver.flush()
        data = json.loads(shown.case_path.read_text(encoding="utf-8"))
        assert data["picks"]["P"] == pytest.approx(shown.case.picks["P"])
    qtbot.waitUntil(lambda: len(writes) >= 3 or shown.saver.saves >= 3)
