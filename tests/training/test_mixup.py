"""Balanced-MixUp: soft labels, the mixing weight and class-balanced partners."""

from __future__ import annotations

import numpy as np

from training.augment import traditional
from training.mixup import BalancedMixUp


def _mixup(labels, seed=0):
    images = {i: np.full((4, 8, 8), float(i), dtype=np.float32) for i in range(len(labels))}
    return BalancedMixUp(images.__getitem__, labels, num_classes=2, seed=seed), images


def test_soft_labels_sum_to_one_and_weights_lie_strictly_between_0_and_1():
    labels = [0] * 18 + [1] * 2
    mu, images = _mixup(labels)
    lams = []
    for i in range(len(labels)):
        x, y, lam, c = mu.sample(i)
        lams.append(lam)
        assert abs(float(y.sum()) - 1.0) < 1e-6
        assert 0.0 < lam < 1.0
        expected_y = lam * np.eye(2)[labels[i]] + (1 - lam) * np.eye(2)[labels[c]]
        np.testing.assert_allclose(y, expected_y, rtol=1e-6)
        np.testing.assert_allclose(x, lam * images[i] + (1 - lam) * images[c], rtol=1e-6)
    # Beta(2, 2): mean 0.5, sd 0.224
    assert 0.35 < np.mean(lams) < 0.65


def test_partners_are_class_balanced_so_the_rare_class_is_drawn_half_the_time():
    labels = [0] * 95 + [1] * 5
    mu, _ = _mixup(labels, seed=1)
    partners = [mu.sample(i % 100)[3] for i in range(2000)]
    rare = np.mean([labels[c] == 1 for c in partners])
    assert 0.45 < rare < 0.55  # instance sampling would give 0.05


def test_traditional_augmentation_keeps_shape_and_changes_pixels():
    rng = np.random.default_rng(0)
    img = rng.random((4, 32, 32)).astype(np.float32)
    out = traditional(img, rng)
    assert out.shape == img.shape and out.dtype == np.float32
    assert not np.allclose(out, img)
    flipped = traditional(img, np.random.default_rng(0), flip_p=1.0, degrees=0.0, scale=(1.0, 1.0))
    np.testing.assert_allclose(flipped, img[:, :, ::-1], atol=1e-5)
