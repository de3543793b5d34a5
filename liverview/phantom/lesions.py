"""Liver lesions of the phantom: shape, placement and per-phase enhancement of each member type.

Every member follows the pattern docs/method.md (section 5) gives it, relative to the case's own
liver and blood-pool values, so classes differ by kinetics, shape and texture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from liverview.phantom.anatomy import Anatomy
from liverview.phantom.layers import Layer
from liverview.phantom.priors import P_BLEED, P_CALCIFICATION
from liverview.phantom.shapes import F32, Grid, Region, local_coords, rotation, soft, star_alpha
from liverview.study.phases import PHASES

# Diameter range (mm) of each member before it is fitted into the liver.
DIAMETER = {
    "HH": (12, 50),
    "IHH": (30, 80),
    "FNH": (20, 55),
    "HMH": (45, 110),
    "HB": (40, 110),
    "UESL": (60, 130),
    "HCC": (30, 80),
}
LOBULATION = {"HH": 0.08, "IHH": 0.10, "FNH": 0.10, "HMH": 0.12, "HB": 0.18, "UESL": 0.12, "HCC": 0.05}
# Enhancement variants: (report label, probability).
VARIANTS = {
    "HH": (("peripheral early then centripetal", 0.45), ("centripetal", 0.10),
           ("peripheral early then centripetal with non-enhancing core", 0.20),
           ("delayed centripetal only", 0.15), ("obvious enhancement", 0.10)),
    "IHH": (("peripheral early then centripetal with non-enhancing core", 0.50), ("obvious enhancement", 0.25),
            ("peripheral early without delayed fill", 0.25)),
    "FNH": (("central stellate scar", 0.70), ("iso to liver in venous/delayed", 0.30)),
    "HMH": (("cystic multilocular septated", 0.55), ("septal enhancement", 0.25), ("no enhancement", 0.20)),
    "HB": (("heterogeneous arterial enhancement with delayed washout", 0.70), ("slight enhancement", 0.15),
           ("internal nodular enhancement without rim", 0.15)),
    "UESL": (("progressive enhancement", 0.40), ("septal enhancement", 0.40), ("cystic multilocular septated", 0.20)),
    "HCC": (("heterogeneous arterial enhancement with delayed washout", 0.65), ("obvious enhancement", 0.35)),
}


@dataclass
class LesionSpec:
    """What is drawn for one lesion: member, look, pose and the findings it carries."""

    member: str
    pattern: str
    centre: np.ndarray
    radii: np.ndarray
    rot: np.ndarray
    calcification: bool
    bleed: bool
    lob_dirs: np.ndarray
    lob_freq: np.ndarray
    lob_phase: np.ndarray
    lob_amp: np.ndarray
    seed: int
    params: dict = field(default_factory=dict)

    @property
    def radius(self) -> float:
        return float(np.cbrt(np.prod(self.radii)))

    @property
    def extent(self) -> float:
        return float(self.radii.max() * (1.0 + np.abs(self.lob_amp).sum()) + 2.0)


def _fibonacci(n: int) -> np.ndarray:
    i = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * i / n)
    th = math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(th) * np.sin(phi), np.sin(th) * np.sin(phi), np.cos(phi)], axis=1)


def _unit(rng, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def draw_lesion(rng: np.random.Generator, member: str, anat: Anatomy, grid: Grid) -> LesionSpec:
    """Draw size, shape and variant, and place the lesion inside the liver."""
    labels, probs = zip(*VARIANTS[member])
    pattern = str(labels[rng.choice(len(labels), p=np.asarray(probs) / sum(probs))])
    lo, hi = DIAMETER[member]
    # small children have small livers: scale the size range with the body
    scale = min(1.0, anat.W / 230.0) ** 0.7
    d = rng.uniform(lo, hi) * scale
    d = max(d, 10.0, 4.2 * grid.dz)
    radii = 0.5 * d * rng.uniform(0.8, 1.2, 3)
    radii *= (0.5 * d) / np.cbrt(np.prod(radii))
    rot = rotation(rng.uniform(0, 2 * math.pi), rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4))
    k = 4
    amp = LOBULATION[member] * rng.uniform(0.5, 1.2)
    spec = LesionSpec(
        member=member,
        pattern=pattern,
        centre=np.zeros(3),
        radii=radii,
        rot=rot,
        calcification=bool(rng.random() < P_CALCIFICATION[member]),
        bleed=bool(rng.random() < P_BLEED[member]),
        lob_dirs=_unit(rng, k),
        lob_freq=rng.uniform(2.0, 5.0, k),
        lob_phase=rng.uniform(0, 2 * math.pi, k),
        lob_amp=rng.dirichlet(np.ones(k)) * amp,
        seed=int(rng.integers(2**31)),
    )
    # place: centre uniformly in the liver, most of the lesion's surface inside it
    dirs = _fibonacci(48)
    (cr, rr, _), (cl, rl, _) = anat.liver_r, anat.liver_l
    box_lo = np.minimum(np.array(cr) - rr, np.array(cl) - rl)
    box_hi = np.maximum(np.array(cr) + rr, np.array(cl) + rl)
    best = None
    min_z_extent = 1.6 * grid.dz
    for attempt in range(400):
        if attempt and attempt % 40 == 0:
            shrunk = spec.radii * 0.88
            zext = float(np.sqrt(((spec.rot[2] * shrunk) ** 2).sum()))
            if zext >= min_z_extent and shrunk.min() >= 4.0:
                spec.radii = shrunk
        c = rng.uniform(box_lo, box_hi)
        if not anat.in_liver(*(np.array([v]) for v in c))[0]:
            continue
        pts = c + (dirs * spec.radii * 0.85) @ spec.rot.T
        frac = float(anat.in_liver(pts[:, 0], pts[:, 1], pts[:, 2]).mean())
        if best is None or frac > best[0]:
            best = (frac, c)
        if frac >= 0.94:
            break
    spec.centre = np.asarray(best[1], dtype=np.float64)
    return spec


class _Fields:
    """Coordinates of the lesion's voxels in its own normalised frame, and texture samplers."""

    def __init__(self, spec: LesionSpec, region: Region) -> None:
        g = region.grid
        (px, py, pz), (lx, ly, lz) = local_coords(region.X, region.Y, region.Z, spec.centre, spec.rot)
        px, py, pz = np.broadcast_arrays(px, py, pz)
        lx, ly, lz = np.broadcast_arrays(lx, ly, lz)
        ux, uy, uz = (lx / F32(spec.radii[0]), ly / F32(spec.radii[1]), lz / F32(spec.radii[2]))
        rho = np.sqrt(ux * ux + uy * uy + uz * uz)
        safe = np.maximum(rho, F32(1e-6))
        dx, dy, dz = ux / safe, uy / safe, uz / safe
        lob = np.zeros_like(rho)
        for v, w, ph, a in zip(spec.lob_dirs, spec.lob_freq, spec.lob_phase, spec.lob_amp):
            lob += F32(a) * np.cos(F32(w) * (dx * F32(v[0]) + dy * F32(v[1]) + dz * F32(v[2])) + F32(ph))
        self.s = (rho / (F32(1.0) + lob)).astype(F32)
        self.alpha = star_alpha(px, py, pz, self.s, g)
        # de-lobulated point: direction times normalised radius, a unit ball inside
        self.q = np.stack([dx * self.s, dy * self.s, dz * self.s]).astype(F32)
        self.depth = np.clip(F32(1.0) - self.s, 0, 1)
        self.R = spec.radius
        self.w = F32(max(g.dx, g.dy) / self.R)  # one voxel in normalised units
        self._rng = np.random.default_rng(spec.seed)
        self._inside = self.alpha > 0

    def noise(self, cell: float, sigma: float = 1.0) -> np.ndarray:
        """Smooth unit-variance texture with features about `cell` (in lesion radii) wide."""
        n = int(math.ceil(2.6 / cell)) + 2
        coarse = ndimage.gaussian_filter(self._rng.standard_normal((n, n, n)).astype(F32), sigma, mode="wrap")
        coarse /= float(coarse.std()) or 1.0
        idx = (self.q + F32(1.3)) / F32(2.6) * F32(n - 1)
        return ndimage.map_coordinates(coarse, idx, order=1, mode="nearest", output=F32)

    def quantile_mask(self, field_: np.ndarray, fraction: float, where: np.ndarray | None = None) -> np.ndarray:
        """Soft mask of the top `fraction` of `field_` inside the lesion (and `where`)."""
        sel = self._inside if where is None else (self._inside & (where > 0.5))
        if not sel.any() or fraction <= 0:
            return np.zeros_like(field_)
        thr = float(np.quantile(field_[sel], 1.0 - fraction))
        m = np.clip((field_ - F32(thr)) * F32(4.0) + F32(0.5), 0, 1)
        return m if where is None else m * where

    def voronoi(self, n: int, thickness_mm: float):
        """Cells of `n` random seeds: (soft septum mask of `thickness_mm`, nearest seed index)."""
        seeds = _unit(self._rng, n) * np.cbrt(self._rng.uniform(0.05, 0.9, (n, 1)))
        d1 = np.full(self.s.shape, np.inf, dtype=F32)
        d2 = np.full(self.s.shape, np.inf, dtype=F32)
        idx = np.zeros(self.s.shape, dtype=np.int16)
        # warp the space a little so the walls curve like real septa
        q = [self.q[i] + F32(0.08) * self.noise(0.45) for i in range(3)]
        for i, c in enumerate(seeds.astype(F32)):
            d = np.sqrt((q[0] - c[0]) ** 2 + (q[1] - c[1]) ** 2 + (q[2] - c[2]) ** 2)
            closer = d < d1
            d2 = np.where(closer, d1, np.minimum(d2, d))
            idx = np.where(closer, np.int16(i), idx)
            d1 = np.where(closer, d, d1)
        half = F32(0.5 * thickness_mm / self.R)
        septum = soft((d2 - d1) * F32(0.5) - half, self.w)
        return septum, idx

    def rim(self, thickness_mm: float) -> np.ndarray:
        return soft(self.depth - F32(thickness_mm / self.R), self.w)

    def within(self, radius: float) -> np.ndarray:
        """Soft mask of the central part s < radius."""
        return soft(self.s - F32(radius), self.w)


