"""Grad-CAM overlays from stored findings: decoding, placing on each phase's pixels, colour and opacity."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest

from liverview.qt.cam_overlay import CamSource, FLOOR, colorize, crop_transparent, decode_map, upsample


def encode(a: np.ndarray) -> dict:
    """The engine's stored CAM format (liverview.engine.findings.encode_map)."""
    q = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
    return {"shape": list(q.shape), "encoding": "uint8/255,zlib,base64",
            "data": base64.b64encode(zlib.compress(q.tobytes(), 6)).decode("ascii")}


def findings_with(cam: np.ndarray, square, scale=None, picks=None) -> dict:
    return {"composites": [{
        "index": 0,
        "picks": picks or {"P": 1, "V": 1},
        "positions": {"P": 10.0, "V": 12.5},
        "scale": scale or {"P": [1.0, 1.0], "V": [2.0, 2.0]},
        "explanations": {"stage1": {"cam": {"square": list(square), "input_size": cam.shape[0], **encode(cam)},
                                    "attribution": {"P": 0.7, "V": 0.3}}},
    }]}


def test_decode_reads_the_engine_format():
    a = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    assert decode_map(encode(a)) == pytest.approx(a, abs=1 / 255)
    with pytest.raises(ValueError, match="unknown CAM encoding"):
        decode_map({"encoding": "png", "shape": [1], "data": ""})


def test_upsample_keeps_values_and_size():
    a = np.zeros((4, 4), np.float32)
    a[1:3, 1:3] = 1.0
    u = upsample(a, 16)
    assert u.shape == (16, 16)
    assert u.min() >= 0.0 and u.max() == pytest.approx(1.0)
    assert u[8, 8] == pytest.approx(1.0) and u[0, 0] == pytest.approx(0.0)


def test_weak_activations_are_transparent_and_cropped_away():
    cam = np.zeros((20, 20), np.float32)
    cam[5:9, 12:16] = 1.0
    cam[0, 0] = FLOOR * 0.5  # below the floor: not drawn
    rgba = colorize(cam, "turbo")
    assert rgba[0, 0, 3] == 0 and rgba[6, 13, 3] == 255
    part, (x0, y0, x1, y1) = crop_transparent(rgba)
    assert (x0, y0, x1, y1) == (12, 5, 16, 9) and part.shape[:2] == (4, 4)


def test_lookup_places_the_visible_part_of_the_cam_on_each_phase():
    cam = np.zeros((32, 32), np.float32)
    cam[8:16, 16:24] = 1.0  # visible in the upper-right quarter of the ROI square
    square = (100.0, 40.0, 64.0)  # composite pixels: x0, y0, side
    src = CamSource(findings_with(cam, square), opacity=1.0)
    key, image, rect = src.lookup("P", 10.0)
    k = 64.0 / src._map(0).shape[0]
    # the upsampled map is cropped to its visible part; P's pixels are the composite's
    assert rect[0] == pytest.approx(100 + 32, abs=2 * k) and rect[1] == pytest.approx(40 + 16, abs=2 * k)
    assert rect[2] == pytest.approx(100 + 48, abs=2 * k) and rect[3] == pytest.approx(40 + 32, abs=2 * k)
    assert image.width() > 0 and image.height() > 0
    # V's pixel grid is twice as coarse: same place in patient terms, half the pixel numbers
    _, _, rect_v = src.lookup("V", 12.5)
    assert rect_v == pytest.approx(tuple(v / 2 for v in rect))
    assert src.lookup("P", 12.5) is None  # no composite uses that slice of P
    assert src.lookup("A", 10.0) is None  # phase not in the composite


def test_opacity_is_baked_into_the_pixels():
    cam = np.ones((8, 8), np.float32)
    src = CamSource(findings_with(cam, (0, 0, 8)), opacity=1.0)
    _, opaque, _ = src.lookup("P", 10.0)
    src.set_opacity(0.25)
    key, faint, _ = src.lookup("P", 10.0)
    assert opaque.pixelColor(2, 2).alpha() == 255
    assert faint.pixelColor(2, 2).alpha() == pytest.approx(64, abs=1)
    assert key[-1] == 0.25


def test_stages_and_attribution_summaries():
    src = CamSource(findings_with(np.ones((8, 8), np.float32), (0, 0, 8)))
    assert src.stages() == ["stage1"]
    assert src.attribution() == {"stage1": {"P": 0.7, "V": 0.3}}
    src.set_stage("stage2")
    assert src.lookup("P", 10.0) is None  # no stage-2 map stored
