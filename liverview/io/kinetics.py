"""Contrast kinetics from the pixels: body, lungs, bone, liver, aorta and portal vein HU on a slice, and the phase they point to.

One axial slice in HU and its affine (LPS) are enough. The slice is averaged down to pixels
of about 2 mm, then:

- body: the largest connected region above -400 HU (the table and air excluded), holes filled;
- lungs: air inside the body; bone: pixels above 400 HU;
- liver: the largest thick (opened by a 7 mm disk) soft-tissue region (20..200 HU) whose
  centre lies in the patient's right half (found from the affine, not from the image side);
- aorta: the brightest 3x3-pixel median in a window just anterior to the vertebral body and
  a little to the patient's left (the aorta is there at every abdominal level);
- portal vein: the brightest 3x3-pixel median inside the liver with its holes filled (the
  portal and hepatic veins; at the hilum it is the portal vein).

The phase follows from the three HU against the typical enhancement of each phase
(pre-contrast: nothing enhanced; arterial: aorta far above portal vein and liver; portal
venous: portal vein near the aorta, liver at its peak; delayed: aorta down near the liver).
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from liverview.study.phases import PHASE_NAMES, PHASES

TARGET_MM = 2.0  # pixel size the measurement works at
MIN_PIXELS = 48  # slices smaller than this (after averaging) are not measured
BODY_FLOOR_HU = -400.0
LUNG_BELOW_HU = -400.0
BONE_ABOVE_HU = 400.0
SOFT_HU = (20.0, 200.0)
LIVER_OPENING_MM = 7.0
BRIGHT_CAP_HU = 600.0  # above this a pixel is bone or oral contrast, not blood

# (mean, sd) of aorta HU, liver HU and aorta minus portal vein HU per phase (pediatric and
# adult multiphase liver protocols; wide on purpose: doses and timing vary).
PROTOTYPES: dict[str, dict[str, tuple[float, float]]] = {
    "P": {"aorta": (45.0, 20.0), "liver": (55.0, 15.0), "aorta_minus_pv": (0.0, 25.0)},
    "A": {"aorta": (260.0, 80.0), "liver": (75.0, 20.0), "aorta_minus_pv": (130.0, 60.0)},
    "V": {"aorta": (165.0, 50.0), "liver": (110.0, 20.0), "aorta_minus_pv": (10.0, 35.0)},
    "D": {"aorta": (115.0, 30.0), "liver": (95.0, 20.0), "aorta_minus_pv": (5.0, 25.0)},
}


@dataclass
class SliceAnatomy:
    """What one slice shows, in numbers that can be read back to the user."""

    pixel_mm: float
    body_cm2: float = 0.0
    body_width_mm: float = 0.0
    lung_fraction: float = 0.0
    bone_fraction: float = 0.0
    liver_cm2: float = 0.0
    liver_fraction: float = 0.0  # of the body area
    liver_hu: float | None = None
    liver_right_mm: float = 0.0  # how far the liver region's centre lies to the patient's right of the body centre
    liver_right_share: float = 0.0  # share of the liver region right of the body centre (a midline organ: about 0.5)
    aorta_hu: float | None = None
    aorta_below: float | None = None  # spine found but no blob brighter than this in front of it: no enhanced aorta
    portal_hu: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def has_body(self) -> bool:
        return self.body_cm2 > 0.0


def _downsample(hu: np.ndarray, f: int) -> np.ndarray:
    if f <= 1:
        return hu.astype(np.float32, copy=False)
    h, w = (hu.shape[0] // f) * f, (hu.shape[1] // f) * f
    return hu[:h, :w].astype(np.float32).reshape(h // f, f, w // f, f).mean(axis=(1, 3))


def _disk(radius_px: float) -> np.ndarray:
    r = max(1, int(round(radius_px)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return xx**2 + yy**2 <= radius_px**2 + 0.5


def _largest(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n == 0:
        return np.zeros_like(mask)
    sizes = ndimage.sum_labels(mask, lab, index=np.arange(1, n + 1))
    return lab == (int(np.argmax(sizes)) + 1)


def patient_axes(affine: np.ndarray, shape: tuple[int, int], f: int) -> tuple[np.ndarray, np.ndarray]:
    """(right, anterior) patient coordinates in mm of each pixel of the averaged grid (LPS: x grows to the left, y to the back)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    c = cols * f + (f - 1) / 2.0
    r = rows * f + (f - 1) / 2.0
    a = np.asarray(affine, dtype=np.float64)
    x = a[0, 0] * c + a[0, 1] * r + a[0, 3]
    y = a[1, 0] * c + a[1, 1] * r + a[1, 3]
    return -x, -y


