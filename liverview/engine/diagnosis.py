"""One classifier stage: probabilities, and in the same forward pass Grad-CAM and per-phase attribution.

With `explain`, one forward pass gives the probabilities, the predicted class's logit is
back-propagated once, and that single backward pass gives both the CAM (target-layer
gradients) and gradient x input per channel (the input gradient).

Grad-CAM is computed here over two torch hooks, step for step as pytorch-grad-cam's GradCAM
(1.5) does it, because importing that package pulls in every CAM variant with torchvision
transforms, scikit-learn and ttach: seconds of the engine's start-up for one weighted sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch import nn

from liverview.engine.bundle import Bundle, BundleError
from liverview.engine.networks import build_classifier, cam_reshape_transform, cam_target_layer
from liverview.study.phases import PHASES


@dataclass
class Classifier:
    """A loaded classifier with what its manifest entry says about its input and CAM layer."""

    key: str
    entry: dict[str, Any]
    net: nn.Module
    layer: nn.Module
    reshape: Callable[[torch.Tensor], torch.Tensor] | None
    mean: torch.Tensor  # (C, 1, 1)
    std: torch.Tensor

    @property
    def classes(self) -> list[str]:
        return list(self.entry["classes"])

    @property
    def input_size(self) -> int:
        return int(self.entry["input_size"])

    @property
    def margin(self) -> float:
        return float(self.entry["roi_margin"])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def load_classifier(bundle: Bundle, key: str) -> Classifier:
    """Build the network the manifest describes and load its verified weights (strict)."""
    entry = bundle.model(key)
    where = bundle.folder / entry["file"]
    try:
        with torch.device("meta"):  # shapes only: the random initialisation would be overwritten at once
            net = build_classifier(entry["backbone"], len(entry["classes"]), len(PHASES), int(entry["input_size"]),
                                   entry.get("arch_args"))
    except (ValueError, TypeError) as exc:
        raise BundleError(f"{bundle.folder / 'manifest.json'}: models.{key}: cannot build the network ({exc})") from None
    state = bundle.state_dict(key)
    own = net.state_dict()
    try:
        net.load_state_dict({k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise BundleError(f"{where}: weights do not fit the {entry['backbone']} the manifest describes ({first})") from None
    net.float().eval()
    for p in net.parameters():
        p.requires_grad_(False)  # CAM needs activation and input gradients only
    norm = entry["normalisation"]
    try:
        layer = cam_target_layer(net, entry["backbone"], entry["cam_target_layer"])
    except ValueError as exc:
        raise BundleError(f"{bundle.folder / 'manifest.json'}: models.{key}.cam_target_layer: {exc}") from None
    return Classifier(
        key=key,
        entry=entry,
        net=net,
        layer=layer,
        reshape=cam_reshape_transform(net, entry["backbone"]),
        mean=torch.tensor(norm["mean"], dtype=torch.float32).view(-1, 1, 1),
        std=torch.tensor(norm["std"], dtype=torch.float32).view(-1, 1, 1),
    )


class _PredictedClass:
    """A Grad-CAM target that picks the predicted class from the logits it is given: class 1
    when p(class 1) >= threshold (binary stage-1 call), else the argmax."""

    def __init__(self, threshold: float | None) -> None:
        self.threshold = threshold
        self.chosen = -1

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(logits.detach().float(), dim=-1)
        if self.threshold is not None and p.numel() == 2:
            self.chosen = int(p[1].item() >= self.threshold)
        else:
            self.chosen = int(torch.argmax(p).item())
        return logits[self.chosen]


@dataclass
class StageResult:
    probs: np.ndarray  # (B, classes)
    target: list[int] | None = None  # explained class per composite
    cams: np.ndarray | None = None  # (B, S, S) in [0, 1]
    contribution: np.ndarray | None = None  # (B, C) summed |gradient x input| per channel


def run_stage(clf: Classifier, x_unit: torch.Tensor, explain: bool, threshold: float | None = None) -> StageResult:
    """Classify a (B, C, S, S) batch of ROI inputs in [0, 1]; with `explain`, also Grad-CAM of the
    predicted class and per-channel |gradient x input| fractions."""
    if not explain:
        with torch.inference_mode():
            logits = clf.net(clf.normalise(x_unit))
        return StageResult(torch.softmax(logits.float(), dim=-1).numpy())
    xn = clf.normalise(x_unit).detach().requires_grad_(True)
    targets = [_PredictedClass(threshold) for _ in range(xn.shape[0])]
    maps, logits = grad_cam(clf.net, clf.layer, clf.reshape, xn, targets)
    probs = torch.softmax(logits.float(), dim=-1).numpy()
    # d logit / d x_unit = (d logit / d x_norm) / std; masked (zero) pixels and missing phases add nothing.
    contrib = (xn.grad / clf.std * x_unit).abs().sum(dim=(2, 3)).double().numpy()
    return StageResult(probs, [t.chosen for t in targets], np.asarray(maps, dtype=np.float32), contrib)


def _scale_maps(cams: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """Each map shifted to min 0, divided by (1e-7 + max), optionally resized to `size` (width, height) bilinearly."""
    out = []
    for img in cams:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if size is not None:
            img = cv2.resize(np.float32(img), size)
        out.append(img)
    return np.float32(out)


def grad_cam(
    net: nn.Module,
    layer: nn.Module,
    reshape: Callable[[torch.Tensor], torch.Tensor] | None,
    x: torch.Tensor,
    targets: list[Callable[[torch.Tensor], torch.Tensor]],
) -> tuple[np.ndarray, torch.Tensor]:
    """Grad-CAM on `layer` of each sample's target (a function of its logits): ((B, H, W) maps in [0, 1], logits).

    `x` must require grad; its .grad holds d(sum of targets)/dx afterwards.
    """
    activations: list[torch.Tensor] = []
    gradients: list[torch.Tensor] = []

    def keep(t: torch.Tensor) -> torch.Tensor:
        return (reshape(t) if reshape is not None else t).cpu().detach()

    def hook(module, inputs, output) -> None:
        activations.append(keep(output))
        if getattr(output, "requires_grad", False):
            output.register_hook(lambda grad: gradients.insert(0, keep(grad)))

    net.eval()
    handle = layer.register_forward_hook(hook)
    try:
        logits = net(x.to(next(net.parameters()).device))
        net.zero_grad()
        loss = sum([target(output) for target, output in zip(targets, logits)])
        loss.backward()
    finally:
        handle.remove()
    acts = activations[0].numpy()
    grads = gradients[0].numpy()
    weights = np.mean(grads, axis=(2, 3))
    cam = np.maximum((weights[:, :, None, None] * acts).sum(axis=1), 0)
    per_layer = _scale_maps(cam, (x.size(-1), x.size(-2)))[:, None, :]
    maps = _scale_maps(np.mean(np.maximum(per_layer, 0), axis=1))
    return maps, logits.detach()


def attribution_fractions(contribution: np.ndarray, phases_used: tuple[str, ...]) -> dict[str, float]:
    """Per-phase fractions of one composite's contribution (sum 1); evenly over the phases used
    when the gradient vanished everywhere."""
    c = np.asarray(contribution, dtype=np.float64)
    total = float(c.sum())
    if total > 0 and np.isfinite(total):
        return {p: float(c[i] / total) for i, p in enumerate(PHASES)}
    used = [p for p in PHASES if p in phases_used] or list(PHASES)
    return {p: (1.0 / len(used) if p in used else 0.0) for p in PHASES}