def _mix(base: np.ndarray, alpha: np.ndarray, value) -> np.ndarray:
    return base + alpha * (value - base)


def _const(f: _Fields, v: float) -> np.ndarray:
    return np.full(f.s.shape, v, dtype=F32)


def _blood_pool(T, rng, a_lo=0.78, a_hi=0.95) -> dict[str, float]:
    return {
        "P": T["aorta"]["P"],
        "A": T["aorta"]["A"] * rng.uniform(a_lo, a_hi),
        "V": T["portal_vein"]["V"] * rng.uniform(0.85, 1.0),
        "D": max(T["aorta"]["D"] * rng.uniform(1.0, 1.15), T["liver"]["D"] * 1.05),
    }


def _nodular_fill(f: _Fields, rng, growth: dict, pool: dict, unenh: dict, core: float = 0.0, rim: dict | None = None):
    """Peripheral nodules that grow towards the centre phase by phase (hemangioma pattern)."""
    n = int(rng.integers(4, 10))
    centres = _unit(rng, n) * 0.85
    rn = float(rng.uniform(0.16, 0.26))
    dn = np.full(f.s.shape, np.inf, dtype=F32)
    for c in centres.astype(F32):
        dn = np.minimum(dn, np.sqrt((f.q[0] - c[0]) ** 2 + (f.q[1] - c[1]) ** 2 + (f.q[2] - c[2]) ** 2))
    tex = f.noise(0.3)
    out = {}
    for p in PHASES:
        base = unenh[p] + F32(3.0) * tex
        g = growth.get(p)
        if p == "P" or g is None:
            out[p] = base.astype(F32)
            continue
        enh = soft(dn - F32(rn + g), F32(1.5) * f.w)
        if rim and rim.get(p):
            enh = np.maximum(enh, f.rim(rim[p] * f.R))
        if core > 0:
            enh = enh * (F32(1.0) - f.within(core))
        out[p] = _mix(base, enh, F32(pool[p])).astype(F32)
    return out


