"""The float16 check compares threshold-free metrics: an exam flipping at the cut does not block a half bundle."""

from training.recipe import half_difference


def _evaluation(map_, auc, accuracy):
    metric = lambda v: {"value": v, "ci_t": [v, v], "ci_bootstrap": [v, v]}  # noqa: E731
    return {
        "detection": {"map": map_, "precision": 0.9, "recall": 0.9, "f1": 0.9},
        "classifiers": {"benign": {"truth_boxes": {"auc": metric(auc), "accuracy": metric(accuracy)},
                                   "detected_boxes": {"auc": metric(float("nan")), "accuracy": metric(accuracy)}}},
        "two_stage": {"accuracy": accuracy},
    }


def test_one_exam_flipping_at_the_threshold_is_not_a_change():
    a, b = _evaluation(0.93, 0.956, 0.895), _evaluation(0.93, 0.956, 0.887)
    assert half_difference(a, b) == 0.0


def test_auc_and_map_changes_are_measured():
    assert abs(half_difference(_evaluation(0.93, 0.956, 0.9), _evaluation(0.93, 0.946, 0.9)) - 0.010) < 1e-12
    assert abs(half_difference(_evaluation(0.93, 0.956, 0.9), _evaluation(0.90, 0.956, 0.9)) - 0.030) < 1e-12
