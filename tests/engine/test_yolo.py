"""The YOLOv8 wrapper: built from YAML with 4 channels, letterbox geometry, boxes mapped back to the image."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from liverview.engine import yolo


def test_ultralytics_is_offline_with_a_liverview_config_dir():
    assert os.environ["YOLO_OFFLINE"] == "true"
    assert os.environ["YOLO_CONFIG_DIR"]


def test_detector_takes_four_channels_and_round_trips_its_state():
    torch.manual_seed(0)
    det = yolo.build_detector("n", channels=4, nc=1)
    assert det.model[0].conv.in_channels == 4
    state = det.state_dict()
    loaded = yolo.detector_from_state("yolov8n", {k: v.half() if v.is_floating_point() else v for k, v in state.items()})
    x = torch.rand(1, 4, 64, 64)
    det.eval()
    with torch.inference_mode():
        a = yolo.raw_predictions(det, x)
        b = yolo.raw_predictions(loaded, x)
    assert a.shape == b.shape == (1, 5, 84)
    assert torch.allclose(a, b, atol=0.05, rtol=0.02)  # fp16 storage + conv/BN fusion


def test_detector_refuses_weights_of_another_shape():
    small = yolo.build_detector("n").state_dict()
    with pytest.raises(RuntimeError):
        yolo.detector_from_state("yolov8s", small)


def test_letterbox_and_postprocess_map_boxes_back():
    img = np.zeros((4, 100, 200), dtype=np.float32)  # wide image: padded top and bottom
    batch, params = yolo.letterbox([img], 64)
    (r, left, top) = params[0]
    assert batch.shape == (1, 4, 64, 64) and r == pytest.approx(0.32) and left == 0 and top == 16
    assert float(batch[0, 0, 0, 0]) == pytest.approx(114 / 255)
    # one candidate: centre (32, 32), 16 x 8 in letterbox pixels, score 0.9
    pred = torch.zeros(1, 5, 3)
    pred[0, :, 0] = torch.tensor([32.0, 32.0, 16.0, 8.0, 0.9])
    pred[0, 4, 1:] = 0.01
    out = yolo.postprocess(pred, params, [(100, 200)], conf=0.25, iou=0.7)
    assert len(out[0]) == 1
    x0, y0, x1, y1, s = out[0][0]
    assert (x0, y0, x1, y1) == pytest.approx((75.0, 37.5, 125.0, 62.5)) and s == pytest.approx(0.9)