def analyse_slice(hu: np.ndarray, affine: np.ndarray, body_floor: float = BODY_FLOOR_HU, vessels: bool = True) -> SliceAnatomy:
    """Measure one slice (HU, rows x cols) whose (col, row) -> LPS geometry is `affine`'s first two columns.

    `vessels=False` leaves out the aorta and portal vein (phase identification needs them, the
    liver check does not: half the time of a slice, benchmarks/analyze.py)."""
    a = np.asarray(affine, dtype=np.float64)
    sx, sy = float(np.linalg.norm(a[:3, 0])), float(np.linalg.norm(a[:3, 1]))
    f = max(1, int(round(TARGET_MM / max(min(sx, sy), 1e-6))))
    img = _downsample(np.asarray(hu), f)
    px = max(sx, sy) * f
    out = SliceAnatomy(pixel_mm=px)
    if min(img.shape) < MIN_PIXELS:
        out.notes.append(f"image too small to measure ({img.shape[1]}x{img.shape[0]} pixels of {px:.1f} mm)")
        return out
    area_px = px * px / 100.0  # cm2 per pixel
    body = ndimage.binary_opening(img > body_floor, structure=np.ones((3, 3), bool))
    body = ndimage.binary_fill_holes(_largest(body))
    n_body = int(body.sum())
    if n_body * area_px < 5.0:
        out.notes.append("no body found (air only)")
        return out
    right, ant = patient_axes(a, img.shape, f)
    out.body_cm2 = n_body * area_px
    rb = right[body]
    out.body_width_mm = float(rb.max() - rb.min()) + px
    r0 = float((rb.max() + rb.min()) / 2.0)
    out.lung_fraction = float(np.count_nonzero(body & (img < LUNG_BELOW_HU))) / n_body
    out.bone_fraction = float(np.count_nonzero(body & (img > BONE_ABOVE_HU))) / n_body

    soft = body & (img > SOFT_HU[0]) & (img < SOFT_HU[1])
    thick = ndimage.binary_opening(soft, structure=_disk(LIVER_OPENING_MM / px))
    lab, n = ndimage.label(thick)
    liver = None
    if n:
        idx = np.arange(1, n + 1)
        sizes = ndimage.sum_labels(thick, lab, idx)
        cent = ndimage.mean(right, lab, idx)
        best = -1.0
        for k, size, c in zip(idx, sizes, cent):
            if c - r0 > 0 and size > best:
                best, liver = size, lab == k
    if liver is not None:
        out.liver_cm2 = float(liver.sum()) * area_px
        out.liver_fraction = float(liver.sum()) / n_body
        core = ndimage.binary_erosion(liver, structure=np.ones((3, 3), bool))
        out.liver_hu = float(np.median(img[core if core.any() else liver]))
        out.liver_right_mm = float(right[liver].mean() - r0)
        out.liver_right_share = float(np.count_nonzero(right[liver] > r0)) / float(liver.sum())
    if not vessels:
        return out
    if liver is not None:
        med = ndimage.median_filter(img, size=3)
        filled = ndimage.binary_fill_holes(ndimage.binary_closing(liver, structure=np.ones((3, 3), bool), iterations=2))
        vessel = med[filled & (med < BRIGHT_CAP_HU)]
        if vessel.size:
            out.portal_hu = float(np.percentile(vessel, 99))
    out.aorta_hu, out.aorta_below = _aorta(img, body, right, ant, r0, out.body_width_mm, px, out.liver_hu)
    return out


