"""What the reader sees, apart from the images: layout, windows, active phase, CAM stage and opacity."""

from __future__ import annotations

from dataclasses import dataclass, field

from psygnal import evented

LAYOUTS = ("2x2", "1x4", "single")


@evented
@dataclass
class ViewState:
    """The view settings of one reading; each field has its own change event (`view.events.<field>`)."""

    layout: str = "2x2"
    active_phase: str = "P"
    preset: str = "METHOD"
    link_windows: bool = True
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)  # phase -> (level, width)
    cam_visible: bool = True
    cam_stage: str = "stage1"
    cam_opacity: float = 0.55
    cam_cmap: str = "turbo"
