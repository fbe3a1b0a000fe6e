"""train.device (or a --device flag) that names no usable device: one line, before anything runs."""

import pytest
import torch

from cnnlab.errors import ConfigError
from cnnlab.training.device import resolve_device


def refused(name: str) -> str:
    with pytest.raises(ConfigError) as e:
        resolve_device(name)
    message = str(e.value)
    assert message.startswith("train.device = ") and "\n" not in message
    return message


@pytest.mark.parametrize("name", ["meta", "xla", "hpu", "cpu:7", "cuda:-1", "CUDA", "", "cuda:x"])
def test_spellings_outside_the_five_forms_are_refused(name):
    # --device flags reach resolve_device without the schema; torch.device("meta") would work.
    assert "expected auto, cpu, cuda, cuda:N or mps" in refused(name)


def test_cuda_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert "no CUDA GPU is visible" in refused("cuda")
    assert "no CUDA GPU is visible" in refused("cuda:0")


def test_a_gpu_index_past_the_count_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert "only 2 CUDA device(s) visible" in refused("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda:1")  # exists: resolved, not used


def test_auto_and_cpu_always_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
