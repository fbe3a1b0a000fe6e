import sys

import pytest
import torch

from cnnlab.training import device as device_module
from cnnlab.training.device import keep_freed_memory, resolve_device


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_glibc_keeps_freed_blocks_and_cpu_tensors_still_work():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent
    for _ in range(3):  # blocks above and below the 32 MiB threshold, freed and reused
        a = torch.ones(40 << 20, dtype=torch.uint8)
        b = torch.full((4 << 20,), 2.0)
        assert int(a.sum()) == 40 << 20 and float(b[-1]) == 2.0
        del a, b


def test_resolving_a_device_sets_the_allocator_up(monkeypatch):
    calls = []
    monkeypatch.setattr(device_module, "keep_freed_memory", lambda: calls.append(1) or True)
    assert resolve_device("cpu") == torch.device("cpu")
    assert calls == [1]


def test_no_mallopt_off_linux(monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert device_module._mallopt(-3, 1 << 20) is False


def test_native_bf16_is_a_cpu_with_amx(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert device_module.native_bf16(torch.device("cpu")) is True
    assert device_module.native_bf16(torch.device("cuda")) is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert device_module.native_bf16(torch.device("cpu")) is False
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert device_module.native_bf16(torch.device("cpu")) is False


def test_precision_auto_is_bf16_only_where_the_device_multiplies_it_natively(monkeypatch):
    from cnnlab.training import device as dev

    cpu = torch.device("cpu")
    assert dev.resolve_precision("fp16", cpu) == "fp16"  # an explicit choice stands
    monkeypatch.setattr(dev, "native_bf16", lambda d: False)
    assert dev.resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(dev, "native_bf16", lambda d: True)
    assert dev.resolve_precision("auto", cpu) == "bf16"


@pytest.mark.slow
def test_a_run_with_precision_auto_says_what_ran(quick, monkeypatch):
    from cnnlab.config.schema import TrainConfig
    from cnnlab.training import device as dev
    from cnnlab.training.experiment import train

    assert TrainConfig().precision == "auto"  # the default for new configs
    monkeypatch.setattr(dev, "native_bf16", lambda d: True)  # as on a Xeon with AMX
    result = train(quick("train.epochs=1"), quiet=True)
    assert result.summary["precision"] == "bf16"
    assert "cpu, bf16 (auto)" in (result.path / "log.txt").read_text()
    assert "precision: auto" in (result.path / "config.yaml").read_text()
