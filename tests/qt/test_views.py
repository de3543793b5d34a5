"""The four-phase grid: scrolling by keys and wheel linked by position, layouts, windows, readout, labels."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from qt_mouse import drag, hover, pixel_to_widget, wheel

from liverview.study.phases import PHASES, WINDOWS


def positions(window):
    return {p: window.grid.views[p].position for p in PHASES}


def test_arrow_keys_scroll_every_phase_by_patient_position(shown, qtbot):
    grid = shown.grid
    before = positions(shown)
    k0 = grid.views["P"].index
    qtbot.keyClick(shown, Qt.Key.Key_Down)
    qtbot.keyClick(shown, Qt.Key.Key_Down)
    after = positions(shown)
    assert grid.views["P"].index == k0 + 2
    assert after["P"] == pytest.approx(before["P"] + 4.0)  # 2 slices of 2 mm
    # the other phases are shifted by 1, 2, 3 mm: each shows its slice nearest to P's position
    for i, p in enumerate(PHASES):
        vol = grid.views[p].volume
        assert after[p] == pytest.approx(float(vol.positions[vol.index_at(after["P"])]))
        assert abs(after[p] - after["P"]) <= 1.0 + 1e-6
    qtbot.keyClick(shown, Qt.Key.Key_Up)
    assert grid.views["P"].index == k0 + 1
    qtbot.keyClick(shown, Qt.Key.Key_End)
    assert grid.views["P"].index == len(grid.views["P"].positions) - 1
    qtbot.keyClick(shown, Qt.Key.Key_Home)
    assert grid.views["P"].index == 0
    qtbot.keyClick(shown, Qt.Key.Key_PageDown)
    assert grid.views["P"].index == 10
    assert "slice 11/24" in grid.views["P"].info.text()


def test_wheel_scrolls_and_ctrl_wheel_zooms_all_phases(shown, qtbot):
    grid = shown.grid
    k0 = grid.views["A"].index
    at = pixel_to_widget(grid, "A", 32, 32)
    wheel(grid, at, -3)  # towards the user: forward through the stack
    assert grid.views["A"].index == k0 + 3
    width0 = grid.views["D"].viewRange()[0][1] - grid.views["D"].viewRange()[0][0]
    wheel(grid, at, 2, Qt.KeyboardModifier.ControlModifier)
    width1 = grid.views["D"].viewRange()[0][1] - grid.views["D"].viewRange()[0][0]
    assert width1 < width0 * 0.99  # zoom on A reached D (linked views)
    assert grid.views["A"].index == k0 + 3  # ctrl+wheel does not scroll


def test_layouts_cycle_with_key(shown, qtbot):
    grid = shown.grid
    assert grid.visible_phases() == list(PHASES)
    qtbot.keyClick(shown, Qt.Key.Key_L)
    assert grid.layout_mode == "1x4"
    geoms = [grid.views[p].sceneBoundingRect() for p in PHASES]
    assert len({round(g.top()) for g in geoms}) == 1  # one row
    qtbot.keyClick(shown, Qt.Key.Key_3)  # active phase V
    qtbot.keyClick(shown, Qt.Key.Key_L)
    assert grid.layout_mode == "single"
    assert grid.visible_phases() == ["V"]
    qtbot.keyClick(shown, Qt.Key.Key_L)
    assert grid.layout_mode == "2x2" and grid.visible_phases() == list(PHASES)


def test_window_presets_linked_and_per_phase(shown, qtbot):
    grid = shown.grid
    assert (grid.views["P"].win_level, grid.views["P"].win_width) == WINDOWS["P"]
    assert (grid.views["A"].win_level, grid.views["A"].win_width) == WINDOWS["A"]
    qtbot.keyClick(shown, Qt.Key.Key_W)  # -> abdomen, linked: every phase
    assert all((grid.views[p].win_level, grid.views[p].win_width) == (40.0, 400.0) for p in PHASES)
    assert shown.preset_combo.currentText() == "abdomen"
    qtbot.keyClick(shown, Qt.Key.Key_W, Qt.KeyboardModifier.ShiftModifier)  # unlink
    assert not grid.link_windows
    qtbot.keyClick(shown, Qt.Key.Key_2)  # active A
    shown.preset_combo.setCurrentText("bone")
    assert (grid.views["A"].win_level, grid.views["A"].win_width) == (400.0, 1800.0)
    assert (grid.views["P"].win_level, grid.views["P"].win_width) == (40.0, 400.0)
    assert grid.views["A"].image.levels is not None and tuple(grid.views["A"].image.levels) == (-500.0, 1300.0)


def test_right_drag_sets_window_and_level(shown, qtbot):
    grid = shown.grid
    width0, level0 = grid.views["V"].win_width, grid.views["V"].win_level
    a = pixel_to_widget(grid, "V", 20, 30)
    b = a.__class__(a.x() + 60, a.y() - 40)  # right: wider; up: higher level
    drag(grid, a, b, Qt.MouseButton.RightButton)
    assert grid.views["V"].win_width > width0 * 1.2
    assert grid.views["V"].win_level > level0
    assert grid.views["P"].win_width == pytest.approx(grid.views["V"].win_width)  # linked by default
    assert shown.preset_combo.currentText() == "custom"
    assert grid.views["V"].window_text.text().startswith("W ")


def test_cursor_readout_shows_hu_and_patient_position(shown, qtbot):
    grid = shown.grid
    v = grid.views["D"]
    hover(grid, pixel_to_widget(grid, "D", 40.5, 20.5))
    text = shown.readout.text()
    k = v.index
    hu = float(v.volume.pixels[k, 20, 40])
    assert text.startswith("D ")
    assert "col 40 row 20" in text
    assert f"{hu:.0f} HU" in text
    lps = v.volume.to_patient(40, 20, k)
    assert f"{lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}" in text


def test_orientation_labels_and_scale_bar(shown):
    v = shown.grid.views["P"]
    # identity-like axial geometry: columns run to patient left, rows to posterior
    assert (v.orient["left"].text(), v.orient["right"].text()) == ("R", "L")
    assert (v.orient["top"].text(), v.orient["bottom"].text()) == ("A", "P")
    assert v.scalebar.isVisible() and v.scalebar.label == "10 mm"
    bar_px = v.scalebar.length_px
    # the bar is 10 mm: in view pixels that is 10 mm / (mm per view pixel)
    mm_per_px = (v.viewRange()[0][1] - v.viewRange()[0][0]) / v.width()
    assert bar_px * mm_per_px == pytest.approx(10.0, rel=0.05)


def test_cine_plays_and_stops(shown, qtbot):
    k0 = shown.grid.views["P"].index
    qtbot.keyClick(shown, Qt.Key.Key_C)
    qtbot.waitUntil(lambda: shown.grid.views["P"].index >= k0 + 2, timeout=3000)
    qtbot.keyClick(shown, Qt.Key.Key_C)
    k = shown.grid.views["P"].index
    qtbot.wait(300)
    assert shown.grid.views["P"].index == k


def test_tab_and_number_keys_change_the_active_phase(shown, qtbot):
    qtbot.keyClick(shown, Qt.Key.Key_4)
    assert shown.grid.active == "D" and shown.grid.views["D"].active
    qtbot.keyClick(shown, Qt.Key.Key_Tab)
    assert shown.grid.active == "P"
    assert not shown.grid.views["D"].active
