"""DICOM CT Image Storage series of the phantom: UIDs, vendor-like descriptions, times, files."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

from liverview.phantom.shapes import F32
from liverview.study.phases import PHASES, WINDOWS

RESCALE_INTERCEPT = -1024.0
# One description style per site (drawn per patient); {t} is the slice thickness.
DESCRIPTION_STYLES: tuple[dict[str, str], ...] = (
    {"P": "ABD PRE NC {t}mm", "A": "ARTERIAL {t}mm", "V": "PORTAL VENOUS", "D": "DELAYED 3MIN"},
    {"P": "Plain {t} B30f", "A": "Art Phase {t} B30f", "V": "PV Phase {t} B30f", "D": "Delayed {t} B30f"},
    {"P": "NON-CONTRAST LIVER", "A": "AP LIVER {t}mm", "V": "VENOUS PHASE {t}mm", "D": "EQUILIBRIUM {t}mm"},
    {"P": "Pre Contrast {t}", "A": "Arterial Phase {t}", "V": "Portal {t}", "D": "Late Phase {t}"},
    {"P": "NC Abdomen {t}mm", "A": "ABD ART {t}mm", "V": "ABD PORTAL VENOUS {t}mm", "D": "DELAYED 2MIN {t}mm"},
)
KERNELS = ("B30f", "STANDARD", "FC08", "B", "Br40")
AGENTS = ("OMNIPAQUE 300", "Iohexol 300", "ULTRAVIST 300", "Iopromide 300")
UID_ROOT = "liverview-phantom"


@dataclass
class SeriesPlan:
    """What one phase series says about itself in its headers."""

    phase: str
    series_uid: str
    description: str
    series_number: int
    folder: str
    time_s: float  # acquisition start, seconds after midnight
    shuffled: bool  # instance numbers do not follow position


@dataclass
class StudyPlan:
    study_uid: str
    frame_uid: str
    date: dt.date
    time_s: float
    accession: str
    kernel: str
    kvp: int
    agent: str
    bolus_start_s: float
    flow_rate: float
    weight_kg: float


def _uid(seed: int, index: int, *parts) -> str:
    return str(generate_uid(entropy_srcs=[UID_ROOT, str(seed), str(index), *(str(p) for p in parts)]))


def _folder_name(number: int, description: str) -> str:
    return f"{number:02d}_" + re.sub(r"[^A-Za-z0-9.]+", "_", description).strip("_")


def plan_series(rng: np.random.Generator, seed: int, index: int, thickness: float) -> tuple[dict[str, SeriesPlan], float]:
    """Per-phase series plans (descriptions in one site style, acquisition times in phase
    order) and the contrast bolus start (seconds after midnight)."""
    style = DESCRIPTION_STYLES[int(rng.integers(len(DESCRIPTION_STYLES)))]
    t = f"{thickness:g}"
    start = float(rng.uniform(8 * 3600, 16 * 3600))
    pre = start + float(rng.uniform(60, 180))
    bolus = pre + float(rng.uniform(60, 150))
    times = {"P": pre, "A": bolus + rng.uniform(15, 25), "V": bolus + rng.uniform(55, 70), "D": bolus + rng.uniform(150, 210)}
    shuffled = PHASES[int(rng.integers(len(PHASES)))]
    out = {}
    for i, p in enumerate(PHASES):
        desc = style[p].format(t=t)
        number = i + 2  # series 1 is the scout on real scanners
        out[p] = SeriesPlan(p, _uid(seed, index, "series", p), desc, number, _folder_name(i + 1, desc), float(times[p]), p == shuffled)
    return out, bolus


def plan_study(rng: np.random.Generator, seed: int, index: int, age: float, first_time_s: float, bolus_s: float) -> StudyPlan:
    date = dt.date(2021, 1, 1) + dt.timedelta(days=int(rng.integers(0, 1500)))
    weight = float(np.clip((3.5 + 2.4 * age) * rng.uniform(0.85, 1.15), 2.5, 90.0))
    return StudyPlan(
        study_uid=_uid(seed, index, "study"),
        frame_uid=_uid(seed, index, "frame-of-reference"),
        date=date,
        time_s=first_time_s - float(rng.uniform(60, 300)),
        accession=f"A{int(rng.integers(10**7, 10**8))}",
        kernel=KERNELS[int(rng.integers(len(KERNELS)))],
        kvp=int(rng.choice([80, 100, 120])),
        agent=AGENTS[int(rng.integers(len(AGENTS)))],
        bolus_start_s=bolus_s,
        flow_rate=round(float(rng.uniform(1.0, 2.5)), 1),
        weight_kg=round(weight, 1),
    )


def dicom_time(seconds: float) -> str:
    seconds = seconds % 86400
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}{int(m):02d}{s:09.6f}"


def dicom_age(age_years: float) -> str:
    """DICOM AS: days under a month, months under two years, else years."""
    days = age_years * 365.25
    if days < 31:
        return f"{max(1, int(round(days))):03d}D"
    if age_years < 2:
        return f"{max(1, int(age_years * 12)):03d}M"
    return f"{int(age_years):03d}Y"


def _encode(ds: Dataset) -> bytes:
    """Explicit VR little endian encoding of a dataset's elements (no preamble, no meta)."""
    fp = DicomBytesIO()
    fp.is_little_endian = True
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    return fp.getvalue()