def _aorta(img, body, right, ant, r0, width, px, liver_hu) -> tuple[float | None, float | None]:
    """Median HU of the aorta: the round enhanced blob nearest to where the aorta lies in front of the spine.

    The spine is the largest region above 250 HU near the midline in the back half of the
    body; candidates are 3x3-median pixels brighter than the liver by 15 HU (at least
    100 HU), round, 0.15-15 cm2, in front of the spine and near the midline. The aorta is
    expected just in front of the vertebral body, a little to the patient's left (distances
    scale with the body's width). Returns (aorta HU, None), or (None, the floor) when the
    spine is there but no enhanced aorta, or (None, None) without a spine.
    """
    a0 = float((ant[body].max() + ant[body].min()) / 2.0)
    spine = _largest(body & (img > 250.0) & (np.abs(right - r0) < 0.1 * width + 10.0) & (ant < a0))
    if spine.sum() * px * px < 25.0:  # under 0.25 cm2: no spine on this slice
        return None, None
    sr = float(right[spine].mean())
    column = spine & (np.abs(right - sr) < 8.0)
    edge = float(ant[column].max())
    target = (sr - 0.03 * width, edge + 0.13 * width)  # (right, anterior) mm
    med = ndimage.median_filter(img, size=3)
    floor = max(100.0, (liver_hu if liver_hu is not None else 60.0) + 15.0)
    bright = body & (med > floor) & (med < BRIGHT_CAP_HU) & ~ndimage.binary_dilation(spine, iterations=1)
    lab, n = ndimage.label(bright)
    best = None
    for k in range(1, n + 1):
        blob = lab == k
        size = int(blob.sum())
        if not 0.15 <= size * px * px / 100.0 <= 15.0:
            continue
        rr, aa = right[blob], ant[blob]
        extent = (rr.max() - rr.min() + px) * (aa.max() - aa.min() + px)
        if size * px * px / extent < 0.5:  # a disk fills pi/4 of its box; vessels seen lengthwise and bowel fill less
            continue
        cr, ca = float(rr.mean()), float(aa.mean())
        if ca < edge - 5.0 or ca > edge + 0.3 * width or abs(cr - sr) > 0.15 * width:
            continue
        d = math.hypot(cr - target[0], ca - target[1])
        if best is None or d < best[0]:
            best = (d, float(np.percentile(img[blob], 75)))  # the rim is partial volume with the wall and fat
    return (None, floor) if best is None else (best[1], None)


@dataclass
class Kinetics:
    """Aorta, liver and portal vein HU of a series (median over the slices measured) and the phase they fit."""

    aorta_hu: float | None
    liver_hu: float | None
    portal_hu: float | None
    slices: list[int]
    likelihood: dict[str, float] = field(default_factory=dict)  # phase -> relative likelihood, best = 1
    posterior: dict[str, float] = field(default_factory=dict)  # phase -> share of the summed likelihood
    note: str = ""
    aorta_below: float | None = None

    @property
    def phase(self) -> str | None:
        return max(self.posterior, key=self.posterior.get) if self.posterior else None

    def describe(self) -> str:
        parts = []
        for name, v in (("aorta", self.aorta_hu), ("portal vein", self.portal_hu), ("liver", self.liver_hu)):
            if v is not None:
                parts.append(f"{name} {v:.0f} HU")
            elif name == "aorta" and self.aorta_below is not None:
                parts.append(f"aorta not enhanced (nothing above {self.aorta_below:.0f} HU in front of the spine)")
        where = "slice " + ", ".join(str(k) for k in self.slices) if self.slices else ""
        return f"pixels ({where}): " + ", ".join(parts)


