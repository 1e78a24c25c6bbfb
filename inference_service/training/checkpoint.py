"""Resumable training checkpoints in .safetensors: model, optimizer state, step, RNG states.

No pickle anywhere: tensors go into the safetensors body ("model/...", "optim/<param>/<key>",
"rng/torch"), everything else (optimizer hyper-parameters and scalar state, configs, loss
history, the numpy generator state) into the string metadata as JSON.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

KIND = "findlora-train-checkpoint"


@dataclass
class TrainingState:
    step: int
    epoch: int
    losses: list[float]
    numpy_rng: dict[str, Any]
    extra: dict[str, str]


def save_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState
) -> None:
    tensors: dict[str, torch.Tensor] = {
        f"model/{k}": v.detach().contiguous().cpu().clone() for k, v in model.state_dict().items()
    }
    optim = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in optim["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{key}"] = value.detach().contiguous().cpu().clone()
            else:
                scalars.setdefault(str(index), {})[key] = value
    tensors["rng/torch"] = torch.get_rng_state().clone()
    metadata = {
        "kind": KIND,
        "step": str(state.step),
        "epoch": str(state.epoch),
        "losses": json.dumps(state.losses),
        "numpy_rng": json.dumps(state.numpy_rng),
        "optim_param_groups": json.dumps(optim["param_groups"]),
        "optim_scalars": json.dumps(scalars),
        **state.extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata=metadata)
    os.replace(partial, path)  # never leave a half-written checkpoint behind


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> TrainingState:
    """Restore model, optimizer and torch RNG in place; return the step counters and the rest."""
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        if metadata.get("kind") != KIND:
            raise ValueError(f"{path} is not a findlora training checkpoint")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    model.load_state_dict({k.removeprefix("model/"): v for k, v in tensors.items() if k.startswith("model/")})
    optim_state: dict[int, dict[str, Any]] = {
        int(index): dict(values) for index, values in json.loads(metadata["optim_scalars"]).items()
    }
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            optim_state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(
        {"state": optim_state, "param_groups": json.loads(metadata["optim_param_groups"])}
    )
    torch.set_rng_state(tensors["rng/torch"])
    known = {"kind", "step", "epoch", "losses", "numpy_rng", "optim_param_groups", "optim_scalars"}
    return TrainingState(
        step=int(metadata["step"]),
        epoch=int(metadata["epoch"]),
        losses=[float(v) for v in json.loads(metadata["losses"])],
        numpy_rng=json.loads(metadata["numpy_rng"]),
        extra={k: v for k, v in metadata.items() if k not in known},
    )


def restore_generator(state: dict[str, Any]) -> np.random.Generator:
    generator = np.random.default_rng()
    generator.bit_generator.state = state
    return generator
