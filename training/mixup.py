"""Balanced-MixUp: x = l*x_i + (1-l)*x_c with l ~ Beta(2, 2), x_i by instance, x_c by class-balanced sampling."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class ClassBalancedSampler:
    """Draws sample indices so that every class present is equally likely, then uniformly within it."""

    def __init__(self, labels: Sequence[int], rng: np.random.Generator) -> None:
        labels = np.asarray(labels)
        self.by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        if not self.by_class:
            raise ValueError("class-balanced sampling needs at least one sample")
        self.rng = rng

    def draw(self) -> int:
        members = self.by_class[self.rng.integers(len(self.by_class))]
        return int(members[self.rng.integers(len(members))])


def soft_label(label: int, num_classes: int) -> np.ndarray:
    y = np.zeros(num_classes, dtype=np.float32)
    y[label] = 1.0
    return y


def mix(x_i: np.ndarray, y_i: np.ndarray, x_c: np.ndarray, y_c: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """The MixUp of two samples with their (soft) labels."""
    return (lam * x_i + (1.0 - lam) * x_c).astype(np.float32), (lam * y_i + (1.0 - lam) * y_c).astype(np.float32)


class BalancedMixUp:
    """Wraps a sample getter: item i is sample i mixed with a class-balanced partner.

    `get(i)` returns the (C, H, W) input of sample i; `labels[i]` its hard label. Each call
    draws a fresh partner and a fresh l ~ Beta(alpha, beta) (the paper: Beta(2, 2)).
    """

    def __init__(
        self,
        get: Callable[[int], np.ndarray],
        labels: Sequence[int],
        num_classes: int,
        alpha: float = 2.0,
        beta: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.get = get
        self.labels = np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.alpha, self.beta = alpha, beta
        self.rng = np.random.default_rng(seed)
        self.partners = ClassBalancedSampler(self.labels, self.rng)

    def __len__(self) -> int:
        return len(self.labels)

    def sample(self, i: int) -> tuple[np.ndarray, np.ndarray, float, int]:
        """(mixed input, soft label, l, partner index) for instance i."""
        c = self.partners.draw()
        lam = float(self.rng.beta(self.alpha, self.beta))
        x, y = mix(
            self.get(i),
            soft_label(int(self.labels[i]), self.num_classes),
            self.get(c),
            soft_label(int(self.labels[c]), self.num_classes),
            lam,
        )
        return x, y, lam, c
