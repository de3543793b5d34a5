"""Render one phantom exam: four phases in HU with noise and breathing, and the ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from liverview.phantom import priors
from liverview.phantom.anatomy import Anatomy, _sub
from liverview.phantom.dicom_series import SeriesPlan, StudyPlan, plan_series, plan_study
from liverview.phantom.layers import Layer, paint_layer, place
from liverview.phantom.lesions import draw_lesion, lesion_layer
from liverview.phantom.shapes import F32, Grid, Region
from liverview.phantom.tissues import draw_tissues
from liverview.study.phases import PHASES

SCHEMA = "liverview.phantom.truth"
VERSION = 1
HU_MIN, HU_MAX = -1024.0, 3071.0
# CT noise is correlated over neighbouring pixels: white noise smoothed by a 3-tap binomial
# kernel along rows and columns (a Gaussian of about 0.7 px).
NOISE_KERNEL = np.array([0.25, 0.5, 0.25], dtype=np.float32)
ROI_HALF_SLICES = 2  # the liver ROI disk spans up to 2 slices either side of its position
# Layers that are not liver: the lesion may not paint over them.
NOT_LIVER = ("gallbladder", "spleen", "kidney_r", "kidney_l", "medulla_r", "medulla_l", "sinus_r", "sinus_l", "ivc", "portal_trunk")
# Key of every structured report field (the paper's report vocabulary).
REPORT_KEYS = (
    "age_years", "sex", "calcification", "bleed", "lung_metastasis", "size_mm", "density", "location", "enhancement_pattern",
)


def patient_id_for(seed: int, patient_index: int) -> str:
    return f"PH{int(seed)}-{int(patient_index):04d}"


def _noise_gain() -> float:
    """Standard deviation left in unit white noise after the 2-D noise kernel."""
    return float((NOISE_KERNEL.astype(np.float64) ** 2).sum())  # per axis variance gain


@dataclass
class PhaseGeom:
    k0: int  # first slice on the master grid
    n: int
    shift: tuple[int, int]  # breathing: (slices, rows) of the moving organs


class Exam:
    """One patient's exam, drawn from (seed, patient_index); phases render on demand."""

    def __init__(
        self,
        seed: int = 0,
        patient_index: int = 0,
        cls: str | None = None,
        member: str | None = None,
        matrix: int = 256,
        slice_thickness: float = 2.5,
        n_slices: int | None = None,
        pixel_spacing: float | None = None,
        lesion: bool = True,
    ) -> None:
        if member is not None and member not in priors.MEMBER_CLASS:
            raise ValueError(f"member {member!r}: expected one of {', '.join(priors.MEMBER_CLASS)}")
        if cls is not None and cls not in priors.CLASSES:
            raise ValueError(f"class {cls!r}: expected one of {', '.join(priors.CLASSES)}")
        if member is not None and cls is not None and priors.MEMBER_CLASS[member] != cls:
            raise ValueError(f"member {member} belongs to class {priors.MEMBER_CLASS[member]}, not {cls}")
        if int(matrix) < 32:
            raise ValueError(f"matrix {matrix}: must be at least 32")
        if not (0.3 <= float(slice_thickness) <= 10.0):
            raise ValueError(f"slice thickness {slice_thickness}: must be 0.3-10 mm")
        if n_slices is not None and int(n_slices) < 3:
            raise ValueError(f"n_slices {n_slices}: must be at least 3")
        if pixel_spacing is not None and not (0.1 <= float(pixel_spacing) <= 5.0):
            raise ValueError(f"pixel spacing {pixel_spacing}: must be 0.1-5 mm")
        self.seed, self.patient_index = int(seed), int(patient_index)
        ss = np.random.SeedSequence([self.seed, self.patient_index])
        r_case, r_tis, r_anat, r_tex, r_les, r_geom, r_noise, r_meta = (np.random.default_rng(s) for s in ss.spawn(8))
        self._noise_seeds = np.random.SeedSequence(int(r_noise.integers(2**63))).spawn(len(PHASES))
        # class and member are always drawn (one number each), then overridden when forced,
        # so forcing them leaves age, sex and everything else as drawn
        mix = priors.DEFAULT_MIX
        drawn_cls = str(priors.CLASSES[r_case.choice(len(priors.CLASSES), p=[mix[c] for c in priors.CLASSES])])
        drawn_member = priors.draw_member(r_case, cls or (priors.MEMBER_CLASS[member] if member else drawn_cls))
        member = member or drawn_member
        self.cls = priors.MEMBER_CLASS[member]
        self.member = member
        self.age = priors.draw_age(r_case, member)
        self.sex = priors.draw_sex(r_case, member)
        self.lung_metastasis = bool(r_case.random() < priors.P_LUNG_METASTASIS[member])
        self.tissues = draw_tissues(r_tis)
        self.anat = anat = Anatomy(r_anat, self.age, self.sex)
        self.noise_sd = float(r_geom.uniform(8.0, 20.0))
        self.phase_noise = {p: float(np.clip(self.noise_sd * r_geom.uniform(0.93, 1.07), 8.0, 20.0)) for p in PHASES}

        # in-plane geometry: field of view for the child's size unless a spacing is asked for
        matrix = int(matrix)
        dxy = round(float(pixel_spacing) if pixel_spacing else anat.fov() / matrix, 6)
        dz = float(slice_thickness)
        self.offset = np.array([r_geom.uniform(-8, 8), r_geom.uniform(-10, 10), r_geom.uniform(-260, -90)])
        x0 = -(matrix - 1) / 2 * dxy - self.offset[0]
        y0 = -(matrix - 1) / 2 * dxy - self.offset[1]

        # z: the liver with margins, or n_slices around it (around the lesion if the liver does not fit)
        zb, zt = anat.z_range()
        probe = Grid(matrix, matrix, 1, dxy, dxy, dz, x0, y0, 0.0)
        self.lesion_spec = draw_lesion(r_les, member, anat, probe) if lesion else None
        if matrix * dxy < 2 * anat.a and self.lesion_spec is not None:
            # a field of view smaller than the body is centred on the lesion, as a reader would
            cx, cy = self.lesion_spec.centre[:2]
            x0 = cx - (matrix - 1) / 2 * dxy
            y0 = cy - (matrix - 1) / 2 * dxy
        if n_slices is None:
            n = int(math.ceil((zt - zb) / dz)) + 1
            centre = 0.5 * (zb + zt)
        else:
            n = int(n_slices)
            centre = 0.5 * (zb + zt)
            if (n - 1) * dz < (zt - zb) and self.lesion_spec is not None:
                centre = float(self.lesion_spec.centre[2])
        kmax = max(1, int(round(4.0 / dz)))
        geoms = {}
        for p in PHASES:
            o = int(r_geom.integers(-2, 3)) if n_slices is None else int(r_geom.integers(-1, 2))
            cnt = n + (int(r_geom.integers(-2, 3)) if n_slices is None else 0)
            dk = int(r_geom.integers(-kmax, kmax + 1))
            dr = int(round(r_geom.uniform(-2.5, 2.5) / dxy))
            geoms[p] = [o, cnt, dk, dr]
        if len({(g[2], g[3]) for g in geoms.values()}) == 1:  # always some breathing between phases
            geoms["V"][2] += 1 if geoms["V"][2] < kmax else -1
        lo = min(g[0] for g in geoms.values()) - kmax
        hi = max(g[0] + g[1] for g in geoms.values()) + kmax
        z_start = centre - (n - 1) / 2 * dz
        self.grid = Grid(matrix, matrix, hi - lo, dxy, dxy, dz, x0, y0, z_start + lo * dz)
        # slice positions on a 0.01 mm grid, so '%.2f' keys of positions never straddle a rounding edge
        first = self.grid.z0 + self.offset[2]
        self.offset[2] += round(first, 2) - first
        self.phases = {p: PhaseGeom(g[0] - lo, g[1], (g[2], g[3])) for p, g in geoms.items()}

        # paint what is shared by all phases once
        self.static, self.clips = anat.static(self.grid, r_tex, self.tissues)
        self.aorta = anat.aorta_layer(self.grid, self.tissues, self.clips)
        self.organs: dict[str, Layer] = anat.organ_layers(self.grid, self.tissues, self.clips, r_tex)
        self.lesion: Layer | None = None
        if self.lesion_spec is not None:
            self.lesion = lesion_layer(self.lesion_spec, self.grid, self.tissues, self._liver_region, self.clips["visceral"])
        self.plans: dict[str, SeriesPlan]
        self.plans, bolus = plan_series(r_meta, self.seed, self.patient_index, dz)
        self.study: StudyPlan = plan_study(r_meta, self.seed, self.patient_index, self.age, self.plans["P"].time_s, bolus)
        self.patient_id = patient_id_for(self.seed, self.patient_index)
        self._lesion_stats: dict[str, dict] = {}

    # ---- helpers -----------------------------------------------------------------------
    def _liver_region(self, region: Region) -> np.ndarray:
        liver = self.organs["liver"]
        a = _sub(liver.alpha, liver.region, region)
        for name in NOT_LIVER:
            if name in self.organs:
                o = self.organs[name]
                a *= 1 - _sub(np.broadcast_to(o.alpha, o.region.shape), o.region, region)
        return a

    def layers(self) -> list[Layer]:
        out = [self.aorta, *self.organs.values()]
        if self.lesion is not None:
            out.append(self.lesion)
        return out

    def positions(self, phase: str) -> np.ndarray:
        g = self.phases[phase]
        return self.grid.z[g.k0 : g.k0 + g.n] + self.offset[2]

    def affine(self, phase: str) -> np.ndarray:
        """(col, row, slice) -> patient LPS (mm) for a phase's volume."""
        g, pg = self.grid, self.phases[phase]
        a = np.eye(4)
        a[0, 0], a[1, 1], a[2, 2] = g.dx, g.dy, g.dz
        a[:3, 3] = [g.x0 + self.offset[0], g.y0 + self.offset[1], g.z[pg.k0] + self.offset[2]]
        return a

    # ---- rendering -----------------------------------------------------------------------
    def render_phase(self, phase: str, noise: bool = True):
        """HU volume [slice, row, col] (float32, rounded and clipped as stored), the phase's
        truth and the lesion occupancy on that volume (or None)."""
        pg = self.phases[phase]
        ks = slice(pg.k0, pg.k0 + pg.n)
        values = {"muscle": self.tissues["muscle"][phase], "bowel": self.tissues["bowel"][phase]}
        canvas = self.static.compose(values, ks)
        lesion_occ = None
        for layer in self.layers():
            a = paint_layer(canvas, layer, phase, pg.k0, pg.shift)
            if layer is self.lesion and a is not None:
                dest, _ = place(layer, canvas.shape, pg.k0, pg.shift)
                lesion_occ = np.zeros(canvas.shape, dtype=F32)
                lesion_occ[dest] = a
        clean_lesion_mean = None
        if lesion_occ is not None:
            stats = self._lesion_stats[phase] = self._clean_stats(canvas, lesion_occ)
            clean_lesion_mean = stats.get("mean")
        truth = self._phase_truth(phase, canvas, lesion_occ, clean_lesion_mean)
        if noise:
            rng = np.random.default_rng(self._noise_seeds[PHASES.index(phase)])
            scale = F32(self.phase_noise[phase] / _noise_gain())
            step = 16  # slices at a time keeps the temporaries small
            for k in range(0, canvas.shape[0], step):
                n = rng.standard_normal((min(step, canvas.shape[0] - k),) + canvas.shape[1:], dtype=np.float32)
                n = ndimage.correlate1d(n, NOISE_KERNEL, axis=1, mode="reflect")
                n = ndimage.correlate1d(n, NOISE_KERNEL, axis=2, mode="reflect")
                n *= scale
                canvas[k : k + step] += n
        np.rint(canvas, out=canvas)
        np.clip(canvas, HU_MIN, HU_MAX, out=canvas)
        return canvas, truth, lesion_occ

    def _phase_truth(self, phase: str, canvas: np.ndarray, occ: np.ndarray | None, lesion_mean) -> dict:
        pos = self.positions(phase)
        aff = self.affine(phase)
        plan = self.plans[phase]
        dk, dr = self.phases[phase].shift
        t: dict = {
            "series_uid": plan.series_uid,
            "series_description": plan.description,
            "positions": [round(float(z), 4) for z in pos],
            "shift_mm": [0.0, round(dr * self.grid.dy, 4), round(dk * self.grid.dz, 4)],
            "noise_sd": round(self.phase_noise[phase], 3),
        }
        box3d, slice_boxes, picks = None, {}, []
        if occ is not None:
            m = occ > 0.5
            ks = np.nonzero(m.any(axis=(1, 2)))[0]
            if ks.size:
                rows = np.nonzero(m.any(axis=(0, 2)))[0]
                cols = np.nonzero(m.any(axis=(0, 1)))[0]
                e0 = np.array([cols[0], rows[0], ks[0]], dtype=float)
                e1 = np.array([cols[-1] + 1, rows[-1] + 1, ks[-1] + 1], dtype=float)
                p0 = (aff @ np.append(e0 - 0.5, 1.0))[:3]
                p1 = (aff @ np.append(e1 - 0.5, 1.0))[:3]
                box3d = {"index": [[int(v) for v in e0], [int(v) for v in e1]],
                         "patient": [[round(float(v), 3) for v in p0], [round(float(v), 3) for v in p1]]}
                for k in ks:
                    r = np.nonzero(m[k].any(axis=1))[0]
                    c = np.nonzero(m[k].any(axis=0))[0]
                    slice_boxes[f"{pos[k]:.2f}"] = [int(c[0]), int(r[0]), int(c[-1] + 1), int(r[-1] + 1)]
                picks = self._picks(ks, pos)
        t["lesion_box_3d"] = box3d
        t["slice_boxes"] = slice_boxes
        t["picks"] = picks
        t["hu"] = {
            "liver": round(self.tissues["liver"][phase], 3),
            "aorta": round(self.tissues["aorta"][phase], 3),
            "lesion": None if lesion_mean is None else round(lesion_mean, 3),
        }
        t["rois"] = self._rois(phase, canvas, occ)
        return t

    @staticmethod
    def _picks(ks: np.ndarray, pos: np.ndarray) -> list[float]:
        """Middle slices of the upper, middle and lower thirds of the lesion's slices."""
        n = len(ks)
        if n >= 3:
            idx = [ks[min(n - 1, int((i + 0.5) * n / 3))] for i in range(3)]
        else:  # a lesion on fewer than 3 slices: take its neighbours too
            lo = max(0, min(int(ks[0]) - (3 - n) // 2, len(pos) - 3))
            idx = [lo, lo + 1, lo + 2]
        return sorted(round(float(pos[k]), 4) for k in idx)

    def _rois(self, phase: str, canvas: np.ndarray, occ) -> dict:
        """Disks to measure HU in: pure liver and aorta lumen (on the slices `positions`; the
        disk on `position` alone also holds), and the lesion centre on one slice."""
        pg = self.phases[phase]
        dk, dr = pg.shift
        liver = self.organs["liver"]
        g = self.grid
        out = {}
        # liver: a disk of pure parenchyma through a few slices near mid-liver
        best = None
        for zf in (-0.15, 0.0, 0.15, -0.3):
            km = int(round((zf * self.anat.Hl - g.z0) / g.dz))  # master slice, reference position
            kms = [k for k in range(km - ROI_HALF_SLICES, km + ROI_HALF_SLICES + 1)
                   if 0 <= k + dk - pg.k0 < pg.n and liver.region.ks.start <= k < liver.region.ks.stop]
            if len(kms) < ROI_HALF_SLICES + 1:
                continue
            pure = np.minimum.reduce([self._pure_liver_slice(k) for k in kms])
            rows = np.arange(liver.region.rs.start, liver.region.rs.stop) + dr
            ok = (rows >= 0) & (rows < g.ny)
            full = np.zeros((g.ny, g.nx), dtype=F32)
            full[rows[ok], liver.region.cs] = pure[ok]
            full *= self.clips["visceral"]
            dist = ndimage.distance_transform_edt(np.pad(full > 0.999, 1))[1:-1, 1:-1]  # the image edge bounds it too
            r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
            if best is None or dist[r, c] > best[0]:
                best = (float(dist[r, c]), [k + dk - pg.k0 for k in kms], int(c), int(r))
        if best is not None and best[0] >= 3:
            radius = float(min(best[0] - 2.0, 12.0 / g.dx))
            pos = self.positions(phase)
            ks = best[1]
            out["liver"] = {"position": round(float(pos[ks[len(ks) // 2]]), 4), "positions": [round(float(pos[k]), 4) for k in ks],
                            "center": [best[2], best[3]], "radius_px": round(radius, 2)}
        # aorta: static, centre of its lumen on the middle slice
        ac = self.anat.aorta_c
        col = (ac[0] - g.x0) / g.dx
        row = (ac[1] - g.y0) / g.dy
        # clear of the rounded centre (0.71 px) and the partial-volume edge (0.5 px)
        radius = self.anat.ra / g.dx - 1.25
        inside = radius < col < g.nx - 1 - radius and radius < row < g.ny - 1 - radius
        if radius >= 0.7 and inside:
            pos = self.positions(phase)
            ks = range(pg.n)  # a vertical tube through every slice
            out["aorta"] = {"position": round(float(pos[pg.n // 2]), 4), "positions": [round(float(pos[k]), 4) for k in ks],
                            "center": [int(round(col)), int(round(row))], "radius_px": round(float(radius), 2)}
        if occ is not None:
            spec = self.lesion_spec
            cm = spec.centre
            k = int(round((cm[2] - g.z0) / g.dz)) + dk - pg.k0
            col = int(round((cm[0] - g.x0) / g.dx))
            row = int(round((cm[1] - g.y0) / g.dy)) + dr
            if 0 <= k < pg.n and 0 <= row < g.ny and 0 <= col < g.nx:
                rad = 0.25 * spec.radii.min() / g.dx
                if rad >= 1.0 and occ[k, row, col] >= 0.999:
                    out["lesion_core"] = {"position": round(float(self.positions(phase)[k]), 4), "center": [col, row],
                                          "radius_px": round(float(rad), 2)}
        return out

    def _pure_liver_slice(self, km: int) -> np.ndarray:
        """Liver occupancy on master slice km (reference position) where nothing else lies."""
        liver = self.organs["liver"]
        reg = liver.region
        one = Region(self.grid, slice(km, km + 1), reg.rs, reg.cs)
        a = _sub(liver.alpha, reg, one)[0]
        after = False
        for layer in self.layers():
            if layer is liver:
                after = True
                continue
            if not after or not layer.moves:
                continue
            a *= 1 - _sub(np.broadcast_to(layer.alpha, layer.region.shape), layer.region, one)[0]
        return a

    # ---- the case-level truth ------------------------------------------------------------
    def _clean_stats(self, canvas: np.ndarray, occ: np.ndarray) -> dict:
        """Noise-free lesion values and size on one phase (for the truth and the report)."""
        core = occ >= 0.999
        if not core.any():
            core = occ > 0.5
        if not core.any():
            return {}
        vals = canvas[core]
        m = occ > 0.5
        areas = m.sum(axis=(1, 2))
        k = int(np.argmax(areas))
        r = np.nonzero(m[k].any(axis=1))[0]
        c = np.nonzero(m[k].any(axis=0))[0]
        return {
            "mean": float(vals.mean()),
            "p5": float(np.percentile(vals, 5)),
            "p95": float(np.percentile(vals, 95)),
            "max": float(vals.max()),
            "size_mm": [round(float((c[-1] + 1 - c[0]) * self.grid.dx), 1), round(float((r[-1] + 1 - r[0]) * self.grid.dy), 1)],
        }

    def report(self) -> dict:
        """Structured report fields consistent with the drawn lesion."""
        spec = self.lesion_spec
        rep = {"age_years": self.age, "sex": self.sex, "calcification": False, "bleed": False,
               "lung_metastasis": self.lung_metastasis, "size_mm": [0.0, 0.0], "density": None,
               "location": None, "enhancement_pattern": None}
        if spec is None:
            return rep
        if "P" not in self._lesion_stats:
            self.render_phase("P", noise=False)
        st = self._lesion_stats.get("P", {})
        rep["calcification"] = spec.calcification
        rep["bleed"] = spec.bleed
        rep["enhancement_pattern"] = spec.pattern
        if st:
            rep["size_mm"] = st["size_mm"]
            rep["density"] = self._density(st)
        les = self.lesion
        kk, rr, cc = np.nonzero(les.alpha > 0.5)
        g = self.grid
        pts = np.stack([g.x[cc + les.region.cs.start], g.y[rr + les.region.rs.start], g.z[kk + les.region.ks.start]], axis=1)
        rep["location"] = self.anat.location(spec.centre, pts, spec.radius)
        return rep

    def _density(self, st: dict) -> str:
        """Pre-contrast density of the lesion against the liver (noise-free values)."""
        diff = st["mean"] - self.tissues["liver"]["P"]
        if st["p95"] - st["p5"] > 45.0 or (self.lesion_spec.calcification and st["max"] > 200):
            return "mixed"
        if diff < -15:
            return "low"
        if diff < -5:
            return "slightly low"
        if diff <= 5:
            return "iso"
        return "slightly high"

    def truth_base(self) -> dict:
        """The case-level truth; `phases` and `report` are filled as the phases render.

        truth.json (schema "liverview.phantom.truth", version 1):
          patient_id, seed, patient_index, class (HH|OBHT|HB|OMHT), group (benign|malignant),
          member (HH|IHH|FNH|HMH|HB|UESL|HCC), age_years, sex (M|F), report (the
          structured report fields: age_years, sex, calcification, bleed, lung_metastasis,
          size_mm [w, h], density, location, enhancement_pattern), pixel_spacing [row, col],
          slice_thickness, noise_sd, mode (full|slices-dicom|slices-png, files only), and
          phases: {P, A, V, D: {series_uid, series_description, folder (files only),
            positions (every slice of the series, ascending mm, on a 0.01 mm grid),
            shift_mm [x, y, z] (breathing: where the organs lie against the P phase),
            noise_sd, lesion_box_3d {index [[col0,row0,k0],[col1,row1,k1]] exclusive ends,
            patient [[x,y,z],[x,y,z]] LPS mm corners}, slice_boxes {"%.2f" position:
            [x0,y0,x1,y1]} on every slice where the lesion fills at least half a voxel,
            picks [3 ascending positions: middles of the lesion's lower/middle/upper
            thirds], hu {liver, aorta (the values drawn for the case), lesion (noise-free
            mean over the voxels fully inside it)}, rois {liver, aorta: {position,
            positions, center [col,row], radius_px}, lesion_core: {position, center,
            radius_px}}}}.
        Pixel boxes use edges: column i spans [i, i+1). In slices-only modes the positions,
        boxes and 3-D box still describe the whole rendered series; only the picks are
        written. A lesion on fewer than three slices of a phase (very thick slices, a
        handful of slices) gets neighbouring slices as picks, without boxes.
        """
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "patient_id": self.patient_id,
            "seed": self.seed,
            "patient_index": self.patient_index,
            "class": self.cls,
            "group": priors.GROUP[self.cls],
            "member": self.member,
            "age_years": self.age,
            "sex": self.sex,
            "report": None,
            "box_convention": "pixel edges: column/row i spans [i, i+1), slice k spans [k, k+1); "
            "index boxes are [[col0,row0,k0],[col1,row1,k1]] with exclusive ends; patient corners in LPS mm",
            "pixel_spacing": [self.grid.dy, self.grid.dx],
            "slice_thickness": self.grid.dz,
            "noise_sd": round(self.noise_sd, 3),
            "phases": {},
        }


def render_exam(
    seed: int,
    patient_index: int = 0,
    cls: str | None = None,
    member: str | None = None,
    matrix: int = 256,
    slice_thickness: float = 2.5,
    n_slices: int | None = None,
    pixel_spacing: float | None = None,
):
    """Render an exam in memory: ({phase: float32 HU [slice, row, col]}, truth without file info)."""
    exam = Exam(seed, patient_index, cls, member, matrix, slice_thickness, n_slices, pixel_spacing)
    truth = exam.truth_base()
    volumes = {}
    for p in PHASES:
        volumes[p], truth["phases"][p], _ = exam.render_phase(p)
    truth["report"] = exam.report()
    return volumes, truth
