"""Phantom geometry: the voxel grid, soft (partial-volume) occupancy of shapes, smooth random fields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

F32 = np.float32
EDGE_MM = 0.9  # narrowest edge ramp: the scanner's point spread blurs edges even on fine grids


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid in anatomical mm; arrays on it are indexed [slice, row, col].

    x grows with the column (patient left), y with the row (posterior), z with the slice
    (superior), the DICOM LPS axes with an axial orientation.
    """

    nx: int
    ny: int
    nz: int
    dx: float
    dy: float
    dz: float
    x0: float
    y0: float
    z0: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.nz, self.ny, self.nx)

    @property
    def x(self) -> np.ndarray:
        return self.x0 + self.dx * np.arange(self.nx)

    @property
    def y(self) -> np.ndarray:
        return self.y0 + self.dy * np.arange(self.ny)

    @property
    def z(self) -> np.ndarray:
        return self.z0 + self.dz * np.arange(self.nz)

    def region(self, lo, hi, margin: int = 2) -> "Region":
        """The sub-grid covering the box lo..hi (x, y, z mm) plus `margin` voxels."""

        def span(v0: float, d: float, n: int, a: float, b: float) -> slice:
            i0 = int(np.floor((a - v0) / d)) - margin
            i1 = int(np.ceil((b - v0) / d)) + margin + 1
            i0, i1 = max(i0, 0), min(i1, n)
            return slice(i0, max(i0, i1))

        cs = span(self.x0, self.dx, self.nx, lo[0], hi[0])
        rs = span(self.y0, self.dy, self.ny, lo[1], hi[1])
        ks = span(self.z0, self.dz, self.nz, lo[2], hi[2])
        return Region(self, ks, rs, cs)

    def full(self) -> "Region":
        return Region(self, slice(0, self.nz), slice(0, self.ny), slice(0, self.nx))


@dataclass(frozen=True)
class Region:
    """A box of voxels of a grid with its open coordinate vectors (mm)."""

    grid: Grid
    ks: slice
    rs: slice
    cs: slice

    @property
    def slices(self) -> tuple[slice, slice, slice]:
        return (self.ks, self.rs, self.cs)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.ks.stop - self.ks.start, self.rs.stop - self.rs.start, self.cs.stop - self.cs.start)

    @property
    def empty(self) -> bool:
        return min(self.shape) <= 0

    @property
    def X(self) -> np.ndarray:
        return self.grid.x[self.cs].astype(F32)[None, None, :]

    @property
    def Y(self) -> np.ndarray:
        return self.grid.y[self.rs].astype(F32)[None, :, None]

    @property
    def Z(self) -> np.ndarray:
        return self.grid.z[self.ks].astype(F32)[:, None, None]


def soft(d: np.ndarray, w) -> np.ndarray:
    """Fraction of a voxel of extent `w` (mm, along the normal) inside a surface at signed distance `d`."""
    return np.clip(F32(0.5) - d / w, F32(0.0), F32(1.0)).astype(F32, copy=False)


