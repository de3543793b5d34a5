"""Detection mAP / precision / recall / F1 at IoU 0.40 on hand-made boxes whose numbers are worked out by hand.

The reference is the standard all-point AP (PASCAL VOC 2010+): rank predictions by confidence,
precision envelope p_interp(r) = max precision at recall >= r, AP = sum over recall steps of
(step width) x p_interp. Precision / recall / F1 are those of the best-F1 confidence threshold,
as the module's docstring says. (ultralytics' `ap_per_class` gives other numbers: 0.995 for a
perfect detector, 0.4975 for 0.5; the module does not use it.)
"""

from __future__ import annotations

import numpy as np
import pytest

from training.detection_metrics import box_iou, detection_metrics, match

TARGET = np.array([[0.0, 0.0, 10.0, 10.0]])  # area 100
# Same left/top/right edges, shorter: intersection = its own area, union = 100.
AT_045 = np.array([[0.0, 0.0, 10.0, 4.5]])  # IoU 45 / 100 = 0.45
AT_035 = np.array([[0.0, 0.0, 10.0, 3.5]])  # IoU 35 / 100 = 0.35
ELSEWHERE = np.array([[50.0, 50.0, 60.0, 60.0]])  # IoU 0 with everything here
SECOND = np.array([[20.0, 20.0, 30.0, 30.0]])
NONE = np.zeros((0, 4))


def pred(*boxes_and_scores):
    """(boxes [N, 4], confidences [N]) from (box, score) pairs."""
    if not boxes_and_scores:
        return NONE, np.zeros(0)
    return (np.concatenate([b for b, _ in boxes_and_scores]), np.array([s for _, s in boxes_and_scores], dtype=float))


# ---- the cases, with their standard values ---------------------------------------------------------
# perfect: two images, one target each, each found exactly.
#   ranked TP, TP -> precision 1, 1; recall 0.5, 1 -> AP = 0.5*1 + 0.5*1 = 1; best F1 at any threshold: P=R=F1=1
PERFECT = ([pred((TARGET, 0.9)), pred((SECOND, 0.8))], [TARGET, SECOND])
# hit at IoU 0.45 >= 0.40: the same as the perfect single-image detector: AP 1, P=R=F1=1
HIT_045 = ([pred((AT_045, 0.9))], [TARGET])
# a false positive (conf 0.9) ranked above the one true positive (conf 0.8), one target:
#   ranked FP, TP -> precision 0, 1/2; recall 0, 1 -> envelope 1/2 on (0, 1] -> AP = 1 * 1/2 = 0.5
#   thresholds: >= 0.9: P 0, R 0, F1 0; >= 0.8: P 1/2, R 1, F1 = 2*(1/2)/(3/2) = 2/3  -> best F1 2/3
FP_FIRST = ([pred((ELSEWHERE, 0.9), (TARGET, 0.8))], [TARGET])
# two targets; TP (0.9), FP (0.8), TP (0.7):
#   precision 1, 1/2, 2/3; recall 1/2, 1/2, 1 -> envelope 1 on (0, 1/2], 2/3 on (1/2, 1]
#   AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
#   thresholds: 0.9: P 1, R 1/2, F1 2/3; 0.8: P 1/2, R 1/2, F1 1/2; 0.7: P 2/3, R 1, F1 0.8 -> best F1 0.8
TP_FP_TP = ([pred((TARGET, 0.9), (ELSEWHERE, 0.8), (SECOND, 0.7))], [np.concatenate([TARGET, SECOND])])
# the same with the false positive replaced by a second box on the first target: the duplicate is a
# false positive, so every number equals TP_FP_TP's (AP 5/6, best F1 0.8).
TP_DUP_TP = ([pred((TARGET, 0.9), (TARGET, 0.8), (SECOND, 0.7))], [np.concatenate([TARGET, SECOND])])
# one target, found twice: TP (0.9), duplicate FP (0.8)
#   precision 1, 1/2; recall 1, 1 -> AP = 1 (the TP is ranked first)
#   thresholds: 0.9: P 1, R 1, F1 1; 0.8: P 1/2, R 1, F1 2/3 -> best F1 1 with P = R = 1
DUPLICATE = ([pred((TARGET, 0.9), (TARGET, 0.8))], [TARGET])
# two images, one target each; the second image has no prediction:
#   ranked TP -> precision 1, recall 1/2 -> AP = 1/2 * 1 = 0.5; P 1, R 1/2, F1 2/3
MISSED_IMAGE = ([pred((TARGET, 0.9)), pred()], [TARGET, SECOND])


def test_iou_of_the_hand_made_boxes():
    assert box_iou(TARGET, np.concatenate([TARGET, AT_045, AT_035, ELSEWHERE]))[0] == pytest.approx(
        [1.0, 0.45, 0.35, 0.0]
    )
    # partial overlap both ways: [0,0,10,10] vs [5,0,15,10]: intersection 50, union 150
    assert box_iou(TARGET, np.array([[5.0, 0.0, 15.0, 10.0]]))[0, 0] == pytest.approx(1 / 3)


