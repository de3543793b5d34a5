"""The CAM codec and the numpy resampling against torch's bilinear interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from liverview.findings.cam import (
    RoiSquare, cam_for_phase, decode_map, encode_map, grid_to_phase, resize, square_to_grid,
)


def torch_resize(a: np.ndarray, shape) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    return F.interpolate(t, size=tuple(shape), mode="bilinear", align_corners=False)[0, 0].numpy()


@pytest.mark.parametrize("n", [32, 64])
@pytest.mark.parametrize("out", [100, 131, 200, 256, 317, 512])
def test_resize_matches_torch_bilinear(n, out):
    rng = np.random.default_rng(n * 1000 + out)
    a = rng.random((n, n), dtype=np.float32)
    assert np.abs(resize(a, (out, out)) - torch_resize(a, (out, out))).max() < 1 / 255


def test_resize_matches_torch_on_non_square_grids_both_ways():
    rng = np.random.default_rng(1)
    a = rng.random((100, 137), dtype=np.float32)
    for shape in ((512, 260), (50, 64), (100, 137)):
        assert np.abs(resize(a, shape) - torch_resize(a, shape)).max() < 1 / 255


def reference_square_to_grid(cam, square, shape):
    """The engine's former torch implementation."""
    h, w = shape
    out = np.zeros((h, w), dtype=np.float32)
    side, x0, y0 = int(square.side), int(square.x0), int(square.y0)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        up = torch_resize(cam, (side, side))
        out[sy0:sy1, sx0:sx1] = up[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0]
    return out


@pytest.mark.parametrize("square", [
    RoiSquare(40.0, 30.0, 150.0, 64),  # inside
    RoiSquare(-20.0, 300.0, 257.0, 32),  # past the left and bottom edges
    RoiSquare(0.0, 0.0, 512.0, 64),  # the whole grid
    RoiSquare(600.0, 10.0, 100.0, 32),  # off the grid
])
def test_square_to_grid_and_grid_to_phase_match_torch(square):
    rng = np.random.default_rng(3)
    cam = rng.random((square.size, square.size), dtype=np.float32)
    grid = square_to_grid(cam, square, (512, 512))
    ref = reference_square_to_grid(cam, square, (512, 512))
    assert np.abs(grid - ref).max() < 1 / 255
    for phase_shape in ((256, 256), (512, 512), (384, 400)):
        assert np.abs(grid_to_phase(grid, phase_shape) - torch_resize(ref, phase_shape)).max() < 1 / 255


def test_codec_keeps_values_to_one_level_and_is_stable():
    rng = np.random.default_rng(0)
    a = rng.random((32, 32), dtype=np.float32)
    enc = encode_map(a)
    assert enc["shape"] == [32, 32] and enc["encoding"] == "uint8/255,zlib,base64"
    back = decode_map(enc)
    assert back.dtype == np.float32 and np.abs(back - a).max() <= 0.5 / 255 + 1e-7
    assert encode_map(back) == enc
    with pytest.raises(ValueError, match="unknown CAM encoding"):
        decode_map({**enc, "encoding": "png"})


def test_cam_for_phase_rebuilds_on_each_phase_grid_and_refuses_unused_phases():
    square = RoiSquare(10.0, 8.0, 40.0, 32)
    cam = np.linspace(0, 1, 32 * 32, dtype=np.float32).reshape(32, 32)
    comp = {"shape": [64, 80], "phases_used": ["P", "A"],
            "explanations": {"stage1": {"cam": {"grid": "roi", "square": square.as_list(), "input_size": 32,
                                                **encode_map(cam)}}}}
    doc = {"composites": [comp]}
    expected = square_to_grid(decode_map(comp["explanations"]["stage1"]["cam"]), square, (64, 80))
    assert np.array_equal(cam_for_phase(doc, 0, "stage1", "P", (64, 80)), expected)
    on_a = cam_for_phase(doc, 0, "stage1", "A", (128, 160))
    assert on_a.shape == (128, 160) and np.abs(on_a - torch_resize(expected, (128, 160))).max() < 1 / 255
    with pytest.raises(KeyError, match="phase 'V'"):
        cam_for_phase(doc, 0, "stage1", "V", (64, 80))