def phase_fit(
    aorta: float | None, liver: float | None, portal: float | None, aorta_below: float | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """(relative likelihood, posterior) per phase from whichever HU are known; empty without the aorta.

    `aorta_below` stands for an aorta that was looked for and not found enhanced: it counts
    as the chance that the phase's aorta stays below that HU.
    """
    if aorta is None and aorta_below is None:
        return {}, {}
    d2 = {}
    for p in PHASES:
        proto = PROTOTYPES[p]
        m, s = proto["aorta"]
        if aorta is None:
            below = 0.5 * (1.0 + math.erf((aorta_below - m) / (s * math.sqrt(2.0))))
            total = -2.0 * math.log(max(below, 1e-12))
        else:
            total = ((aorta - m) / s) ** 2
        if liver is not None:
            m, s = proto["liver"]
            total += ((liver - m) / s) ** 2
        if portal is not None and aorta is not None:
            m, s = proto["aorta_minus_pv"]
            total += ((aorta - portal - m) / s) ** 2
        d2[p] = total
    best = min(d2.values())
    like = {p: math.exp(-0.5 * (v - best)) for p, v in d2.items()}
    s = sum(like.values())
    return like, {p: v / s for p, v in like.items()}


def kinetics_from_slices(slices: list[tuple[int, SliceAnatomy]]) -> Kinetics:
    """Combine slice measurements: aorta as the median over slices, liver and portal vein from the slice with most liver."""
    aortas = [m.aorta_hu for _, m in slices if m.aorta_hu is not None]
    with_liver = [(k, m) for k, m in slices if m.liver_hu is not None and m.liver_fraction >= 0.05]
    aorta = float(np.median(aortas)) if aortas else None
    belows = [m.aorta_below for _, m in slices if m.aorta_below is not None]
    below = max(belows) if aorta is None and belows else None
    liver = portal = None
    if with_liver:
        _, m = max(with_liver, key=lambda km: km[1].liver_fraction)
        liver, portal = m.liver_hu, m.portal_hu
    like, post = phase_fit(aorta, liver, portal, below)
    note = "" if aorta is not None or below is not None else "no spine and aorta found"
    return Kinetics(aorta, liver, portal, [k for k, _ in slices], like, post, note, aorta_below=below)


def phase_line(k: Kinetics) -> str:
    """One evidence line: the measured HU and what they fit."""
    if k.phase is None:
        return f"{k.describe()}; {k.note or 'not enough to tell the phase'}"
    ranked = sorted(k.posterior.items(), key=lambda kv: -kv[1])
    fits = ", ".join(f"{PHASE_NAMES[p]} {v:.2f}" for p, v in ranked[:2])
    return f"{k.describe()}: enhancement fits {fits}"


def measure_volume_slices(pixels: np.ndarray, affine: np.ndarray, indices: list[int]) -> Kinetics:
    """Kinetics of a volume (HU) measured on the given slice indices."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return kinetics_from_slices([(k, analyse_slice(pixels[k], affine)) for k in indices])


def probe_indices(n: int) -> list[int]:
    """Which slices of an n-slice series to measure: the middle one and two at a tenth of the range either side."""
    mid = (n - 1) // 2
    step = max(1, n // 10)
    return sorted({max(0, mid - step), mid, min(n - 1, mid + step)})


_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def measure_series(s) -> Kinetics | None:
    """Kinetics of a scanned series (a SeriesRecord), decoding only its probe slices; None when it cannot be measured.

    Cached per series: assigning phases again (a person's override) decodes nothing more.
    """
    if s in _CACHE:
        return _CACHE[s]
    out = None
    if s.modality == "CT" and s.slices and s.refusal is None:
        first = s.slices[0].header
        if min(first.rows, first.cols) >= 2 * MIN_PIXELS:
            out = _measure(s)
    _CACHE[s] = out
    return out


def _probe_hu(sl) -> np.ndarray | None:
    """One probe slice in HU (float32), or None when it cannot be decoded (the loader reports that; kinetics abstain)."""
    from liverview.io.pixels import can_read_native, decode_file, read_native, store_hu

    try:
        if can_read_native(sl):
            raw = read_native(sl)
        else:
            arrays = decode_file(sl.header.path, None if sl.frame is None else [sl.frame], sl.header.transfer_syntax,
                                 keep=True, header=sl.header)
            raw = arrays[0 if sl.frame is None else sl.frame]
        if raw.ndim == 3 and raw.shape[0] == 1:
            raw = raw[0]
        hu = np.zeros(raw.shape, dtype=np.float32)
        store_hu(raw, sl, hu)
    except Exception:
        return None
    return hu


def _measure_probe(s, k: int, sl) -> tuple[int, SliceAnatomy] | None:
    """Decode and measure one probe slice; None when it cannot be decoded."""
    from liverview.study.volume import affine_from_dicom

    hu = _probe_hu(sl)
    if hu is None:
        return None
    step = s.slice_step if s.slice_step is not None else np.zeros(3)
    return k, analyse_slice(hu, affine_from_dicom(sl.position, sl.orientation, sl.spacing, step))


def _measure(s) -> Kinetics | None:
    """Decode and measure the probe slices, a thread each where there is more than one core.

    imagecodecs' decoders and most of scipy.ndimage let go of the GIL, so the probe slices
    decode and are measured side by side: the phase probe decodes 12 slices of a
    four-phase exam before the first slice of any phase is shown (benchmarks/load_exam.py,
    first_slice and first_slice[jpeg2000-lossless]).
    """
    probes = [(k, s.slices[k]) for k in probe_indices(s.n_slices)]
    probes = [(k, sl) for k, sl in probes if sl.position is not None and sl.orientation is not None and sl.spacing is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if len(probes) > 1 and (os.cpu_count() or 1) > 1:  # a thread each: three slices on two cores end together
            workers = len(probes)
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="liverview-probe") as pool:
                results = list(pool.map(lambda probe: _measure_probe(s, *probe), probes))
        else:
            results = [_measure_probe(s, k, sl) for k, sl in probes]
    measured = [r for r in results if r is not None]
    if not measured:
        return None
    return kinetics_from_slices(measured)
