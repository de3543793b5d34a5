"""PNG overlays of findings: each picked slice with its boxes and a stage's Grad-CAM (PIL + a matplotlib colormap)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw

from liverview.findings.cam import cam_for_phase
from liverview.study.case import Study
from liverview.study.composite import to_unit

MIN_SIDE = 256  # small slices are enlarged (nearest) so boxes and captions stay readable
CAM_ALPHA = 0.5
DETECTION_COLOUR = (255, 220, 0)
ROI_COLOUR = (0, 255, 160)


def overlay_image(
    slice_unit: np.ndarray,
    cam: np.ndarray | None,
    boxes: list[tuple[tuple[float, float, float, float], tuple[int, int, int], int]],
    caption: str = "",
) -> Image.Image:
    """A greyscale slice in [0, 1] with a jet CAM blended in (alpha grows with the map) and boxes
    drawn as (rect in slice pixels, colour, line width)."""
    grey = np.clip(slice_unit, 0.0, 1.0)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    if cam is not None:
        cam = np.clip(cam, 0.0, 1.0)
        colour = colormaps["jet"](cam)[..., :3]
        a = (CAM_ALPHA * cam)[..., None]
        rgb = rgb * (1 - a) + colour * a
    img = Image.fromarray(np.rint(rgb * 255).astype(np.uint8), "RGB")
    k = max(1, int(np.ceil(MIN_SIDE / max(1, min(grey.shape)))))
    if k > 1:
        img = img.resize((grey.shape[1] * k, grey.shape[0] * k), Image.NEAREST)
    draw = ImageDraw.Draw(img)
    for (x0, y0, x1, y1), colour, width in boxes:
        draw.rectangle([x0 * k, y0 * k, x1 * k - 1, y1 * k - 1], outline=colour, width=width)
    if caption:
        draw.rectangle([0, 0, img.width, 14], fill=(0, 0, 0))
        draw.text((3, 2), caption, fill=(255, 255, 255))
    return img


def write_overlays(study: Study, findings: dict, out_dir: str | os.PathLike, windows=None) -> list[Path]:
    """One PNG per composite, phase used and stage (composite<i>_<phase>_<stage>.png), from a findings
    dict (`Findings.to_dict()`, as the engine service returns it and the case file keeps it)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for comp in findings["composites"]:
        i = int(comp["index"])
        detections = comp.get("detections") or []
        roi = comp.get("roi") or {}
        for p in comp["phases_used"]:
            vol = study.volumes[p]
            k = int(comp["slice_index"][p])
            kwargs = {"windows": windows} if windows is not None else {}
            unit = to_unit(vol.pixels[k], p, vol.intensity, vol.window, **kwargs)
            boxes = [(tuple(d["phases"][p]["box"]), DETECTION_COLOUR, 1) for d in detections[:1] if p in d["phases"]]
            if p in (roi.get("phases") or {}):
                boxes.append((tuple(roi["phases"][p]["box"]), ROI_COLOUR, 2))
            for stage, exp in comp.get("explanations", {}).items():
                caption = (
                    f"composite {i + 1} {p} slice {k} | {stage} {exp['target_class']} | "
                    f"p(malig) {comp['stage1']['p_malignant']:.2f} | ROI {roi.get('source', 'none')}"
                )
                cam = cam_for_phase(findings, i, stage, p, tuple(vol.pixels.shape[1:]))
                img = overlay_image(unit, cam, boxes, caption)
                path = out / f"composite{i + 1}_{p}_{stage}.png"
                tmp = path.with_suffix(".png.tmp")
                img.save(tmp, format="PNG")
                os.replace(tmp, path)
                written.append(path)
    return written
