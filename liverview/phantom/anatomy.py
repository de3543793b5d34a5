"""The phantom's body: wall, spine, ribs, bowel, vessels and organs of a child's upper abdomen.

Anatomical frame: x to the patient's left, y posterior, z superior (DICOM LPS axes), origin
at the body axis at the level of the liver hilum. Sizes scale with the body width W, which
grows with age.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from liverview.phantom.layers import Layer, StaticCanvas
from liverview.phantom.shapes import (
    F32,
    Grid,
    Region,
    capsule,
    capsule_box,
    coarse_field,
    ellipse2d,
    ellipsoid,
    ellipsoid_s,
    rotation,
    soft,
)

STATIC_CHANNELS = ("muscle", "bowel")


@dataclass
class Vessel:
    name: str
    a: np.ndarray
    b: np.ndarray
    radius: float
    tissue: str


class Anatomy:
    """Parameters of one child's body, drawn once per case; paints itself on a grid."""

    def __init__(self, rng: np.random.Generator, age: float, sex: str) -> None:
        u = rng.uniform
        self.age = age
        W = (125.0 + 50.0 * math.log1p(age)) * u(0.92, 1.08) * (1.02 if sex == "M" else 1.0)
        self.W = W
        self.a = W / 2
        ratio = float(np.clip(0.84 - 0.008 * age, 0.70, 0.86)) * u(0.95, 1.05)
        b = self.a * ratio
        self.b_ant, self.b_post = b * 1.04, b * 0.96
        self.skin = 1.5
        self.t_fat = (4.0 + 6.0 * math.exp(-age / 3.0)) * u(0.7, 1.5) * W / 180.0 + 2.0
        self.t_mus = 0.03 * W * u(0.8, 1.2)
        self.ai = self.a - self.t_fat - self.t_mus
        self.bi_ant = self.b_ant - self.t_fat - self.t_mus
        self.bi_post = self.b_post - self.t_fat - 1.4 * self.t_mus
        ai, bi, bp = self.ai, self.bi_ant, self.bi_post
        self.Hl = 0.55 * W * u(0.9, 1.1)
        H = self.Hl

        # spine
        self.rv = 0.05 * W * u(0.9, 1.1)
        self.yv = self.b_post - self.t_fat - 3.3 * self.rv
        self.vert_period = 0.09 * W * u(0.92, 1.08)
        self.vert_phase = u(0, 1)
        # aorta, left-anterior of the vertebral body
        self.ra = 0.034 * W * u(0.9, 1.1)
        self.aorta_c = (0.35 * self.rv, self.yv - self.rv - self.ra - 1.5)
        # diaphragm domes
        self.dome_r = (-0.40 * ai + u(-4, 4), -0.10 * bp, 0.45 * H)
        self.dome_l = (0.45 * ai + u(-4, 4), -0.05 * bp, 0.45 * H - 0.03 * H * u(0.5, 1.5))
        self.dome_drop = 0.24 * H * u(0.85, 1.15)
        # liver: right lobe and left lobe ellipsoids
        self.liver_r = ((-0.33 * ai + u(-3, 3), 0.02 * bp, 0.0), (0.70 * ai, 0.88 * bp, 0.58 * H * u(0.95, 1.05)),
                        rotation(u(-0.15, 0.15), u(-0.08, 0.08), 0.0))
        self.liver_l = ((0.12 * ai + u(-5, 5), -0.45 * bi, 0.20 * H), (0.55 * ai * u(0.85, 1.15), 0.40 * bi, 0.30 * H),
                        rotation(u(-0.3, -0.05), 0.0, u(-0.15, 0.15)))
        # gallbladder under the liver, between the lobes
        self.gb = ((-0.12 * ai, -0.38 * bi, -0.33 * H), (0.09 * ai * u(0.8, 1.2), 0.16 * bi * u(0.8, 1.2), 0.17 * H),
                   rotation(u(0.2, 0.6), 0.0, 0.3))
        # inferior vena cava: vertical oval right-anterior of the spine, moves with the liver
        self.r_ivc = 0.040 * W * u(0.9, 1.1)
        self.ivc_c = (-0.22 * ai, self.yv - self.rv - 0.6 * self.r_ivc - 2.0)
        # portal vein trunk and branches
        hil = np.array([-0.16 * ai, 0.05 * bp, 0.0]) + rng.normal(0, 2, 3)
        conf = np.array([0.05 * ai, 0.20 * bp, -0.20 * H]) + rng.normal(0, 2, 3)
        self.hilum = hil
        rp = np.array([-0.55 * ai, 0.05 * bp, 0.06 * H]) + rng.normal(0, 3, 3)
        lp = np.array([0.02 * ai, -0.42 * bi, 0.12 * H]) + rng.normal(0, 3, 3)
        r_pv = 0.026 * W
        self.portal_trunk = Vessel("portal_trunk", conf, hil, r_pv, "portal_vein")
        branches = [
            Vessel("rpv", hil, rp, 0.7 * r_pv, "portal_vein"),
            Vessel("lpv", hil, lp, 0.6 * r_pv, "portal_vein"),
            Vessel("rpv_a", rp, rp + np.array([-0.12 * ai, -0.40 * bi, -0.10 * H]), 0.45 * r_pv, "portal_vein"),
            Vessel("rpv_p", rp, rp + np.array([-0.10 * ai, 0.40 * bp, -0.18 * H]), 0.45 * r_pv, "portal_vein"),
            Vessel("lpv_l", lp, lp + np.array([0.30 * ai, -0.05 * bi, 0.08 * H]), 0.45 * r_pv, "portal_vein"),
        ]
        # hepatic veins fan out from the IVC near the dome
        top = np.array([self.ivc_c[0], self.ivc_c[1], 0.33 * H])
        for name, end in (
            ("rhv", (-0.75 * ai, 0.10 * bp, 0.05 * H)),
            ("mhv", (-0.30 * ai, -0.60 * bi, -0.02 * H)),
            ("lhv", (0.22 * ai, -0.55 * bi, 0.22 * H)),
        ):
            branches.append(Vessel(name, top, np.array(end) + rng.normal(0, 3, 3), 0.018 * W * u(0.85, 1.15), "hepatic_vein"))
        # smaller twigs off the branches, then off the twigs, pointing away from the hilum
        for level, count, length in ((1, 14, 0.28), (2, 22, 0.16)):
            parents = [v for v in branches if (v.name.startswith("twig") if level == 2 else True)]
            for i in range(count):
                parent = parents[int(rng.integers(len(parents)))]
                start = parent.a + u(0.35, 0.95) * (parent.b - parent.a)
                out = start - hil
                d = rng.normal(0, 1, 3) + 1.2 * out / (np.linalg.norm(out) or 1.0)
                d /= np.linalg.norm(d) or 1.0
                radius = max(0.55 * parent.radius, 0.55)
                branches.append(Vessel(f"twig{level}_{i}", start, start + d * length * ai * u(0.7, 1.3), radius, parent.tissue))
        self.liver_vessels = branches
        # spleen, stomach, kidneys
        self.spleen = ((0.66 * ai, 0.32 * bp, 0.10 * H), (0.17 * ai * u(0.85, 1.15), 0.44 * bp, 0.36 * H),
                       rotation(u(-0.75, -0.45), 0.0, 0.0))
        self.stomach = ((0.32 * ai, -0.22 * bi, 0.17 * H), (0.30 * ai, 0.32 * bi, 0.28 * H) ,
                        rotation(u(-0.5, 0.0), 0.0, 0.0))
        self.stomach_gas = u(0.15, 0.6)
        kr = (0.17 * ai * u(0.9, 1.1), 0.23 * bp * u(0.9, 1.1), 0.30 * H)
        self.kidney_r = ((-0.50 * ai, 0.52 * bp, -0.42 * H), kr, rotation(0.35, 0.0, 0.15))
        self.kidney_l = ((0.50 * ai, 0.50 * bp, -0.30 * H), kr, rotation(-0.35, 0.0, 0.15))
        # heart above the central tendon
        self.heart = ((0.12 * ai, -0.15 * bi, 0.62 * H), (0.45 * ai, 0.50 * bi, 0.32 * H), rotation(0.5, 0.0, 0.0))
        # ribs
        self.rib_pitch = 0.11 * W * u(0.9, 1.1)
        self.rib_halfheight = 0.11 * self.rib_pitch
        self.rib_slope = u(0.28, 0.40)
        self.rib_phase = u(0, 1)
        self.bowel_cell = 0.05 * W * u(0.85, 1.15)

    # ---- extent ----------------------------------------------------------------------
    def z_range(self) -> tuple[float, float]:
        """Bottom and top (mm) of the default coverage: the liver with a margin."""
        return (-0.62 * self.Hl, self.dome_r[2] + 0.10 * self.Hl)

    def fov(self) -> float:
        return float(math.ceil((2 * self.a * 1.18 + 16) / 10.0) * 10)

    # ---- point tests (lesion placement) ----------------------------------------------
    def diaphragm(self, X, Y):
        """z of the diaphragm surface above (X, Y)."""
        out = None
        for (xc, yc, zt) in (self.dome_r, self.dome_l):
            # the domes fall off more towards the back (posterior recesses) than the front
            fy = np.where(Y < yc, 0.45, 1.0)
            d = zt - self.dome_drop * (((X - xc) / self.ai) ** 2 + fy * ((Y - yc) / self.bi_post) ** 2) * 2.0
            out = d if out is None else np.maximum(out, d)
        return out

    def in_liver(self, X, Y, Z) -> np.ndarray:
        """Whether points lie in liver parenchyma (not in the organs that indent it)."""
        _, sr = ellipsoid_s(X, Y, Z, *self.liver_r)
        _, sl = ellipsoid_s(X, Y, Z, *self.liver_l)
        inside = ((sr < 1) | (sl < 1)) & (Z < self.diaphragm(X, Y) - 1.0)
        inside &= ((X / self.ai) ** 2 + (Y / np.where(Y > 0, self.bi_post, self.bi_ant)) ** 2) < 0.97
        for organ in (self.gb, self.spleen, self.kidney_r, self.kidney_l, self.stomach):
            _, so = ellipsoid_s(X, Y, Z, *organ)
            inside &= so > 1.1
        ivc = ((X - self.ivc_c[0]) / (1.25 * self.r_ivc)) ** 2 + ((Y - self.ivc_c[1]) / (0.85 * self.r_ivc)) ** 2
        inside &= ivc > 1.4
        return inside

    # ---- static tissues --------------------------------------------------------------
    def static(self, grid: Grid, rng: np.random.Generator, tissues) -> tuple[StaticCanvas, dict]:
        """Paint the tissues that do not move; return the canvas and the 2-D clip masks."""
        fat = tissues["fat"]["P"]
        bone = tissues["bone"]["P"]
        c2 = StaticCanvas((grid.ny, grid.nx), -1000.0, STATIC_CHANNELS)
        # table: a curved carbon shell under the back
        ytab = self.b_post + 6.0
        x = grid.x.astype(F32)[None, :]
        y = grid.y.astype(F32)[:, None]
        surf = ytab + 0.0025 * x * x
        shell = soft(np.abs(y - surf - 2.0) - 1.5, grid.dy) * (np.abs(x) < 0.8 * self.a * 1.6)
        c2.paint(..., shell, 180.0)
        pad = soft(np.abs(y - surf + 1.5) - 1.5, grid.dy) * (np.abs(x) < 0.75 * self.a * 1.6)
        c2.paint(..., pad, -650.0)
        body = ellipse2d(grid, (0, 0), (self.a, self.b_ant), self.b_post, power=2.3)
        c2.paint(..., body, tissues["skin"]["P"])
        s = self.skin
        sub = ellipse2d(grid, (0, 0), (self.a - s, self.b_ant - s), self.b_post - s, power=2.3)
        c2.paint(..., sub, fat)
        t = self.t_fat
        wall = ellipse2d(grid, (0, 0), (self.a - t, self.b_ant - t), self.b_post - t, power=2.2)
        c2.paint(..., wall, channel="muscle")
        cavity = ellipse2d(grid, (0, 0), (self.ai, self.bi_ant), self.bi_post, power=2.1)
        c2.paint(..., cavity, fat)
        rv, yv = self.rv, self.yv
        para = np.maximum(
            ellipse2d(grid, (-1.45 * rv, yv + 2.3 * rv), (1.4 * rv, 1.45 * rv)),
            ellipse2d(grid, (1.45 * rv, yv + 2.3 * rv), (1.4 * rv, 1.45 * rv)),
        ) * wall
        crura = ellipse2d(grid, (0.0, yv - 0.3 * rv), (1.55 * rv, 1.3 * rv))
        c2.paint(..., np.maximum(para, crura), channel="muscle")
        vbody = ellipse2d(grid, (0, yv), (1.1 * rv, rv))
        vinner = ellipse2d(grid, (0, yv), (1.1 * rv - 1.6, rv - 1.6))
        canal_c = (0.0, yv + rv + 0.45 * rv)
        arch = ellipse2d(grid, canal_c, (0.8 * rv, 0.75 * rv))
        canal = ellipse2d(grid, canal_c, (0.45 * rv, 0.42 * rv))
        aorta = ellipse2d(grid, self.aorta_c, (self.ra, self.ra))
        aorta_margin = ellipse2d(grid, self.aorta_c, (self.ra + 3.0, self.ra + 3.0))
        mediast = ellipse2d(grid, (0.0, yv - 0.6 * rv), (2.6 * rv, 2.6 * rv))

        # 3-D: repeat the cylinder along z, then vertebrae, ribs and bowel
        c3 = StaticCanvas(grid.shape, 0.0, STATIC_CHANNELS)
        c3.const[:] = c2.const[None]
        for ch in STATIC_CHANNELS:
            c3.weights[ch][:] = c2.weights[ch][None]
        self._bowel(c3, grid, rng, cavity, vbody, para, fat)
        z = grid.z.astype(F32)
        ph = ((z - self.z_range()[0]) / self.vert_period + self.vert_phase) % 1.0
        bonez = np.clip(np.minimum(ph - 0.12, 0.95 - ph) * self.vert_period / grid.dz + 0.5, 0, 1).astype(F32)
        archz = np.clip(np.minimum(ph - 0.25, 0.80 - ph) * self.vert_period / grid.dz + 0.5, 0, 1).astype(F32)
        c3.paint(..., vbody[None], 90.0)  # discs
        c3.paint(..., bonez[:, None, None] * vbody[None], 1.5 * bone)
        c3.paint(..., bonez[:, None, None] * vinner[None], 0.75 * bone)
        spin = self._arch2d(grid, canal_c)
        c3.paint(..., archz[:, None, None] * np.maximum(arch, spin)[None], 1.1 * bone)
        c3.paint(..., canal[None], 20.0)
        self._ribs(c3, grid, tissues)

        visceral = cavity * (1 - np.maximum(np.maximum(vbody, para), np.maximum(aorta_margin, crura)))
        visceral *= 1 - ellipse2d(grid, canal_c, (rv, rv))
        lung = cavity * (1 - np.maximum(np.maximum(mediast, aorta_margin), np.maximum(para, vbody)))
        heart = cavity * (1 - np.maximum(np.maximum(vbody, para), aorta_margin))
        clips = {"visceral": visceral.astype(F32), "lung": lung.astype(F32), "heart": heart.astype(F32), "aorta": aorta}
        return c3, clips

    def _arch2d(self, grid: Grid, canal_c) -> np.ndarray:
        rv = self.rv
        flat = Grid(grid.nx, grid.ny, 1, grid.dx, grid.dy, grid.dz, grid.x0, grid.y0, 0.0)
        r2 = flat.full()
        cx, cy = canal_c
        spinous = capsule(r2, (cx, cy, 0), (cx, cy + 1.6 * rv, 0), 0.22 * rv)[0]
        trans = np.maximum(
            capsule(r2, (cx - 0.4 * rv, cy, 0), (cx - 1.7 * rv, cy - 0.2 * rv, 0), 0.22 * rv)[0],
            capsule(r2, (cx + 0.4 * rv, cy, 0), (cx + 1.7 * rv, cy - 0.2 * rv, 0), 0.22 * rv)[0],
        )
        return np.maximum(spinous, trans)

    def _bowel(self, c3: StaticCanvas, grid: Grid, rng, cavity, vbody, para, fat) -> None:
        """Bowel loops (wall, fluid, gas) filling the peritoneal cavity under the organs, with
        thin strands of mesenteric fat between them."""
        reg = grid.region((-self.ai, -self.bi_ant, grid.z[0]), (self.ai, self.bi_post, grid.z[-1]), margin=1)
        loops = coarse_field(rng, reg, self.bowel_cell, sigma=1.0)
        strands = coarse_field(rng, reg, 1.6 * self.bowel_cell, sigma=1.0)
        gas = coarse_field(rng, reg, 0.5 * self.bowel_cell, sigma=1.0)
        where = cavity[reg.rs, reg.cs][None] * (1 - np.maximum(vbody, para)[reg.rs, reg.cs][None])
        c3.paint(reg.slices, where, channel="bowel")
        sub = (slice(None, None, 2), slice(None, None, 3), slice(None, None, 3))
        # fat in bands around the zero crossings of a second field: sheets between the loops
        fat_frac = float(np.clip(0.12 + 0.02 * self.age, 0.12, 0.35))
        band = float(np.quantile(np.abs(strands[sub]).ravel(), fat_frac))
        ramp = F32(8.0)  # field units to tissue fraction
        c3.paint(reg.slices, np.clip((F32(band) - np.abs(strands)) * F32(ramp / max(band, 1e-3) * 0.15), 0, 1) * where, fat)
        t_lumen = float(np.quantile(loops[sub].ravel(), 0.55))
        lumen = np.clip((loops - F32(t_lumen)) * ramp, 0, 1) * where
        c3.paint(reg.slices, lumen, 12.0)
        t_gas = float(np.quantile(gas[sub].ravel(), 0.88))
        pocket = np.clip((gas - F32(t_gas)) * ramp, 0, 1) * np.clip((loops - F32(t_lumen) - 0.15) * ramp, 0, 1) * where
        c3.paint(reg.slices, pocket, -960.0)

    def _ribs(self, c3: StaticCanvas, grid: Grid, tissues) -> None:
        """Ribs cut obliquely: arcs in the muscle wall whose angle drifts with z."""
        t = self.t_fat + 0.12 * self.t_mus
        outer = ellipse2d(grid, (0, 0), (self.a - t, self.b_ant - t), self.b_post - t, power=2.2)
        t = self.t_fat + 0.80 * self.t_mus
        inner = ellipse2d(grid, (0, 0), (self.a - t, self.b_ant - t), self.b_post - t, power=2.2)
        ring = outer * (1 - inner)
        rr, cc = np.nonzero(ring > 0.02)
        if rr.size == 0:
            return
        x = grid.x[cc].astype(F32)
        y = grid.y[rr].astype(F32)
        theta = np.abs(np.arctan2(x, y))  # 0 at the spine, pi at the front
        R = F32(0.5 * (self.a + self.b_ant))
        z = grid.z.astype(F32)[:, None]
        q = (z - F32(self.z_range()[1]) + F32(self.rib_slope) * theta[None] * R) / F32(self.rib_pitch) + F32(self.rib_phase)
        dist = np.abs(q - np.floor(q) - F32(0.5)) * F32(self.rib_pitch)
        across = soft(dist - F32(self.rib_halfheight), F32(grid.dz))
        cage = soft(F32(-0.45 * self.Hl) + F32(0.30 * self.Hl) * theta[None] / F32(math.pi) - z, F32(grid.dz))
        arc = ((theta > 0.30) & (theta < 2.75)).astype(F32)[None]
        a = across * cage * arc * ring[rr, cc][None]
        bone = tissues["bone"]["P"]
        val = np.where(theta > 2.25, F32(140.0), F32(1.1 * bone))[None]
        # apply to the flat pixel list
        keep = F32(1.0) - a
        const = c3.const[:, rr, cc] * keep + a * val
        c3.const[:, rr, cc] = const
        for w in c3.weights.values():
            w[:, rr, cc] = w[:, rr, cc] * keep

    # ---- layers that move with breathing -------------------------------------------------
    def organ_layers(self, grid: Grid, tissues, clips: dict, rng: np.random.Generator) -> dict[str, Layer]:
        """Organs, vessels, lungs and heart as layers in paint order (lesion goes last)."""
        T = tissues
        out: dict[str, Layer] = {}
        vis = clips["visceral"]

        def ell_layer(name, spec, values):
            c, r, rot = spec
            ext = max(r)
            reg = grid.region(np.array(c) - ext, np.array(c) + ext)
            return Layer(name, reg, ellipsoid(reg, c, r, rot), values, clip=vis)

        def per_phase(tissue):
            return dict(T[tissue])

        # stomach: wall, then fluid with a gas cap anteriorly (supine)
        st = ell_layer("stomach", self.stomach, per_phase("stomach_wall"))
        out["stomach"] = st
        c, r, rot = self.stomach
        inner = ellipsoid(st.region, c, tuple(v - 3.0 for v in r), rot)
        ylevel = c[1] - r[1] + 2 * r[1] * self.stomach_gas
        content = np.where(st.region.Y + 0 * st.region.X + 0 * st.region.Z < ylevel, F32(-985.0), F32(0.0)).astype(F32)
        out["stomach_content"] = Layer("stomach_content", st.region, inner, {p: 15.0 for p in T["liver"]}, clip=vis, texture=content)

        # liver: two lobes under the diaphragm, with a faint parenchymal texture
        ext_r = np.array(self.liver_r[1]) * 1.05
        ext_l = np.array(self.liver_l[1]) * 1.05
        lo = np.minimum(np.array(self.liver_r[0]) - ext_r, np.array(self.liver_l[0]) - ext_l)
        hi = np.maximum(np.array(self.liver_r[0]) + ext_r, np.array(self.liver_l[0]) + ext_l)
        reg = grid.region(lo, hi)
        lr = ellipsoid(reg, *self.liver_r)
        ll = ellipsoid(reg, *self.liver_l)
        under = soft(reg.Z - self.diaphragm(reg.X, reg.Y), grid.dz)
        liver_alpha = np.maximum(lr, ll) * under
        tex = coarse_field(rng, reg, 0.035 * self.W, sigma=1.0) * F32(3.5) + coarse_field(rng, reg, 0.012 * self.W, sigma=0.8) * F32(2.5)
        out["liver"] = Layer("liver", reg, liver_alpha.astype(F32), per_phase("liver"), clip=vis, texture=tex)

        for v in self.liver_vessels:
            lo_v, hi_v = capsule_box(v.a, v.b, v.radius)
            vr = grid.region(lo_v, hi_v)
            if vr.empty:
                continue
            a = capsule(vr, v.a, v.b, v.radius)
            # vessels stay inside the parenchyma
            a *= _sub(liver_alpha, reg, vr)
            out[v.name] = Layer(v.name, vr, a, per_phase(v.tissue), clip=vis)

        gb = ell_layer("gallbladder", self.gb, {p: 10.0 for p in T["liver"]})
        out["gallbladder"] = gb
        # spleen: an ellipsoid with a medial hilar notch
        out["spleen"] = ell_layer("spleen", self.spleen, per_phase("spleen"))
        for side, spec in (("r", self.kidney_r), ("l", self.kidney_l)):
            k = ell_layer(f"kidney_{side}", spec, per_phase("kidney_cortex"))
            out[k.name] = k
            c, r, rot = spec
            med = Layer(f"medulla_{side}", k.region, ellipsoid(k.region, c, tuple(v * 0.72 for v in r), rot), per_phase("kidney_medulla"), clip=vis)
            out[med.name] = med
            sgn = 1.0 if side == "r" else -1.0
            sinus_c = (c[0] + sgn * 0.55 * r[0], c[1] - 0.2 * r[1], c[2])
            sinus = Layer(f"sinus_{side}", k.region, ellipsoid(k.region, sinus_c, (0.45 * r[0], 0.4 * r[1], 0.5 * r[2]), rot) * k.alpha,
                          {p: -60.0 for p in T["liver"]}, clip=vis)
            out[sinus.name] = sinus

        # IVC and portal trunk (extrahepatic), moving with the liver
        z0, z1 = grid.z[0] - 10, self.dome_r[2] + 5
        ivc_reg = grid.region((self.ivc_c[0] - 2 * self.r_ivc, self.ivc_c[1] - 2 * self.r_ivc, z0),
                              (self.ivc_c[0] + 2 * self.r_ivc, self.ivc_c[1] + 2 * self.r_ivc, z1))
        ivc = ellipse2d(grid, self.ivc_c, (1.2 * self.r_ivc, 0.8 * self.r_ivc))[ivc_reg.rs, ivc_reg.cs][None]
        ivc = ivc * soft(ivc_reg.Z - F32(z1), grid.dz)
        out["ivc"] = Layer("ivc", ivc_reg, ivc.astype(F32), per_phase("ivc"), clip=vis)
        pt = self.portal_trunk
        lo_v, hi_v = capsule_box(pt.a, pt.b, pt.radius)
        pr = grid.region(lo_v, hi_v)
        out["portal_trunk"] = Layer("portal_trunk", pr, capsule(pr, pt.a, pt.b, pt.radius), per_phase("portal_vein"), clip=vis)

        # lungs and heart above the diaphragm
        zt = grid.z[-1]
        zlow = min(self.dome_r[2], self.dome_l[2]) - 2.2 * self.dome_drop
        if zt > zlow:
            lreg = grid.region((-self.ai, -self.bi_ant, zlow), (self.ai, self.bi_post, zt))
            above = soft(self.diaphragm(lreg.X, lreg.Y) - lreg.Z, grid.dz)
            ltex = coarse_field(rng, lreg, 0.03 * self.W, sigma=1.0)
            lung_tex = F32(25.0) * ltex + F32(500.0) * np.clip(ltex - 2.3, 0, 1)
            out["lung"] = Layer("lung", lreg, above.astype(F32), {p: -840.0 for p in T["liver"]}, clip=clips["lung"], texture=lung_tex)
            c, r, rot = self.heart
            hreg = grid.region(np.array(c) - max(r), np.array(c) + max(r))
            if not hreg.empty:
                above_h = soft(self.diaphragm(hreg.X, hreg.Y) + 1.5 - hreg.Z, grid.dz)
                heart = ellipsoid(hreg, c, r, rot) * above_h
                out["heart"] = Layer("heart", hreg, heart.astype(F32), per_phase("myocardium"), clip=clips["heart"])
                blood = ellipsoid(hreg, c, tuple(v * 0.78 for v in r), rot) * above_h
                out["heart_blood"] = Layer("heart_blood", hreg, blood.astype(F32), per_phase("heart_blood"), clip=clips["heart"])
        return out

    def aorta_layer(self, grid: Grid, tissues, clips: dict) -> Layer:
        reg = grid.region((self.aorta_c[0] - 2 * self.ra, self.aorta_c[1] - 2 * self.ra, grid.z[0]),
                          (self.aorta_c[0] + 2 * self.ra, self.aorta_c[1] + 2 * self.ra, grid.z[-1]))
        a = clips["aorta"][reg.rs, reg.cs][None]
        return Layer("aorta", reg, a.astype(F32), dict(tissues["aorta"]), moves=False)

    # ---- liver segments for the report -------------------------------------------------
    def location(self, centre, pts: np.ndarray, radius: float) -> str:
        """Report location label of a lesion from its centre and its voxel points (N x 3, mm)."""
        gbx, gby = self.gb[0][0], self.gb[0][1]
        ivx, ivy = self.ivc_c

        def left_of_cantlie(x, y):
            # the line from the gallbladder fossa to the IVC; its left side is the left lobe
            t = (y - gby) / (ivy - gby)
            return x > gbx + t * (ivx - gbx)

        left = left_of_cantlie(pts[:, 0], pts[:, 1])
        frac = float(left.mean()) if len(pts) else 0.0
        if 0.25 < frac < 0.75:
            return "translobar"
        cx, cy, cz = (float(v) for v in centre)
        if np.linalg.norm(np.asarray(centre) - self.hilum) < 0.6 * radius + 8.0:
            return "hilum"
        if frac >= 0.75:
            falciform = gbx + 0.35 * self.ai
            if cx < falciform and cz < 0.05 * self.Hl and cy < 0:
                return "quadrate lobe"
            return "left lobe"
        if ivx - 0.08 * self.ai < cx < ivx + 0.22 * self.ai and ivy - 0.35 * self.bi_post < cy < ivy and cz > -0.1 * self.Hl:
            return "caudate lobe"
        return "right lobe"


def _sub(arr: np.ndarray, reg: Region, sub: Region) -> np.ndarray:
    """`arr` (over `reg`) read on `sub`, zero where `sub` lies outside `reg`."""
    out = np.zeros(sub.shape, dtype=F32)
    sl_src, sl_dst = [], []
    for a, b in ((reg.ks, sub.ks), (reg.rs, sub.rs), (reg.cs, sub.cs)):
        lo, hi = max(a.start, b.start), min(a.stop, b.stop)
        if hi <= lo:
            return out
        sl_src.append(slice(lo - a.start, hi - a.start))
        sl_dst.append(slice(lo - b.start, hi - b.start))
    out[tuple(sl_dst)] = arr[tuple(sl_src)]
    return out
