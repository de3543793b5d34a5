"""Volume: a 3-D image in HU (or windowed 8-bit exports) with its patient-space geometry."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

HU = "HU"
WINDOWED = "windowed"


@dataclass(eq=False)
class Volume:
    """Pixels indexed [slice, row, col], slices sorted by position along the slice normal.

    `affine` maps (col, row, slice, 1) to patient coordinates (DICOM LPS, mm).
    `intensity` is HU for CT pixels with the modality LUT applied, or WINDOWED for 8-bit
    exports already windowed to [0, 255]; then `window` holds the (level, width) the export
    used when it is known.
    `ready` marks the slices whose pixels are decoded; loaders fill it as they go so the
    first slices can be shown before the rest arrive.
    """

    pixels: np.ndarray
    affine: np.ndarray
    intensity: str = HU
    window: tuple[float, float] | None = None
    series_uid: str = ""
    description: str = ""
    meta: dict = field(default_factory=dict)
    ready: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3:
            raise ValueError(f"Volume pixels must be 3-D (slice, row, col), got shape {self.pixels.shape}")
        self.affine = np.asarray(self.affine, dtype=np.float64)
        if self.affine.shape != (4, 4):
            raise ValueError(f"Volume affine must be 4x4, got {self.affine.shape}")
        if self.intensity not in (HU, WINDOWED):
            raise ValueError(f"Volume intensity must be {HU!r} or {WINDOWED!r}, got {self.intensity!r}")
        if self.ready is None:
            self.ready = np.ones(self.pixels.shape[0], dtype=bool)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.pixels.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """(slice, row, col) spacing in mm."""
        col, row, sl = (float(np.linalg.norm(self.affine[:3, i])) for i in range(3))
        return (sl, row, col)

    @property
    def normal(self) -> np.ndarray:
        """Unit vector along increasing slice index."""
        n = self.affine[:3, 2]
        norm = np.linalg.norm(n)
        if norm == 0:
            return np.cross(self.affine[:3, 0], self.affine[:3, 1]) / max(
                np.linalg.norm(np.cross(self.affine[:3, 0], self.affine[:3, 1])), 1e-12
            )
        return n / norm

    @property
    def positions(self) -> np.ndarray:
        """Position of every slice along the slice normal (mm), ascending (read-only array)."""
        # cached: the viewer asks on every scroll step; the key keeps it right if the affine is replaced
        key = (self.affine.tobytes(), self.pixels.shape[0])
        cached = self.__dict__.get("_positions")
        if cached is not None and cached[0] == key:
            return cached[1]
        origin = self.affine[:3, 3]
        step = self.affine[:3, 2]
        n = self.normal
        k = np.arange(self.pixels.shape[0], dtype=np.float64)
        pos = float(origin @ n) + k * float(step @ n)
        pos.flags.writeable = False
        self.__dict__["_positions"] = (key, pos)
        return pos

    def index_at(self, position: float) -> int:
        """Index of the slice nearest to `position` (mm along the normal)."""
        return int(np.argmin(np.abs(self.positions - position)))

    def position_of(self, index: int) -> float:
        return float(self.positions[index])

    def slice_at(self, position: float) -> np.ndarray:
        return self.pixels[self.index_at(position)]

    def to_patient(self, col: float, row: float, index: float) -> np.ndarray:
        """Patient coordinates (mm) of a pixel position."""
        return (self.affine @ np.array([col, row, index, 1.0]))[:3]

    def box_to_patient(self, x0: float, y0: float, x1: float, y1: float, index: float) -> list[list[float]]:
        """Patient corners (mm) of a box on slice `index` whose coordinates are pixel edges.

        Pixel (c, r) covers [c, c+1) x [r, r+1) in box coordinates (as in LabelMe, YOLO and
        the phantom's truth), while the affine maps pixel centres, so edges shift by half a pixel.
        """
        return [[float(c) for c in self.to_patient(x - 0.5, y - 0.5, index)] for x, y in ((x0, y0), (x1, y1))]

    def to_pixel(self, point: np.ndarray) -> np.ndarray:
        """(col, row, index) of a patient-space point."""
        inv = np.linalg.inv(self.affine)
        return (inv @ np.append(np.asarray(point, dtype=np.float64), 1.0))[:3]

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)


def affine_from_dicom(
    position: np.ndarray, orientation: np.ndarray, pixel_spacing: tuple[float, float], slice_step: np.ndarray
) -> np.ndarray:
    """Build the (col, row, slice) -> LPS affine from DICOM geometry.

    `orientation` is ImageOrientationPatient (row direction cosines, then column);
    `pixel_spacing` is PixelSpacing (row spacing, column spacing); `slice_step` the vector
    between consecutive slice origins.
    """
    o = np.asarray(orientation, dtype=np.float64)
    a = np.eye(4)
    a[:3, 0] = o[:3] * float(pixel_spacing[1])
    a[:3, 1] = o[3:6] * float(pixel_spacing[0])
    a[:3, 2] = np.asarray(slice_step, dtype=np.float64)
    a[:3, 3] = np.asarray(position, dtype=np.float64)
    return a
