"""Detection metrics at one IoU threshold (the paper: 0.40): mAP, precision, recall, F1.

Matching: per image, predictions in descending confidence each claim the unclaimed
ground-truth box of highest IoU if that IoU >= the threshold (ultralytics' validator
rule). AP is the all-point interpolated area under the precision envelope (PASCAL VOC
2010 onward), so a perfect detector scores 1; precision, recall and F1 are those of the
real operating point (a confidence cut between distinct scores) with the highest F1.
ultralytics' own `ap_per_class` is not used: its 101-point trapezoid tops out at 0.995
and its smoothed, interpolated F1 curve can report a point no threshold gives.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a [M, 4] and b [N, 4] (x0, y0, x1, y1) -> [M, N]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match(pred_boxes: np.ndarray, conf: np.ndarray, gt_boxes: np.ndarray, iou: float) -> np.ndarray:
    """True-positive flag per prediction (in the given order) for one image."""
    pred_boxes = np.asarray(pred_boxes, dtype=np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    tp = np.zeros(len(pred_boxes), dtype=bool)
    if not len(pred_boxes) or not len(gt_boxes):
        return tp
    ious = box_iou(gt_boxes, pred_boxes)
    claimed = np.zeros(len(gt_boxes), dtype=bool)
    for j in np.argsort(-np.asarray(conf), kind="stable"):
        avail = np.where(claimed, -1.0, ious[:, j])
        k = int(avail.argmax())
        if avail[k] >= iou:
            tp[j] = True
            claimed[k] = True
    return tp


def detection_metrics(
    predictions: Sequence[tuple[np.ndarray, np.ndarray]],
    targets: Sequence[np.ndarray],
    iou: float = 0.40,
) -> dict[str, float]:
    """mAP, precision, recall and F1 at `iou` over images; single class "tumor".

    `predictions[i]` is (boxes [N, 4], confidences [N]) for image i, `targets[i]` its
    ground-truth boxes [M, 4].
    """
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction sets for {len(targets)} images")
    tps, confs = [], []
    n_targets = 0
    for (boxes, conf), gt in zip(predictions, targets):
        gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
        n_targets += len(gt)
        tps.append(match(boxes, conf, gt, iou))
        confs.append(np.asarray(conf, dtype=np.float64).reshape(-1))
    tp = np.concatenate(tps) if tps else np.zeros(0, bool)
    conf = np.concatenate(confs) if confs else np.zeros(0)
    out = {"iou": iou, "images": len(targets), "targets": n_targets, "predictions": int(len(tp))}
    if n_targets == 0:
        return {**out, "map": float("nan"), "precision": float("nan"), "recall": float("nan"), "f1": float("nan")}
    if len(tp) == 0:
        return {**out, "map": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    order = np.argsort(-conf, kind="stable")
    tp, conf = tp[order], conf[order]
    ctp = np.cumsum(tp)
    cfp = np.cumsum(~tp)
    recall = ctp / n_targets
    precision = ctp / (ctp + cfp)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    ap = float(np.sum(np.diff(mrec) * mpre[1:]))
    # operating points: after the last prediction of each distinct confidence
    last = np.r_[conf[1:] != conf[:-1], True]
    p, r = precision[last], recall[last]
    f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
    best = int(np.argmax(f1))
    return {**out, "map": ap, "precision": float(p[best]), "recall": float(r[best]), "f1": float(f1[best])}