def test_a_box_at_iou_045_is_a_hit_at_040_and_one_at_035_is_not():
    assert match(AT_045, [0.9], TARGET, 0.40).tolist() == [True]
    assert match(AT_035, [0.9], TARGET, 0.40).tolist() == [False]
    # the threshold is the one asked for: 0.45 misses at 0.50
    assert match(AT_045, [0.9], TARGET, 0.50).tolist() == [False]

    hit = detection_metrics(*HIT_045)
    assert hit["iou"] == 0.40
    assert (hit["precision"], hit["recall"], hit["f1"]) == pytest.approx((1.0, 1.0, 1.0))
    assert hit["map"] == pytest.approx(detection_metrics([pred((TARGET, 0.9))], [TARGET])["map"])

    miss = detection_metrics([pred((AT_035, 0.9))], [TARGET])
    # the one prediction is a false positive and the target is never found: AP 0, recall 0
    assert miss["map"] == 0.0
    assert miss["recall"] == 0.0 and miss["f1"] == 0.0


def test_a_perfect_detector_has_full_precision_recall_and_f1():
    m = detection_metrics(*PERFECT)
    assert (m["images"], m["targets"], m["predictions"]) == (2, 2, 2)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 1.0, 1.0))


def test_a_higher_scored_false_positive_lowers_ap_and_precision():
    perfect = detection_metrics([pred((TARGET, 0.8))], [TARGET])
    worse = detection_metrics(*FP_FIRST)
    assert worse["map"] < perfect["map"]
    # best-F1 threshold keeps both predictions: P 1/2, R 1, F1 2/3 (see FP_FIRST)
    assert (worse["precision"], worse["recall"], worse["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    # ranked below the true positive the same false positive costs no AP: AP depends on the ranking
    later = detection_metrics([pred((ELSEWHERE, 0.7), (TARGET, 0.8))], [TARGET])
    assert later["map"] == pytest.approx(perfect["map"])


def test_a_duplicate_of_one_target_counts_once_and_as_a_false_positive():
    # the higher-scored box claims the target; the second box on it finds it already claimed
    assert match(np.concatenate([TARGET, TARGET]), [0.9, 0.8], TARGET, 0.40).tolist() == [True, False]
    assert match(np.concatenate([TARGET, TARGET]), [0.7, 0.8], TARGET, 0.40).tolist() == [False, True]
    # with a second target in the image the duplicate scores exactly like any false positive
    dup, fp = detection_metrics(*TP_DUP_TP), detection_metrics(*TP_FP_TP)
    for key in ("map", "precision", "recall", "f1"):
        assert dup[key] == pytest.approx(fp[key]), key
    # best F1 at threshold 0.7: P 2/3, R 1, F1 0.8 (see TP_FP_TP)
    assert (dup["precision"], dup["recall"], dup["f1"]) == pytest.approx((2 / 3, 1.0, 0.8))


def test_an_image_without_predictions_lowers_recall():
    m = detection_metrics(*MISSED_IMAGE)
    assert (m["images"], m["targets"], m["predictions"]) == (2, 2, 1)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert m["map"] < detection_metrics(*PERFECT)["map"]


def test_predictions_on_an_image_without_targets_are_false_positives():
    # image 1: TP (0.8); image 2 (no target): box at 0.9 -> ranked FP, TP: as FP_FIRST
    m = detection_metrics([pred((TARGET, 0.8)), pred((SECOND, 0.9))], [TARGET, NONE])
    assert m["map"] == pytest.approx(detection_metrics(*FP_FIRST)["map"])
    assert (m["precision"], m["recall"]) == pytest.approx((0.5, 1.0))


def test_edge_cases_are_explicit():
    assert np.isnan(detection_metrics([pred((TARGET, 0.9))], [NONE])["map"])  # nothing to find: undefined
    assert detection_metrics([pred()], [TARGET])["map"] == 0.0
    with pytest.raises(ValueError, match="prediction sets"):
        detection_metrics([pred()], [TARGET, TARGET])


@pytest.mark.parametrize(
    "case, expected",
    [
        pytest.param(PERFECT, 1.0, id="perfect"),
        pytest.param(HIT_045, 1.0, id="hit-at-0.45"),
        pytest.param(FP_FIRST, 0.5, id="fp-above-tp"),
        pytest.param(TP_FP_TP, 5 / 6, id="tp-fp-tp"),
        pytest.param(DUPLICATE, 1.0, id="duplicate"),
        pytest.param(MISSED_IMAGE, 0.5, id="image-without-predictions"),
    ],
)
def test_map_is_the_all_point_average_precision(case, expected):
    assert detection_metrics(*case)["map"] == pytest.approx(expected, abs=1e-9)


def test_best_f1_threshold_drops_a_lower_scored_duplicate():
    m = detection_metrics(*DUPLICATE)
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((1.0, 1.0, 1.0))
