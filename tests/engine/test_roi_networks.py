"""ROI masking/cropping and the 4-channel network builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from liverview.engine import networks
from liverview.engine.roi import classifier_input, mask_outside_box, roi_square


def test_mask_zeroes_outside_box_plus_margin_only():
    img = np.ones((4, 50, 60), dtype=np.float32)
    out = mask_outside_box(img, (20, 10, 40, 30), margin=0.25)  # +5 px each side in x and y
    kept = np.argwhere(out[0] > 0)
    assert kept[:, 0].min() == 5 and kept[:, 0].max() == 34  # rows 5..34 (centres 5.5..34.5 inside [5, 35])
    assert kept[:, 1].min() == 15 and kept[:, 1].max() == 44
    assert out[:, 5:35, 15:45].min() == 1.0
    assert out.sum() == 4 * 30 * 30
    assert img.min() == 1.0  # input untouched


def test_classifier_input_crops_the_box_square_and_normalises():
    img = np.zeros((4, 100, 100), dtype=np.float32)
    img[:, 40:60, 30:50] = 1.0
    img[:, 0:5, 0:5] = 1.0  # outside the box: must not reach the classifier
    x, sq = classifier_input(img, (30, 40, 50, 60), 0.0, 32)
    assert x.shape == (4, 32, 32)
    assert (sq.x0, sq.y0, sq.side) == (30.0, 40.0, 20.0)
    assert torch.allclose(x, torch.ones_like(x), atol=1e-5)
    xn, _ = classifier_input(img, (30, 40, 50, 60), 0.0, 32, mean=[0.5] * 4, std=[0.25] * 4)
    assert torch.allclose(xn, torch.full_like(xn, 2.0), atol=1e-4)
    # the square maps back onto the box
    assert sq.to_composite(0, 0) == (30.0, 40.0) and sq.to_composite(32, 32) == (50.0, 60.0)


def test_roi_square_without_box_covers_the_image():
    sq = roi_square(None, 0.1, (60, 80), 64)
    assert sq.side == 80 and sq.x0 == 0 and sq.y0 == -10


@pytest.mark.parametrize("backbone", networks.BACKBONES)
def test_four_channel_classifiers_and_cam_layers(backbone):
    torch.manual_seed(0)
    net = networks.build_classifier(backbone, num_classes=2, in_channels=4, input_size=64)
    net.eval()
    out = net(torch.rand(2, 4, 64, 64))
    assert out.shape == (2, 2)
    layer = networks.cam_target_layer(net, backbone, networks.cam_target_layer_name(backbone, net))
    assert isinstance(layer, torch.nn.Module)
    reshape = networks.cam_reshape_transform(net, backbone)
    assert (reshape is not None) == (backbone == "vit")


def test_imagenet_weights_from_local_file_seed_extra_channel(tmp_path):
    torch.manual_seed(0)
    rgb = networks.build_classifier("resnet18", num_classes=1000, in_channels=3, input_size=64)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(rgb.state_dict(), path)
    net = networks.build_classifier("resnet18", 2, 4, 64, imagenet_weights=str(path))
    w_rgb, w4 = rgb.conv1.weight.detach(), net.conv1.weight.detach()
    assert w4.shape[1] == 4
    assert torch.allclose(w4[:, :3], w_rgb * 0.75)
    assert torch.allclose(w4[:, 3], w_rgb.mean(1) * 0.75)
    assert torch.equal(net.layer1[0].conv1.weight, rgb.layer1[0].conv1.weight)


def test_arch_args_unknown_key_is_refused():
    with pytest.raises(ValueError, match="unknown key"):
        networks.build_classifier("resnet18", arch_args={"width": 3})
