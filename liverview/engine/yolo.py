"""The only module that imports ultralytics: YOLOv8 built from YAML with 4 input channels, and inference.

ultralytics is told to stay offline and to keep its settings in liverview's cache folder
before it is imported. Weights never go through ultralytics' .pt checkpoint loader (it unpickles): the network
is built from the vendored YAML only (never from a manifest's description, which ultralytics
would partly eval) and its state dict is loaded from safetensors by the bundle.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "liverview" / "ultralytics"


os.environ["YOLO_OFFLINE"] = "true"
os.environ.setdefault("YOLO_CONFIG_DIR", str(_cache_dir()))
os.environ.setdefault("YOLO_VERBOSE", "false")

from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import YAML  # noqa: E402
from ultralytics.utils.nms import non_max_suppression  # noqa: E402

YAML_PATH = Path(__file__).with_name("yolov8.yaml")  # vendored copy of ultralytics' yolov8.yaml
SCALES = ("n", "s", "m", "l", "x")
PAD_VALUE = 114.0 / 255.0  # ultralytics' letterbox grey, on [0, 1] inputs


def detector_cfg(arch: str = "yolov8n", channels: int = 4, nc: int = 1) -> dict:
    """The model description for `arch` ("yolov8" + scale letter) as the dict DetectionModel takes."""
    if not (isinstance(arch, str) and arch.startswith("yolov8") and len(arch) == 7 and arch[-1] in SCALES):
        raise ValueError(f"unknown detector arch {arch!r}: expected yolov8n, yolov8s, yolov8m, yolov8l or yolov8x")
    cfg = YAML.load(YAML_PATH)
    cfg["scale"] = arch[-1]
    cfg["nc"] = int(nc)
    cfg["channels"] = int(channels)
    cfg["yaml_file"] = f"{arch}.yaml"
    return cfg


def described_arch(cfg: Mapping, arch: str) -> str:
    """`arch` when the description `cfg` (a manifest's detector "yaml") is the engine's own network for it.

    The description is first checked against the allow-list of liverview.engine.manifest (no
    `activation`, known module names, literal arguments); ValueError says what differs. The
    engine never builds from `cfg` itself: callers build `arch` from the vendored YAML.
    """
    from liverview.engine.errors import BundleError
    from liverview.engine.manifest import DETECTOR_ARCHS, check_detector_yaml

    try:
        check_detector_yaml(cfg, Path("detector description"), "yaml")
    except BundleError as exc:
        raise ValueError(str(exc).split(": ", 1)[1]) from None
    if arch not in DETECTOR_ARCHS:
        raise ValueError(f"unknown detector arch {arch!r}: expected one of {', '.join(DETECTOR_ARCHS)}")
    own = detector_cfg(arch)
    scale = cfg.get("scale") or (cfg["yaml_file"][-6] if "yaml_file" in cfg else arch[-1])
    if scale != arch[-1]:
        raise ValueError(f"describes scale {scale!r}, the manifest names {arch}")
    if list((cfg.get("scales") or {}).get(scale) or []) != list(own["scales"][scale]):
        raise ValueError(f"scales.{scale} is not {own['scales'][scale]} (the {arch} depth, width and channel cap)")
    for part in ("backbone", "head"):
        if cfg[part] != own[part]:
            layer = next((i for i, (a, b) in enumerate(zip(cfg[part], own[part])) if a != b), min(len(cfg[part]), len(own[part])))
            raise ValueError(f"{part}[{layer}] differs from {arch}'s own network")
    return arch


def build_detector(scale: str = "n", channels: int = 4, nc: int = 1) -> DetectionModel:
    """A randomly initialised YOLOv8{scale} DetectionModel taking `channels` input channels."""
    if scale not in SCALES:
        raise ValueError(f"unknown YOLOv8 scale {scale!r}: expected one of {', '.join(SCALES)}")
    cfg = detector_cfg(f"yolov8{scale}", channels, nc)
    return DetectionModel(copy.deepcopy(cfg), ch=int(channels), nc=int(nc), verbose=False)


def detector_from_state(
    arch: str | Mapping, state_dict: Mapping[str, torch.Tensor], channels: int = 4, nc: int = 1, fuse: bool = True,
    declared_arch: str | None = None,
) -> DetectionModel:
    """Build the detector `arch` ("yolov8n", ...) from the vendored YAML and load `state_dict` strictly;
    fused (conv+BN) and in eval mode for inference when `fuse`.

    A description dict (a manifest's "yaml") is accepted only where it is the engine's own network
    for `declared_arch` (default: the scale it names), and then that network is built from the
    vendored YAML: nothing of the dict reaches ultralytics.
    """
    if isinstance(arch, Mapping):
        scale, file = arch.get("scale"), arch.get("yaml_file")
        named = scale if isinstance(scale, str) else file[-6:-5] if isinstance(file, str) else ""
        guess = declared_arch or f"yolov8{named or 'n'}"
        arch = described_arch(arch, guess)
    cfg = detector_cfg(arch, channels, nc)
    model = DetectionModel(cfg, ch=int(channels), nc=int(nc), verbose=False)
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state_dict.items()}
    model.load_state_dict(state, strict=True)
    model.float().eval()
    if fuse:
        model.fuse(verbose=False)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def letterbox(images: Sequence[np.ndarray], size: int) -> tuple[torch.Tensor, list[tuple[float, int, int]]]:
    """Resize each (C, H, W) image so its longer side is `size`, pad to a centred square with
    ultralytics' grey, and stack. Returns the batch and per image (ratio, left pad, top pad)."""
    batch, params = [], []
    for img in images:
        t = torch.as_tensor(np.asarray(img, dtype=np.float32))[None]
        h, w = t.shape[-2:]
        r = size / max(h, w)
        nw, nh = max(round(w * r), 1), max(round(h * r), 1)
        if (nh, nw) != (h, w):
            t = F.interpolate(t, size=(nh, nw), mode="bilinear", align_corners=False, antialias=r < 1)
        dw, dh = (size - nw) / 2.0, (size - nh) / 2.0
        top, left = round(dh - 0.1), round(dw - 0.1)
        t = F.pad(t, (left, size - nw - left, top, size - nh - top), value=PAD_VALUE)
        batch.append(t[0])
        params.append((r, left, top))
    return torch.stack(batch), params


def raw_predictions(model: DetectionModel, batch: torch.Tensor) -> torch.Tensor:
    """The detector's (B, 4 + nc, anchors) output: xywh in input pixels and class scores."""
    out = model(batch)
    return out[0] if isinstance(out, (tuple, list)) else out


def postprocess(
    pred: torch.Tensor,
    params: Sequence[tuple[float, int, int]],
    shapes: Sequence[tuple[int, int]],
    conf: float,
    iou: float,
    max_det: int = 10,
) -> list[np.ndarray]:
    """NMS, then boxes mapped back to each image's pixels: per image an (n, 5) array
    (x0, y0, x1, y1, score), best first, clipped to the image, empty boxes dropped."""
    kept = non_max_suppression(pred, conf_thres=conf, iou_thres=iou, max_det=max_det)
    out = []
    for det, (r, left, top), (h, w) in zip(kept, params, shapes):
        d = det[:, :5].detach().cpu().numpy().astype(np.float64)
        d[:, [0, 2]] = np.clip((d[:, [0, 2]] - left) / r, 0, w)
        d[:, [1, 3]] = np.clip((d[:, [1, 3]] - top) / r, 0, h)
        d = d[(d[:, 2] - d[:, 0] >= 1.0) & (d[:, 3] - d[:, 1] >= 1.0)]
        out.append(d[np.argsort(-d[:, 4], kind="stable")])
    return out


@torch.inference_mode()
def detect(
    model: DetectionModel, images: Sequence[np.ndarray], size: int, conf: float, iou: float, max_det: int = 10
) -> list[np.ndarray]:
    """Run the detector on (C, H, W) images in [0, 1]; per image an (n, 5) array of boxes in its pixels."""
    if not len(images):
        return []
    batch, params = letterbox(images, size)
    pred = raw_predictions(model, batch)
    shapes = [tuple(np.asarray(i).shape[-2:]) for i in images]
    return postprocess(pred, params, shapes, conf, iou, max_det)
