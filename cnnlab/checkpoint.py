"""Checkpoints: tensors in safetensors, everything else as JSON in its header. No pickle.

best.safetensors holds the model's weights only; last.ckpt holds the full resume state (a
nested dict of tensors, numbers, strings, lists and dicts). Both are written to a temporary
file in the same directory, fsynced, then renamed over the target, so a crash mid-write
never leaves a torn checkpoint.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cnnlab.atomic import atomic_path
from cnnlab.errors import CheckpointError

_SKELETON_KEY = "cnnlab.state"
_ABOUT_KEY = "cnnlab.about"


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        # safetensors refuses views that share storage; a contiguous copy of each is cheap here.
        save_file(
            {k: t.detach().cpu().contiguous().clone() for k, t in tensors.items()},
            str(tmp),
            metadata=metadata,
        )


def save_weights(model: torch.nn.Module, path: Path, about: dict[str, Any] | None = None) -> None:
    """about: plain data describing the weights (the run's config and data), kept as JSON in the
    header so the file alone can rebuild its model (a transfer backbone, say)."""
    metadata = {"format": "cnnlab.weights"}
    if about is not None:
        metadata[_ABOUT_KEY] = json.dumps(about)
    _atomic_save(dict(model.state_dict()), path, metadata=metadata)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return _read(path)[1]


def weights_about(path: Path) -> dict[str, Any]:
    """What save_weights(about=...) recorded; {} for files without it. Reads only the header."""
    metadata = _read(path, tensors=False)[0]
    return json.loads(metadata[_ABOUT_KEY]) if _ABOUT_KEY in metadata else {}


def save_state(state: dict[str, Any], path: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    _atomic_save(tensors, path, metadata={_SKELETON_KEY: json.dumps(skeleton)})


def load_state(path: Path) -> dict[str, Any]:
    metadata, tensors = _read(path)
    if _SKELETON_KEY not in metadata:
        raise CheckpointError(f"{path}: not a cnnlab resume checkpoint (weights only?)")
    return _unflatten(json.loads(metadata[_SKELETON_KEY]), tensors)


def _read(path: Path, tensors: bool = True) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(header metadata, tensors or {}) of a safetensors file, or a CheckpointError naming it."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys() if tensors}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as e:  # safetensors raises its own error types for torn or foreign files
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({e})") from None


def _flatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace tensors by {"__tensor__": key}; keep non-string dict keys and tuples typed."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return _flatten(torch.from_numpy(obj.copy()), tensors) | {"__numpy__": True}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {"__dict__": {k: _flatten(v, tensors) for k, v in obj.items()}}
        return {"__items__": [[_flatten(k, tensors), _flatten(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        t = tensors[obj["__tensor__"]]
        return t.numpy() if obj.get("__numpy__") else t
    if "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    raise CheckpointError(f"unrecognised checkpoint entry {obj!r}")


def rng_state() -> dict[str, Any]:
    """Every random generator a run may draw from, outside the loaders' own generators."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
