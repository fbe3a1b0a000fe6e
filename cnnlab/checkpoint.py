"""Checkpoints: tensors in safetensors, everything else as JSON in its header. No pickle.

best.safetensors holds the model's weights only; last.ckpt holds the full resume state (a
nested dict of tensors, numbers, strings, lists and dicts). Both are written to a temporary
file in the same directory, fsynced, then renamed over the target, so a crash mid-write
never leaves a torn checkpoint.

A checkpoint is read as a user or a crash may have left it: its JSON must parse, be nested at
most MAX_DEPTH levels, name only tensors the file holds, and have the shape its reader expects
(check_shape); weights must match the model tensor by tensor (load_into). Anything else is a
one-line CheckpointError naming the file and what is wrong, never a KeyError or torch's
multi-line size-mismatch message.
"""

from __future__ import annotations

import json
import os
import random
import re
import stat
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from cnnlab.atomic import atomic_path
from cnnlab.config.safe_yaml import nested_deeper_than
from cnnlab.errors import CheckpointError

_SKELETON_KEY = "cnnlab.state"
_ABOUT_KEY = "cnnlab.about"
# Levels of JSON nesting a header may hold; cnnlab writes about 10 (optimizer state in a dict of
# dicts), so a deeper one is damage, refused before anything recurses into it.
MAX_DEPTH = 64


def _atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    with atomic_path(path) as tmp:
        # safetensors refuses views that share storage; a contiguous copy of each is cheap here.
        tensors = {k: t.detach().cpu().contiguous().clone() for k, t in tensors.items()}
        try:
            save_file(tensors, str(tmp), metadata=metadata)
        except SafetensorError as e:
            # Its I/O errors arrive as text ("... No space left on device (os error 28)"): an
            # OSError again, so that a full disk is told apart from a bug.
            code = re.search(r"os error (\d+)", str(e))
            if code is None:
                raise
            raise OSError(int(code[1]), os.strerror(int(code[1])), str(tmp)) from None


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
    if _ABOUT_KEY not in metadata:
        return {}
    about = _parse(metadata[_ABOUT_KEY], path)
    if not isinstance(about, dict):
        raise CheckpointError(f"{path}: damaged header ({_ABOUT_KEY} is not a JSON object)")
    return about


def save_state(state: dict[str, Any], path: Path) -> None:
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors)
    _atomic_save(tensors, path, metadata={_SKELETON_KEY: json.dumps(skeleton)})


