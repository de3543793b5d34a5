"""The composite builder: windows, channel order, PKCP combinations, union boxes, case composites."""

import numpy as np
import pytest

from liverview.study.case import Box
from liverview.study.composite import (
    build_composite,
    case_composites,
    combinations,
    to_unit,
    union_box,
)
from liverview.study.volume import WINDOWED


def test_to_unit_uses_the_method_windows():
    hu = np.array([-85.0, 40.0, 165.0, 1000.0])
    np.testing.assert_allclose(to_unit(hu, "P"), [0.0, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(to_unit(np.array([45.0 - 145.0, 45.0]), "A"), [0.0, 0.5])


def test_windowed_exports_scale_or_convert_back():
    px = np.array([0.0, 255.0])
    np.testing.assert_allclose(to_unit(px, "V", WINDOWED), [0.0, 1.0])
    # An export windowed at (40, 400) is mapped back to HU, then to the model's (45, 290).
    out = to_unit(np.array([127.5]), "V", WINDOWED, export_window=(40.0, 400.0))
    assert out[0] == pytest.approx((40.0 - (45 - 145)) / 290.0)


def test_build_composite_channel_order_and_missing_phase():
    slices = {"P": np.full((4, 5), 40.0), "A": np.full((4, 5), 45.0), "D": np.full((4, 5), 190.0)}
    img, used = build_composite(slices)
    assert img.dtype == np.float32 and img.shape == (4, 4, 5)
    assert used == ("P", "A", "D")
    np.testing.assert_allclose(img[:, 0, 0], [0.5, 0.5, 0.0, 1.0])


def test_build_composite_resamples_other_matrices():
    img, _ = build_composite({"P": np.zeros((8, 8)), "V": np.zeros((16, 16))})
    assert img.shape == (4, 8, 8)


def test_pkcp_combination_counts():
    assert len(combinations(3, "depth")) == 3
    assert combinations(3, "depth")[1] == {"P": 1, "A": 1, "V": 1, "D": 1}
    allc = combinations(3, "all")
    assert len(allc) == 81 and len({tuple(c.values()) for c in allc}) == 81
    assert len(combinations(3, "all", ("A", "V", "D"))) == 27
    with pytest.raises(ValueError):
        combinations(3, "some")


def test_union_box():
    assert union_box([(1, 2, 5, 6), None, (0, 3, 4, 9)]) == (0, 2, 5, 9)
    assert union_box([None]) is None


def test_case_composites_follow_picks_and_boxes(case, study):
    for i, p in enumerate("PAVD"):
        vol = study.volumes[p]
        picks = [float(x) for x in vol.positions[3:6]]
        case.set_picks(p, picks)
        case.add_box(Box(p, picks[1], 5 + i, 6, 10 + i, 12))
    comps = case_composites(case)
    assert len(comps) == 3
    middle = comps[1]
    assert middle.box == (5.0, 6.0, 13.0, 12.0), "union of the four slices' boxes"
    assert comps[0].box is None, "no box on the first picks"
    assert len(case_composites(case, mode="all")) == 81
    # Channel c comes from phase c's picked slice.
    vol_v = study.volumes["V"]
    expected = to_unit(vol_v.slice_at(case.picks["V"][1]), "V")
    np.testing.assert_allclose(middle.image[2], expected)


def test_case_composites_use_a_bundles_windows_when_given(case, study):
    for p in "PAVD":
        case.set_picks(p, [float(x) for x in study.volumes[p].positions[3:6]])
    wide = {p: (40.0, 2000.0) for p in "PAVD"}
    default, windowed = case_composites(case)[0], case_composites(case, windows=wide)[0]
    expected = to_unit(study.volumes["A"].slice_at(case.picks["A"][0]), "A", windows=wide)
    np.testing.assert_allclose(windowed.image[1], expected)
    assert not np.allclose(default.image[1], windowed.image[1]), "the windows must change the pixels"
