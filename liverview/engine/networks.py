"""Classifier builders (ResNet18, DenseNet121, small ViT) with a 4-channel first layer, and their CAM layers."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from liverview.engine import resnet

BACKBONES = ("resnet18", "densenet121", "vit")

# A ViT small enough to train and run on a CPU workstation; arch_args override any key.
VIT_DEFAULTS = {"patch_size": 16, "num_layers": 6, "num_heads": 3, "hidden_dim": 192, "mlp_dim": 768}
RESNET18_DEFAULTS = {"layers": [2, 2, 2, 2]}
DENSENET121_DEFAULTS = {"growth_rate": 32, "block_config": [6, 12, 24, 16], "num_init_features": 64, "bn_size": 4}

_ALLOWED_ARGS = {
    "resnet18": {"layers", "zero_init_residual"},
    "densenet121": {"growth_rate", "block_config", "num_init_features", "bn_size", "drop_rate", "memory_efficient"},
    "vit": {"patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim", "dropout", "attention_dropout"},
}


def check_backbone(backbone: str) -> str:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}: expected one of {', '.join(BACKBONES)}")
    return backbone


def resolved_arch_args(backbone: str, arch_args: dict | None = None) -> dict:
    """The full architecture arguments (defaults + overrides) a bundle records for a backbone."""
    check_backbone(backbone)
    extra = dict(arch_args or {})
    unknown = set(extra) - _ALLOWED_ARGS[backbone]
    if unknown:
        raise ValueError(
            f"arch_args for {backbone}: unknown key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_ALLOWED_ARGS[backbone]))}"
        )
    defaults = {"resnet18": RESNET18_DEFAULTS, "densenet121": DENSENET121_DEFAULTS, "vit": VIT_DEFAULTS}[backbone]
    return {**defaults, **extra}


def _first_conv_path(backbone: str) -> str:
    return {"resnet18": "conv1", "densenet121": "features.conv0", "vit": "conv_proj"}[backbone]


def _build_rgb(backbone: str, num_classes: int, input_size: int, args: dict) -> nn.Module:
    if backbone == "resnet18":
        return resnet.ResNet(
            list(args["layers"]),
            num_classes=num_classes,
            zero_init_residual=bool(args.get("zero_init_residual", False)),
        )
    from torchvision.models import densenet, vision_transformer  # slow to import: only for these backbones

    if backbone == "densenet121":
        return densenet.DenseNet(
            growth_rate=int(args["growth_rate"]),
            block_config=tuple(args["block_config"]),
            num_init_features=int(args["num_init_features"]),
            bn_size=int(args["bn_size"]),
            drop_rate=float(args.get("drop_rate", 0.0)),
            num_classes=num_classes,
            memory_efficient=bool(args.get("memory_efficient", False)),
        )
    patch = int(args["patch_size"])
    if input_size % patch:
        raise ValueError(f"vit: input_size {input_size} is not a multiple of patch_size {patch}")
    return vision_transformer.VisionTransformer(
        image_size=input_size,
        patch_size=patch,
        num_layers=int(args["num_layers"]),
        num_heads=int(args["num_heads"]),
        hidden_dim=int(args["hidden_dim"]),
        mlp_dim=int(args["mlp_dim"]),
        dropout=float(args.get("dropout", 0.0)),
        attention_dropout=float(args.get("attention_dropout", 0.0)),
        num_classes=num_classes,
    )


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Read a local weight file without unpickling code (safetensors, or torch.load weights_only)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ImageNet weight file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a state dict")
    return state


def _load_imagenet(model: nn.Module, backbone: str, input_size: int, path: Path) -> None:
    """Load ImageNet weights into the 3-channel model; the class head and mismatched shapes are skipped."""
    state = _read_state(path)
    if backbone == "vit" and "encoder.pos_embedding" in state:
        patch = model.patch_size
        if state["encoder.pos_embedding"].shape != model.encoder.pos_embedding.shape:
            from torchvision.models import vision_transformer

            state = vision_transformer.interpolate_embeddings(input_size, patch, state)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    head = {"resnet18": "fc.", "densenet121": "classifier.", "vit": "heads."}[backbone]
    missing = [k for k in own if k not in usable and not k.startswith(head)]
    if missing:
        raise ValueError(
            f"{path}: does not fit {backbone} ({len(missing)} tensors missing or of another shape, "
            f"first: {missing[0]})"
        )
    model.load_state_dict(usable, strict=False)


def _adapt_first_conv(model: nn.Module, backbone: str, in_channels: int) -> None:
    """Swap the first conv for one taking `in_channels`.

    The RGB filters go to the first three channels, every extra channel gets their mean, and
    all are scaled by 3 / in_channels so activations keep their ImageNet magnitude.
    """
    path = _first_conv_path(backbone)
    parent_name, _, attr = path.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    old: nn.Conv2d = getattr(parent, attr)
    if old.in_channels == in_channels:
        return
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    if old.weight.is_meta:  # shapes only, for loading: a reduction on the meta device imports ~900 modules
        setattr(parent, attr, new)
        return
    with torch.no_grad():
        w = old.weight
        mean = w.mean(dim=1, keepdim=True)
        parts = [w[:, : min(in_channels, w.shape[1])]]
        if in_channels > w.shape[1]:
            parts.append(mean.repeat(1, in_channels - w.shape[1], 1, 1))
        new.weight.copy_(torch.cat(parts, dim=1) * (w.shape[1] / in_channels))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    setattr(parent, attr, new)


def build_classifier(
    backbone: str,
    num_classes: int = 2,
    in_channels: int = 4,
    input_size: int = 224,
    arch_args: dict | None = None,
    imagenet_weights: str | None = None,
) -> nn.Module:
    """A torchvision classifier with its first layer taking `in_channels` (P, A, V, D).

    Never downloads: torchvision weights are only used from a local file (`imagenet_weights`,
    .pth read with weights_only=True or .safetensors) and then the RGB filters seed the extra
    channel(s). Without that file the network is randomly initialised.
    """
    check_backbone(backbone)
    args = resolved_arch_args(backbone, arch_args)
    model = _build_rgb(backbone, num_classes, input_size, args)
    if imagenet_weights:
        _load_imagenet(model, backbone, input_size, Path(imagenet_weights))
    _adapt_first_conv(model, backbone, in_channels)
    return model


def cam_target_layer_name(backbone: str, model: nn.Module | None = None) -> str:
    """Dotted module name of the Grad-CAM target layer (what a bundle manifest records)."""
    check_backbone(backbone)
    if backbone == "resnet18":
        n = len(model.layer4) if model is not None else 2
        return f"layer4.{n - 1}"
    if backbone == "densenet121":
        return "features.norm5"
    n = len(model.encoder.layers) if model is not None else VIT_DEFAULTS["num_layers"]
    return f"encoder.layers.encoder_layer_{n - 1}.ln_1"


def cam_target_layer(model: nn.Module, backbone: str, name: str | None = None) -> nn.Module:
    """The Grad-CAM target layer: the last residual block, DenseNet's final norm, or ViT's last ln_1."""
    name = name or cam_target_layer_name(backbone, model)
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{backbone}: no layer named {name!r} for Grad-CAM") from None


def cam_reshape_transform(model: nn.Module, backbone: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """For ViT, turn token activations (B, 1 + h*w, C) into a feature map (B, C, h, w); None otherwise."""
    if backbone != "vit":
        return None
    grid_h = model.image_size // model.patch_size
    grid_w = grid_h

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        x = tokens[:, 1:, :]  # drop the class token
        return x.reshape(x.shape[0], grid_h, grid_w, x.shape[2]).permute(0, 3, 1, 2)

    return reshape