def load_state(path: Path, shape: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The state save_state wrote; `shape` (key -> type, see check_shape) is what the caller
    will read from it, checked here so that a damaged file fails as one line naming it."""
    metadata, tensors = _read(path)
    if _SKELETON_KEY not in metadata:
        raise CheckpointError(f"{path}: not a cnnlab resume checkpoint (weights only?)")
    skeleton = _parse(metadata[_SKELETON_KEY], path)
    try:
        state = _unflatten(skeleton, tensors)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: damaged state ({first_line(e)})") from None
    check_shape(state, dict if shape is None else shape, path)
    return state


def check_shape(value: Any, shape: Any, path: Path, where: str = "") -> None:
    """CheckpointError unless `value` has `shape`: a type or type hint (`int`, `float | None`,
    `list[dict]`, `Any`), or a mapping key -> shape that `value` must be a dict holding. Keys
    the shape does not name are allowed (a newer cnnlab may write more)."""
    if isinstance(shape, Mapping):
        if not isinstance(value, dict):
            raise _wrong(path, where, "an object", value)
        for key, inner in shape.items():
            if key not in value:
                raise CheckpointError(f"{path}: damaged state ({where}{key} is missing)")
            check_shape(value[key], inner, path, f"{where}{key}.")
        return
    if shape is Any:
        return
    origin, args = typing.get_origin(shape), typing.get_args(shape)
    if origin in (typing.Union, types.UnionType):
        if not any(_fits(value, arg) for arg in args):
            raise _wrong(path, where, " or ".join(_name(a) for a in args), value)
    elif not _fits(value, shape):
        raise _wrong(path, where, _name(shape), value)
    elif origin is list and args:
        for i, item in enumerate(value):
            check_shape(item, args[0], path, f"{where}{i}.")
    elif origin is dict and len(args) == 2:
        for key, item in value.items():
            check_shape(item, args[1], path, f"{where}{key}.")


def _fits(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    kind = typing.get_origin(hint) or hint
    if kind is float:  # JSON writes 2.0 as 2.0, but a hand-edited file may say 2
        kind = (int, float)
    if isinstance(value, bool) and kind is not bool:
        return False  # True is an int to Python, never a step count or a learning rate
    return isinstance(value, kind)


def _name(hint: Any) -> str:
    return (
        "null"
        if hint is type(None)
        else getattr(typing.get_origin(hint) or hint, "__name__", str(hint))
    )


def _wrong(path: Path, where: str, expected: str, value: Any) -> CheckpointError:
    at = where.rstrip(".") or "the state"
    return CheckpointError(
        f"{path}: damaged state ({at} is {type(value).__name__}, expected {expected})"
    )


def load_into(module: torch.nn.Module, tensors: Any, path: Path) -> None:
    """module.load_state_dict(tensors), after checking that they fit tensor by tensor: the first
    missing, extra or differently shaped one is named in one line."""
    expected = module.state_dict()
    if not isinstance(tensors, dict):
        raise CheckpointError(f"{path}: damaged weights (not a mapping of tensors)")
    missing = [k for k in expected if k not in tensors]
    extra = [k for k in tensors if k not in expected]
    for names, what in ((missing, "lacks"), (extra, "has")):
        if names:
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            raise CheckpointError(
                f"{path}: weights of another model: it {what} tensor {names[0]!r}{more} that"
                f" this model {'has' if what == 'lacks' else 'lacks'}"
            )
    for key, target in expected.items():
        got = tensors[key]
        if not isinstance(got, torch.Tensor):
            raise CheckpointError(f"{path}: damaged weights ({key} is not a tensor)")
        if got.shape != target.shape:
            raise CheckpointError(
                f"{path}: weights of another model: tensor {key!r} is {list(got.shape)}"
                f" where this model's is {list(target.shape)}"
            )
    module.load_state_dict(tensors)


def _parse(text: str, path: Path) -> Any:
    """JSON from a checkpoint's header, nested at most MAX_DEPTH levels."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: damaged header (not JSON: {first_line(e)})") from None
    if nested_deeper_than(value, MAX_DEPTH):
        raise CheckpointError(f"{path}: damaged header (nested more than {MAX_DEPTH} levels deep)")
    return value


def first_line(e: BaseException) -> str:
    if isinstance(e, KeyError):  # its str() is just the key, quoted
        return f"no key {str(e.args[0] if e.args else '')[:60]!r}"
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _read(path: Path, tensors: bool = True) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """(header metadata, tensors or {}) of a safetensors file, or a CheckpointError naming it."""
    try:
        # A FIFO would block the open and /dev/zero never end: only regular files are read.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise CheckpointError(f"{path}: not a regular file, so not a checkpoint")
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys() if tensors}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except CheckpointError:
        raise
    except Exception as e:  # safetensors raises its own error types for torn or foreign files
        raise CheckpointError(
            f"{path}: not a readable safetensors checkpoint ({first_line(e)})"
        ) from None


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
        key = obj["__tensor__"]
        if not isinstance(key, str) or key not in tensors:
            raise ValueError(f"it names a tensor {str(key)[:40]!r} the file does not hold")
        t = tensors[key]
        return t.numpy() if obj.get("__numpy__") else t
    if "__dict__" in obj:
        return {k: _unflatten(v, tensors) for k, v in obj["__dict__"].items()}
    if "__items__" in obj:
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    raise ValueError(f"unrecognised entry {str(obj)[:80]}")


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
