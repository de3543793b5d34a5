"""Resumable training checkpoints without pickle: tensors in safetensors, everything else in JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from liverview.study.atomic import write_bytes_atomic, write_json_atomic

MODEL = "model."
OPT = "opt."


def _flatten_optimizer(opt_state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict] = {}
    for idx, entry in opt_state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{OPT}{idx}.{name}"] = value.detach().cpu().contiguous().clone()
            else:
                plain.setdefault(str(idx), {})[name] = value
    return tensors, {"param_groups": opt_state["param_groups"], "plain_state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith(OPT):
            idx, name = key[len(OPT) :].split(".", 1)
            state.setdefault(int(idx), {})[name] = value
    for idx, entry in (meta.get("plain_state") or {}).items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    folder: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer, info: dict[str, Any]
) -> None:
    """checkpoint.safetensors (weights + optimizer tensors) and checkpoint.json (epoch, history, config)."""
    folder = Path(folder)
    tensors = {MODEL + k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    tensors.update(opt_tensors)
    write_bytes_atomic(folder / "checkpoint.safetensors", st_save(tensors))
    write_json_atomic(folder / "checkpoint.json", {**info, "optimizer": opt_meta})


def checkpoint_info(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The JSON half of a checkpoint (None when there is none), without touching the tensors."""
    path = Path(folder) / "checkpoint.json"
    if not path.exists() or not (Path(folder) / "checkpoint.safetensors").exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: checkpoint not readable ({exc})") from None


def load_checkpoint(
    folder: str | os.PathLike, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any] | None:
    """Restore model (and optimizer) from `folder`; returns the JSON info, or None when there is none."""
    folder = Path(folder)
    meta_path, data_path = folder / "checkpoint.json", folder / "checkpoint.safetensors"
    if not meta_path.exists() or not data_path.exists():
        return None
    try:
        info = json.loads(meta_path.read_text(encoding="utf-8"))
        tensors = st_load(data_path.read_bytes())
    except Exception as exc:  # a half-written or foreign file: say which
        raise ValueError(f"{folder}: checkpoint not readable ({exc})") from None
    model.load_state_dict({k[len(MODEL) :]: v for k, v in tensors.items() if k.startswith(MODEL)})
    if optimizer is not None:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, info["optimizer"]))
    return info


def save_weights(path: str | os.PathLike, state: dict[str, torch.Tensor]) -> None:
    write_bytes_atomic(path, st_save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}))


def load_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    return st_load(Path(path).read_bytes())
