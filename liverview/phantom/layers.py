"""Painting the phantom: static tissues as phase-independent weights, moving organs as layers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liverview.phantom.shapes import F32, Region


class StaticCanvas:
    """Tissues that do not move with breathing, stored so any phase is one weighted sum.

    HU(phase) = const + sum over channels of weight[channel] * value[channel][phase]; painting
    a tissue of weight alpha scales everything under it by (1 - alpha) first (partial volume).
    """

    def __init__(self, shape: tuple[int, ...], fill: float, channels: tuple[str, ...]) -> None:
        self.const = np.full(shape, fill, dtype=F32)
        self.weights = {c: np.zeros(shape, dtype=F32) for c in channels}

    def paint(self, where, alpha: np.ndarray, value: float | np.ndarray | None = None, channel: str | None = None) -> None:
        alpha = np.asarray(alpha, dtype=F32)
        if where is Ellipsis and alpha.ndim == self.const.ndim and np.isscalar(value if channel is None else 0.0):
            # only touch the box where the tissue is (alpha may broadcast along slices)
            box = []
            for ax in range(alpha.ndim):
                other = tuple(i for i in range(alpha.ndim) if i != ax)
                nz = np.nonzero(alpha.any(axis=other))[0] if alpha.shape[ax] > 1 else np.array([0])
                if nz.size == 0:
                    return
                box.append(slice(int(nz[0]), int(nz[-1]) + 1) if alpha.shape[ax] > 1 else slice(None))
            alpha = alpha[tuple(s if alpha.shape[i] > 1 else slice(None) for i, s in enumerate(box))]
            where = tuple(box)
        keep = F32(1.0) - alpha
        self.const[where] *= keep
        for name, w in self.weights.items():
            w[where] *= keep
        if channel is not None:
            self.weights[channel][where] += alpha
        else:
            self.const[where] += alpha * F32(value) if np.isscalar(value) else alpha * value

    def compose(self, values: dict[str, float], ks: slice = slice(None)) -> np.ndarray:
        out = self.const[ks].copy()
        for name, w in self.weights.items():
            v = F32(values[name])
            if v != 0:
                out += w[ks] * v
        return out


@dataclass
class Layer:
    """One structure painted over the static tissues in every phase.

    `alpha` is its occupancy on `region` of the master grid as it lies in the reference
    (unshifted) position; `values` its HU per phase, a number or an array over the region.
    Moving layers follow the phase's breathing shift; `clip` (rows, cols over the whole
    grid, static) limits where it may show, taken where the layer lands.
    """

    name: str
    region: Region
    alpha: np.ndarray
    values: dict[str, float | np.ndarray]
    moves: bool = True
    clip: np.ndarray | None = None
    texture: np.ndarray | None = None  # added to the value in every phase (moves with the layer)


def place(layer: Layer, canvas_shape, k0: int, shift: tuple[int, int]):
    """Where a layer lands on a phase canvas that starts at master slice `k0`.

    Returns (dest slices, src slices) or None when it falls outside.
    """
    dk, dr = shift if layer.moves else (0, 0)
    r = layer.region
    spans = []
    for (s, off, n) in ((r.ks, dk - k0, canvas_shape[0]), (r.rs, dr, canvas_shape[1]), (r.cs, 0, canvas_shape[2])):
        d0, d1 = s.start + off, s.stop + off
        c0, c1 = max(d0, 0), min(d1, n)
        if c1 <= c0:
            return None
        spans.append((slice(c0, c1), slice(c0 - d0, c1 - d0)))
    dest = tuple(sp[0] for sp in spans)
    src = tuple(sp[1] for sp in spans)
    return dest, src


def effective_alpha(layer: Layer, dest, src) -> np.ndarray:
    a = layer.alpha[src] if layer.alpha.ndim == 3 and layer.alpha.shape[0] > 1 else layer.alpha[(slice(None),) + src[1:]]
    if layer.clip is not None:
        a = a * layer.clip[dest[1], dest[2]][None]
    return a


def paint_layer(canvas: np.ndarray, layer: Layer, phase: str, k0: int, shift: tuple[int, int]) -> np.ndarray | None:
    """Paint `layer` for `phase` onto a phase canvas; return its effective occupancy there."""
    where = place(layer, canvas.shape, k0, shift)
    if where is None:
        return None
    dest, src = where
    a = effective_alpha(layer, dest, src)
    v = layer.values[phase]
    v = F32(v) if np.isscalar(v) else v[src]
    if layer.texture is not None:
        v = v + layer.texture[src]
    sub = canvas[dest]
    sub += a * (v - sub)
    return a