def _values(spec: LesionSpec, f: _Fields, T, rng: np.random.Generator) -> dict[str, np.ndarray]:
    m, pat = spec.member, spec.pattern
    L = T["liver"]
    u = rng.uniform
    prm = spec.params
    if m == "HH":
        p0 = 40.0 * u(0.85, 1.15)
        unenh = {"P": p0, "A": p0 + 3, "V": p0 + 8, "D": p0 + 14}
        pool = _blood_pool(T, rng)
        if pat == "delayed centripetal only":
            growth = {"A": None, "V": 0.0, "D": u(0.35, 0.55)}
        elif pat == "obvious enhancement":
            growth = {"A": 2.0, "V": 2.0, "D": 2.0}
        else:
            growth = {"A": 0.0, "V": u(0.3, 0.5), "D": u(0.75, 0.95)}
        core = u(0.25, 0.4) if "non-enhancing core" in pat else 0.0
        prm.update(kind="nodular_fill", core=core)
        vals = _nodular_fill(f, rng, growth, pool, unenh, core)
    elif m == "IHH":
        p0 = 42.0 * u(0.85, 1.15)
        unenh = {"P": p0, "A": p0 + 3, "V": p0 + 6, "D": p0 + 10}
        pool = _blood_pool(T, rng, 0.7, 0.9)
        if pat == "obvious enhancement":
            growth, core, rim = {"A": 2.0, "V": 2.0, "D": 2.0}, u(0.1, 0.18), None
        elif pat == "peripheral early without delayed fill":
            growth, core, rim = {"A": 0.05, "V": 0.1, "D": 0.12}, u(0.4, 0.5), {"A": 0.2, "V": 0.2, "D": 0.2}
        else:
            growth, core, rim = {"A": 0.05, "V": u(0.35, 0.5), "D": u(0.7, 0.85)}, u(0.3, 0.45), {"A": 0.18, "V": 0.2, "D": 0.2}
        prm.update(kind="nodular_fill", core=core)
        vals = _nodular_fill(f, rng, growth, pool, unenh, core, rim)
        # the core holds old haemorrhage / fibrosis
        corev = 30.0 * u(0.85, 1.15)
        if core > 0:
            cm = f.within(core)
            vals = {p: _mix(v, cm, F32(corev)) for p, v in vals.items()}
    elif m == "FNH":
        les = {"P": L["P"] * u(0.88, 0.97), "A": L["A"] + u(50, 90), "V": L["V"] * u(0.96, 1.05), "D": L["D"] * u(0.96, 1.04)}
        scar_v = {"P": L["P"] - u(12, 22)}
        scar_v.update(A=scar_v["P"] + 5, V=L["V"] - u(25, 40), D=L["D"] + u(12, 25))
        tex = f.noise(0.35)
        if pat == "central stellate scar":
            scar = f.within(u(0.10, 0.16))
            for v in _unit(rng, int(rng.integers(4, 8))):
                v = v * np.array([1.0, 1.0, 0.35])
                v = (v / np.linalg.norm(v)).astype(F32)
                length = F32(u(0.5, 0.75))
                width = F32(max(u(0.04, 0.07), 0.8 * float(f.w)))
                proj = f.q[0] * v[0] + f.q[1] * v[1] + f.q[2] * v[2]
                perp = np.sqrt(np.maximum((f.q[0] - proj * v[0]) ** 2 + (f.q[1] - proj * v[1]) ** 2 + (f.q[2] - proj * v[2]) ** 2, 0))
                taper = width * np.clip(F32(1.0) - proj / length, 0, 1)
                spoke = soft(perp - taper, f.w) * (proj > 0)
                scar = np.maximum(scar, spoke)
        else:
            scar = f.within(0.04)
        vals = {p: _mix(F32(les[p]) + F32(3.0) * tex, scar, F32(scar_v[p])).astype(F32) for p in PHASES}
    elif m == "HMH":
        fluid = u(10, 20)
        if pat == "no enhancement":
            sep_v = {"P": 36.0, "A": 39.0, "V": 42.0, "D": 45.0}
            thick = u(1.0, 1.8)
        else:
            sep_v = {"P": 38.0, "A": 50.0, "V": 65.0, "D": 80.0}
            thick = u(1.8, 3.0) if pat == "septal enhancement" else u(1.2, 2.2)
        sep_v = {p: v * u(0.9, 1.1) for p, v in sep_v.items()}
        sep, idx = f.voronoi(int(rng.integers(6, 16)), thick)
        n_cells = int(idx.max()) + 1
        solid_cells = rng.random(n_cells) < 0.15
        solid = solid_cells[idx].astype(F32)
        wall = np.maximum(np.maximum(sep, f.rim(thick)), solid)
        vals = {p: _mix(_const(f, fluid), wall, F32(sep_v[p])) for p in PHASES}
    elif m == "HB":
        solid = {"P": L["P"] - u(8, 18), "A": L["A"] + u(15, 40), "V": L["V"] - u(20, 40), "D": L["D"] - u(15, 30)}
        boost = u(15, 35)
        if pat == "slight enhancement":
            solid["A"] = L["A"] + u(-5, 10)
            boost = u(0, 8)
        amp = {"P": 4.0, "A": u(8, 15), "V": 6.0, "D": 5.0}
        tex = f.noise(0.25)
        sep, idx = f.voronoi(int(rng.integers(5, 11)), u(1.0, 2.0))
        nodules = np.zeros_like(f.s)
        if pat == "internal nodular enhancement without rim":
            bright = rng.random(int(idx.max()) + 1) < 0.4
            nodules = bright[idx].astype(F32) * (F32(1.0) - f.rim(0.12 * f.R))
        necro = f.quantile_mask(f.noise(0.3), u(0.08, 0.25), where=soft(F32(0.25) - f.depth, f.w))
        necro_v = u(15, 25)
        vals = {}
        for p in PHASES:
            v = F32(solid[p]) + F32(amp[p]) * tex
            if p == "A":
                v = v + F32(boost) * f.depth + F32(40.0) * nodules
            v = _mix(v, sep, F32(solid[p] + {"P": 0, "A": -15, "V": -5, "D": 10}[p]))
            vals[p] = _mix(v, necro, F32(necro_v))
    elif m == "UESL":
        body = u(20, 30)
        body_v = {"P": body, "A": body + u(2, 5), "V": body + u(5, 10), "D": body + u(8, 15)}
        rim_v = {"P": u(35, 45), "A": u(50, 65), "V": u(65, 85), "D": u(85, 110)}
        n_cells = int(rng.integers(8, 14)) if pat == "cystic multilocular septated" else int(rng.integers(4, 9))
        sep, _ = f.voronoi(n_cells, u(1.5, 3.5))
        rim = f.rim(u(2.0, 4.0))
        tex = f.noise(0.3)
        vals = {p: _mix(_mix(F32(body_v[p]) + F32(4.0) * tex, sep, F32(0.9 * rim_v[p])), rim, F32(rim_v[p])) for p in PHASES}
    elif m == "HCC":
        les = {"P": L["P"] - u(5, 15), "A": L["A"] + u(35, 70), "V": L["V"] - u(15, 30), "D": L["D"] - u(15, 30)}
        cap_v = {"P": L["P"] - 3, "A": L["A"] - 5, "V": L["V"], "D": L["D"] + u(15, 30)}
        amp = {"P": 4.0, "A": 12.0 if pat != "obvious enhancement" else 4.0, "V": 5.0, "D": 5.0}
        tex = f.noise(0.2)
        cap = f.rim(u(1.5, 3.0))
        vals = {p: _mix(F32(les[p]) + F32(amp[p]) * tex, cap, F32(cap_v[p])) for p in PHASES}
        if rng.random() < 0.3:
            necro = f.quantile_mask(f.noise(0.3), u(0.05, 0.15), where=soft(F32(0.35) - f.depth, f.w))
            vals = {p: _mix(v, necro, F32(18.0)) for p, v in vals.items()}
    else:
        raise ValueError(f"unknown lesion member {m!r}")

    if spec.bleed:
        inner = soft(F32(0.2) - f.depth, f.w)
        blood = f.quantile_mask(f.noise(0.3), u(0.06, 0.15), where=inner)
        hv = u(60, 75)
        vals = {p: _mix(v, blood, F32(hv)) for p, v in vals.items()}
    if spec.calcification:
        inner = soft(F32(0.2) - f.depth, f.w)
        specks = f.quantile_mask(f.noise(0.08, sigma=0.7), u(0.004, 0.015), where=inner)
        cv = u(300, 700)
        vals = {p: _mix(v, specks, F32(cv)) for p, v in vals.items()}
    return {p: np.asarray(v, dtype=F32) for p, v in vals.items()}


def lesion_layer(spec: LesionSpec, grid: Grid, tissues, liver_region, clip: np.ndarray) -> Layer:
    """The lesion as a moving layer: occupancy clipped to the liver, HU per phase.

    `liver_region(region)` returns the liver's own occupancy (without the organs that indent
    it) on a region, so the lesion never paints over a kidney or the gallbladder.
    """
    ext = spec.extent
    region = grid.region(spec.centre - ext, spec.centre + ext)
    f = _Fields(spec, region)
    rng = np.random.default_rng(spec.seed + 1)
    values = _values(spec, f, tissues, rng)
    alpha = (f.alpha * liver_region(region)).astype(F32)
    return Layer("lesion", region, alpha, values, clip=clip)