# Elements that differ between the slices of a series; the rest is encoded once.
VARYING = tuple(
    Tag(k)
    for k in ("InstanceCreationTime", "SOPInstanceUID", "AcquisitionTime", "ContentTime", "InstanceNumber",
              "ImagePositionPatient", "SliceLocation", "PixelData")
)


class _SeriesEncoder:
    """Encodes one series' files: the shared elements once, the per-slice ones per file.

    Explicit VR little endian elements encode independently, so joining the encoded runs
    in tag order gives the same bytes as pydicom writing the whole dataset.
    """

    def __init__(self, template: Dataset) -> None:
        self.plan: list[bytes | int] = []
        run = Dataset()
        for tag in sorted(set(template.keys()) | set(VARYING)):
            if tag in VARYING:
                if len(run):
                    self.plan.append(_encode(run))
                    run = Dataset()
                self.plan.append(int(tag))
            else:
                run[tag] = template[tag]
        if len(run):
            self.plan.append(_encode(run))

    def encode(self, varying: Dataset, meta: FileMetaDataset) -> bytes:
        fp = DicomBytesIO()
        fp.is_little_endian = True
        fp.is_implicit_VR = False
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, meta, enforce_standard=True)
        out = [fp.getvalue()]
        for part in self.plan:
            if isinstance(part, bytes):
                out.append(part)
            else:
                one = Dataset()
                one[part] = varying[part]
                out.append(_encode(one))
        return b"".join(out)


def _ds(fs: float) -> str:
    """Decimal String value of at most 16 characters, as precise as that allows."""
    for digits in range(12, 4, -1):
        s = f"{fs:.{digits}g}"
        if len(s) <= 16:
            return s
    return f"{fs:.6g}"


