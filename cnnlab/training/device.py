"""train.device and train.deterministic -> the torch device and global kernel settings."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from cnnlab import models
from cnnlab.config.safe_yaml import quote
from cnnlab.config.schema import DEVICE_PATTERN, DEVICES, Config
from cnnlab.data.limits import memory_bytes
from cnnlab.errors import ConfigError
from cnnlab.models.transfer import DataShape


def resolve_device(name: str) -> torch.device:
    """train.device (or a --device flag) -> an existing device; ConfigError (one line) for
    another spelling (meta, xla, cpu:7), a cuda:N past the GPUs visible, or no such backend."""
    if not isinstance(name, str) or not DEVICE_PATTERN.fullmatch(name):
        raise ConfigError(f"train.device = {quote(name)}: expected {DEVICES}")
    device = _resolve(name)
    keep_freed_memory()  # CPU tensors live in host memory whatever the device: always worth it
    return device


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit
_TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks up to 32 MiB for reuse instead of handing them back
    to the OS. By default a CPU activation of a few MiB and up is mmap'd, freed with munmap and
    page-faulted in again on the next batch: evaluating the default cnn on 28 px images in
    batches of 256 spent a fifth of its time in the kernel (1,790 -> 2,280 images/s with this).
    Process-wide and idempotent; False where there is no glibc (macOS, Windows, musl)."""
    global _kept
    if _kept is None:
        _kept = _mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and _mallopt(
            _M_TRIM_THRESHOLD, _TRIM_THRESHOLD
        )
    return _kept


_kept: bool | None = None


def _mallopt(param: int, value: int) -> bool:
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(param, value))
    except (OSError, AttributeError):  # no libc.so.6 or no mallopt in it (musl)
        return False


def _resolve(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"train.device = {name!r}: expected auto, cpu, cuda, cuda:N or mps"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if count == 0:
            raise ConfigError(
                f"train.device = {name!r}: no CUDA GPU is visible here; use train.device=auto"
            )
        if device.index is not None and device.index >= count:
            raise ConfigError(f"train.device = {name!r}: only {count} CUDA device(s) visible")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device = {name!r}: MPS is not available on this machine")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether `device` is a CPU with AMX tiles (Intel Xeon since Sapphire Rapids), where oneDNN
    multiplies bf16 several times faster than fp32: 2.2 TFLOP/s against 0.33 for a 2048² matmul
    on the 2-core VM here. torch only exposes the check privately; without it, False."""
    check = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and check is not None and bool(check())


def resolve_precision(precision: str, device: torch.device) -> str:
    """train.precision auto: bf16 autocast where `device` multiplies bf16 natively (a CUDA GPU
    with bf16, a CPU with AMX), fp32 elsewhere (bf16 on a CPU without AMX is several times
    slower than fp32); any other value as it is."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if native_bf16(device) else "fp32"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


@contextmanager
def kernel_mode(deterministic: bool) -> Iterator[None]:
    """Deterministic kernels for the duration of a run; the previous settings come back after."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.backends.cudnn.benchmark,
        os.environ.get("CUBLAS_WORKSPACE_CONFIG"),
    )
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = not deterministic
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark = saved[1]
        if saved[2] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)


def check_fits(config: Config, data: DataShape, device: torch.device) -> None:
    """ConfigError, before anything is allocated or a run directory made, when training the
    network needs more memory than `device` has free (models.footprint: a floor, so a run
    refused here could never have trained)."""
    half = resolve_precision(config.train.precision, device) in ("bf16", "fp16")
    need = models.footprint(config, data, value_bytes=2 if half else 4)
    have = available_memory(device)
    if need is None or have is None or need.total_bytes <= have:
        return
    c, (h, w) = data.channels, data.image_size
    raise ConfigError(
        f"model.name = {config.model.name!r} with {need.params:,} parameters on {c}×{h}×{w}"
        f" images in batches of {need.batch_size} (train.batch_size) needs at least"
        f" {_gib(need.total_bytes)} to train ({_gib(need.param_bytes)} of weights and gradients,"
        f" {_gib(need.activation_bytes)} of activations) and the {device.type} has"
        f" {_gib(have)} free; make the model (model.width, model.layers), data.image_size or"
        " train.batch_size smaller"
    )


def available_memory(device: torch.device) -> int | None:
    """Bytes a new allocation on `device` can take; None where that cannot be asked."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        return memory_bytes()
    return None


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"