def star_alpha(px, py, pz, s, grid: Grid, planar: bool = False) -> np.ndarray:
    """Occupancy of a star-shaped solid given offsets from its centre and its normalised radius `s`.

    `s` is < 1 inside, 1 on the surface; the distance to the surface is taken along the ray
    from the centre, and the voxel's extent along that ray sets the partial-volume ramp, so
    thick slices blur top and bottom surfaces more than in-plane edges.
    """
    if planar:
        r2 = px * px + py * py
        w2 = (px * grid.dx) ** 2 + (py * grid.dy) ** 2
    else:
        r2 = px * px + py * py + pz * pz
        w2 = (px * grid.dx) ** 2 + (py * grid.dy) ** 2 + (pz * grid.dz) ** 2
    r = np.sqrt(r2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = r * (F32(1.0) - F32(1.0) / s)
        w = np.sqrt(w2) / r
    d = np.where(s > 0, d, F32(-1e6))
    w = np.where(r > 0, w, F32(min(grid.dx, grid.dz)))
    return soft(d.astype(F32, copy=False), np.maximum(w, F32(EDGE_MM)).astype(F32, copy=False))


def rotation(rz: float = 0.0, ry: float = 0.0, rx: float = 0.0) -> np.ndarray:
    """Rotation matrix (columns = the body's axes in patient space) from angles in radians."""
    cz, sz = np.cos(rz), np.sin(rz)
    cy, sy = np.cos(ry), np.sin(ry)
    cx, sx = np.cos(rx), np.sin(rx)
    mz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    my = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    mx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    return mz @ my @ mx


def local_coords(X, Y, Z, centre, rot: np.ndarray | None):
    """Offsets from `centre` (patient axes) and the same offsets in the body's own axes."""
    px = X - F32(centre[0])
    py = Y - F32(centre[1])
    pz = Z - F32(centre[2])
    if rot is None:
        return (px, py, pz), (px, py, pz)
    m = rot.astype(F32)
    # local = R^T p
    lx = m[0, 0] * px + m[1, 0] * py + m[2, 0] * pz
    ly = m[0, 1] * px + m[1, 1] * py + m[2, 1] * pz
    lz = m[0, 2] * px + m[1, 2] * py + m[2, 2] * pz
    return (px, py, pz), (lx, ly, lz)


def ellipsoid_s(X, Y, Z, centre, radii, rot=None):
    """(offsets, normalised radius) of an ellipsoid; s < 1 inside."""
    p, (lx, ly, lz) = local_coords(X, Y, Z, centre, rot)
    s = np.sqrt((lx / F32(radii[0])) ** 2 + (ly / F32(radii[1])) ** 2 + (lz / F32(radii[2])) ** 2)
    return p, s


def ellipsoid(region: Region, centre, radii, rot=None) -> np.ndarray:
    (px, py, pz), s = ellipsoid_s(region.X, region.Y, region.Z, centre, radii, rot)
    px, py, pz = np.broadcast_arrays(px, py, pz)
    return star_alpha(px, py, pz, np.broadcast_to(s, px.shape), region.grid)


def ellipse2d(grid: Grid, centre, radii, posterior_radius: float | None = None, power: float = 2.0) -> np.ndarray:
    """Soft occupancy (ny, nx) of an axial (super-)ellipse; `posterior_radius` flattens the back."""
    x = grid.x.astype(F32)[None, :] - F32(centre[0])
    y = grid.y.astype(F32)[:, None] - F32(centre[1])
    ry = np.where(y > 0, F32(posterior_radius or radii[1]), F32(radii[1]))
    if power == 2.0:
        s = np.sqrt((x / F32(radii[0])) ** 2 + (y / ry) ** 2)
    else:
        s = ((np.abs(x) / F32(radii[0])) ** power + (np.abs(y) / ry) ** power) ** (1.0 / power)
    x, y = np.broadcast_arrays(x, y)
    return star_alpha(x, y, None, s.astype(F32), grid, planar=True)


def capsule(region: Region, a, b, radius: float) -> np.ndarray:
    """Soft occupancy of a tube of `radius` mm around the segment a-b (mm)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ab = b - a
    L2 = float(ab @ ab) or 1e-9
    px, py, pz = region.X - F32(a[0]), region.Y - F32(a[1]), region.Z - F32(a[2])
    t = np.clip((px * F32(ab[0]) + py * F32(ab[1]) + pz * F32(ab[2])) / F32(L2), 0.0, 1.0)
    qx, qy, qz = px - t * F32(ab[0]), py - t * F32(ab[1]), pz - t * F32(ab[2])
    d = np.sqrt(qx * qx + qy * qy + qz * qz)
    g = region.grid
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.sqrt((qx * g.dx) ** 2 + (qy * g.dy) ** 2 + (qz * g.dz) ** 2) / d
    w = np.where(d > 0, w, F32(g.dx))
    return soft((d - F32(radius)).astype(F32), np.maximum(w, F32(EDGE_MM)).astype(F32))


def capsule_box(a, b, radius: float):
    lo = np.minimum(a, b) - radius
    hi = np.maximum(a, b) + radius
    return lo, hi


def smooth_noise(rng: np.random.Generator, shape, sigma: float = 1.0) -> np.ndarray:
    """Unit-variance Gaussian random field on a coarse grid, smoothed over `sigma` cells."""
    n = rng.standard_normal(shape).astype(F32)
    if sigma > 0:
        n = ndimage.gaussian_filter(n, sigma, mode="wrap")
    sd = float(n.std()) or 1.0
    return (n / F32(sd)).astype(F32)


def _taps(n_out: int, start: float, step: float, n_in: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear interpolation at start + i * step (input-index units, clamped): the lower input
    index of every output point and the weight of the upper one."""
    t = np.clip(start + step * np.arange(n_out), 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(t).astype(int), max(n_in - 2, 0))
    return i0, (t - i0).astype(F32)


def upsample(coarse: np.ndarray, cell_mm: float, origin_mm, region: Region) -> np.ndarray:
    """Sample a coarse field (cells of `cell_mm`, first cell centre at `origin_mm` (x, y, z))
    at the voxels of `region` with trilinear interpolation, one axis at a time (much faster
    than point-wise interpolation on large grids)."""
    g = region.grid
    nz, ny, nx = region.shape
    c = np.asarray(coarse, dtype=F32)
    if min(c.shape) < 2:
        c = np.pad(c, [(0, 1 if n < 2 else 0) for n in c.shape], mode="edge")
    ix, fx = _taps(nx, (g.x0 + region.cs.start * g.dx - origin_mm[0]) / cell_mm, g.dx / cell_mm, c.shape[2])
    iy, fy = _taps(ny, (g.y0 + region.rs.start * g.dy - origin_mm[1]) / cell_mm, g.dy / cell_mm, c.shape[1])
    iz, fz = _taps(nz, (g.z0 + region.ks.start * g.dz - origin_mm[2]) / cell_mm, g.dz / cell_mm, c.shape[0])
    a = c[:, :, ix] * (1 - fx) + c[:, :, ix + 1] * fx
    a = a[:, iy, :] * (1 - fy)[:, None] + a[:, iy + 1, :] * fy[:, None]
    out = np.empty((nz, ny, nx), dtype=F32)
    for k in range(nz):  # each output slice mixes two input slices
        np.multiply(a[iz[k]], 1 - fz[k], out=out[k])
        out[k] += a[iz[k] + 1] * fz[k]
    return out


def coarse_field(rng: np.random.Generator, region: Region, cell_mm: float, sigma: float = 1.0) -> np.ndarray:
    """A smooth unit-variance random field sampled on `region` (features about `cell_mm` wide)."""
    g = region.grid
    lo = np.array([g.x0 + region.cs.start * g.dx, g.y0 + region.rs.start * g.dy, g.z0 + region.ks.start * g.dz])
    ext = np.array([region.shape[2] * g.dx, region.shape[1] * g.dy, region.shape[0] * g.dz])
    n = np.ceil(ext / cell_mm).astype(int) + 2
    coarse = smooth_noise(rng, (n[2], n[1], n[0]), sigma)
    return upsample(coarse, cell_mm, lo, region)
