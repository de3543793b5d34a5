"""The engine's own ResNet equals torchvision's: same parameter names, same seeded initial weights, same outputs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torchvision.models import resnet as tv

from liverview.engine import resnet


@pytest.mark.parametrize("layers,zero_init", [([2, 2, 2, 2], False), ([1, 1, 1, 1], True)])
def test_a_seeded_build_draws_the_same_weights_and_computes_the_same_outputs(layers, zero_init):
    torch.manual_seed(7)
    ours = resnet.ResNet(layers, num_classes=3, zero_init_residual=zero_init)
    torch.manual_seed(7)
    theirs = tv.ResNet(tv.BasicBlock, layers, num_classes=3, zero_init_residual=zero_init)
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    x = torch.randn(2, 3, 64, 64)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        assert torch.equal(ours(x), theirs(x))
    ours.train(), theirs.train()
    assert torch.equal(ours(x), theirs(x))  # batch-norm statistics in training mode too


def test_a_torchvision_state_dict_loads_unchanged():
    theirs = tv.ResNet(tv.BasicBlock, [2, 2, 2, 2], num_classes=2)
    ours = resnet.ResNet([2, 2, 2, 2], num_classes=2)
    ours.load_state_dict(theirs.state_dict(), strict=True)


def test_loading_a_resnet_bundle_does_not_import_torchvision(tiny_bundle):
    code = ("import sys; from liverview.engine.analyze import Engine; Engine(sys.argv[1]); "
            "assert 'torchvision' not in sys.modules, 'torchvision imported'")
    subprocess.run([sys.executable, "-c", code, str(tiny_bundle)], check=True, timeout=300)