class SeriesWriter:
    """Writes the slices of one phase as CT Image Storage files."""

    def __init__(self, exam, phase: str, study: StudyPlan) -> None:
        self.exam, self.phase, self.study = exam, phase, study
        self.plan: SeriesPlan = exam.plans[phase]
        g = exam.grid
        self.positions = exam.positions(phase)
        n = len(self.positions)
        # instance numbers run head to foot, as a head-first scan writes them
        order = np.arange(n)[::-1]
        if self.plan.shuffled:
            order = np.random.default_rng([exam.seed, exam.patient_index, 77]).permutation(n)
        self.instance = {int(k): int(i + 1) for i, k in enumerate(order)}
        self.x0 = g.x0 + exam.offset[0]
        self.y0 = g.y0 + exam.offset[1]

    def _common(self) -> Dataset:
        ex, st, pl, p = self.exam, self.study, self.plan, self.phase
        g = ex.grid
        level, width = WINDOWS[p]
        birth = st.date - dt.timedelta(days=int(round(ex.age * 365.25)))
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceCreationDate = st.date.strftime("%Y%m%d")
        ds.SOPClassUID = CTImageStorage
        ds.StudyDate = st.date.strftime("%Y%m%d")
        ds.SeriesDate = ds.StudyDate
        ds.AcquisitionDate = ds.StudyDate
        ds.ContentDate = ds.StudyDate
        ds.StudyTime = dicom_time(st.time_s)
        ds.SeriesTime = dicom_time(pl.time_s)
        ds.AccessionNumber = st.accession
        ds.Modality = "CT"
        ds.Manufacturer = "liverview phantom"
        ds.InstitutionName = "synthetic"
        ds.ReferringPhysicianName = ""
        ds.StationName = "PHANTOM"
        ds.StudyDescription = "CT ABDOMEN LIVER 4 PHASE"
        ds.SeriesDescription = pl.description
        ds.ManufacturerModelName = "four-phase liver phantom"
        ds.PatientName = f"PHANTOM^{ex.patient_id}"
        ds.PatientID = ex.patient_id
        ds.PatientBirthDate = birth.strftime("%Y%m%d")
        ds.PatientSex = ex.sex
        ds.PatientAge = dicom_age(ex.age)
        ds.PatientWeight = _ds(st.weight_kg)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "synthetic phantom, no patient data"
        ds.BodyPartExamined = "ABDOMEN"
        if p != "P":
            ds.ContrastBolusAgent = st.agent
            ds.ContrastBolusRoute = "IV"
            ds.ContrastBolusVolume = _ds(round(2.0 * st.weight_kg, 1))
            ds.ContrastBolusStartTime = dicom_time(st.bolus_start_s)
            ds.ContrastBolusTotalDose = _ds(round(2.0 * st.weight_kg, 1))
            ds.ContrastFlowRate = [_ds(st.flow_rate)]
            ds.ContrastFlowDuration = [_ds(round(2.0 * st.weight_kg / st.flow_rate, 1))]
            ds.ContrastBolusIngredient = "IODINE"
            ds.ContrastBolusIngredientConcentration = "300"
        ds.SliceThickness = _ds(g.dz)
        ds.KVP = str(st.kvp)
        ds.SpacingBetweenSlices = _ds(g.dz)
        ds.DataCollectionDiameter = _ds(round(g.nx * g.dx, 1))
        ds.SoftwareVersions = "liverview"
        ds.ProtocolName = "LIVER 4 PHASE PEDS"
        ds.ReconstructionDiameter = _ds(round(g.nx * g.dx, 1))
        ds.GantryDetectorTilt = "0"
        ds.TableHeight = _ds(round(120.0 + ex.offset[1], 1))
        ds.RotationDirection = "CW"
        ds.ConvolutionKernel = st.kernel
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = st.study_uid
        ds.SeriesInstanceUID = pl.series_uid
        ds.StudyID = "1"
        ds.SeriesNumber = str(pl.series_number)
        ds.AcquisitionNumber = "1"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = st.frame_uid
        ds.PositionReferenceIndicator = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = g.ny
        ds.Columns = g.nx
        ds.PixelSpacing = [_ds(g.dy), _ds(g.dx)]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.WindowCenter = _ds(level)
        ds.WindowWidth = _ds(width)
        ds.WindowCenterWidthExplanation = "LIVER"
        ds.RescaleIntercept = _ds(RESCALE_INTERCEPT)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.BurnedInAnnotation = "NO"
        ds.ImageComments = "liverview synthetic phantom: not patient data"
        return ds

    def _slice(self, stored: np.ndarray, k: int) -> tuple[Dataset, FileMetaDataset, str]:
        """The per-slice elements, file meta and file name of slice `k`."""
        ex, pl = self.exam, self.plan
        ds = Dataset()
        sop = _uid(ex.seed, ex.patient_index, "sop", self.phase, round(float(self.positions[k]), 3))
        ds.SOPInstanceUID = sop
        t = pl.time_s + 0.05 * (len(self.positions) - 1 - k)  # head to foot
        ds.AcquisitionTime = dicom_time(t)
        ds.ContentTime = dicom_time(t + 1.0)
        ds.InstanceCreationTime = dicom_time(t + 20.0)
        ds.InstanceNumber = str(self.instance[k])
        z = float(self.positions[k])
        ds.ImagePositionPatient = [_ds(round(self.x0, 4)), _ds(round(self.y0, 4)), _ds(round(z, 4))]
        ds.SliceLocation = _ds(round(z, 4))
        ds.add_new(0x7FE00010, "OW", stored[k].tobytes())  # PixelData; OW for 16-bit pixels
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = "LIVERVIEW_PH"
        return ds, meta, f"IM-{self.instance[k]:04d}.dcm"

    @staticmethod
    def stored(volume: np.ndarray) -> np.ndarray:
        """HU (rounded, within -1024..3071 as rendered) to stored int16 values."""
        return (volume - F32(RESCALE_INTERCEPT)).astype("<i2")

    def write(self, folder: Path, volume: np.ndarray, indices=None) -> list[Path]:
        """Write slices `indices` (all when None) of `volume` (HU, rounded) into `folder`."""
        folder.mkdir(parents=True, exist_ok=True)
        stored = self.stored(volume)
        encoder = _SeriesEncoder(self._common())
        paths = []
        for k in range(volume.shape[0]) if indices is None else indices:
            ds, meta, name = self._slice(stored, int(k))
            path = folder / name
            path.write_bytes(encoder.encode(ds, meta))
            paths.append(path)
        return paths

    def pydicom_dataset(self, volume: np.ndarray, k: int) -> Dataset:
        """Slice `k` as one pydicom dataset with its file meta: what `write` encodes."""
        ds = self._common()
        varying, meta, _ = self._slice(self.stored(volume), k)
        ds.update(varying)
        ds.file_meta = meta
        return ds
