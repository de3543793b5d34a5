"""PKCP composite counts, union boxes and phase dropping."""

from __future__ import annotations

import numpy as np

from liverview.study.composite import build_composite
from liverview.study.volume import WINDOWED
from training.pkcp import composite, counts_per_exam, expand


def test_minority_exams_get_81_composites_and_majority_exams_3(tiny_cohort):
    counts = counts_per_exam(expand(tiny_cohort, "pkcp"))
    by_class = {tiny_cohort.classes[i]: n for i, n in counts.items()}
    assert by_class == {"HH": 3, "HB": 3, "OBHT": 81, "OMHT": 81}
    assert sum(counts.values()) == 4 * 3 + 2 * 81


def test_without_rebalance_every_exam_gets_3_depth_consistent_composites(tiny_cohort):
    refs = expand(tiny_cohort, "flat")
    assert set(counts_per_exam(refs).values()) == {3}
    assert all(len(set(r.picks)) == 1 for r in refs)  # slice k of every phase


def test_pkcp_combinations_are_all_distinct_and_cover_every_pick(tiny_cohort):
    refs = [r for r in expand(tiny_cohort, "pkcp") if r.exam == 1]
    assert len({r.picks for r in refs}) == 81
    assert {r.picks[0] for r in refs} == {0, 1, 2}


def test_three_phase_pkcp_gives_27_and_single_slices_12(tiny_cohort):
    refs = expand(tiny_cohort, "pkcp", exams=[1], phases=("A", "V", "D"))
    assert len(refs) == 27
    assert len(expand(tiny_cohort, "slices", exams=[0])) == 12


def test_composite_box_is_the_union_of_its_four_slice_boxes(tiny_cohort):
    ref = next(r for r in expand(tiny_cohort, "pkcp", exams=[1]) if r.picks == (0, 2, 1, 0))
    image, box, used = composite(tiny_cohort, ref)
    boxes = [tiny_cohort.boxes[1, c, k] for c, k in enumerate(ref.picks)]
    assert box == (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
    assert box == (8.0, 8.0, 19.0, 22.0)
    assert used == ("P", "A", "V", "D")
    expected, _ = build_composite({p: tiny_cohort.slices[1, c, k] for c, (p, k) in enumerate(zip("PAVD", ref.picks))}, WINDOWED)
    np.testing.assert_array_equal(image, expected)


def test_dropped_phase_is_a_zero_channel_and_leaves_the_union_box(tiny_cohort):
    ref = expand(tiny_cohort, "flat", exams=[0])[2]
    image, box, used = composite(tiny_cohort, ref, phases=("A", "V", "D"))
    assert used == ("A", "V", "D")
    assert not image[0].any() and image[1:].any()
    # pick 2: A box (11, 8, 17, 22), V (12, 8, 18, 22), D (13, 8, 19, 22); P's (10, 8, 16, 22) is left out
    assert box == (11.0, 8.0, 19.0, 22.0)
