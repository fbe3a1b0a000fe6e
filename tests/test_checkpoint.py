import math
import stat

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch import nn

from cnnlab import checkpoint
from cnnlab.errors import CheckpointError


def test_nested_state_round_trips_without_pickle(tmp_path):
    state = {
        "ints": {0: torch.arange(3), 7: {"step": 5}},  # optimizer state uses int keys
        "tuple": (1, 2.5, "x", None),
        "floats": [math.inf, -1.0],
        "bf16": torch.ones(2, dtype=torch.bfloat16),
        "array": np.arange(4, dtype=np.uint32),
        "flag": True,
    }
    path = tmp_path / "last.ckpt"
    checkpoint.save_state(state, path)
    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file
        assert "cnnlab.state" in f.metadata()
    back = checkpoint.load_state(path)
    assert torch.equal(back["ints"][0], torch.arange(3))
    assert back["ints"][7] == {"step": 5}
    assert back["tuple"] == (1, 2.5, "x", None)
    assert back["floats"] == [math.inf, -1.0]
    assert back["bf16"].dtype == torch.bfloat16
    assert isinstance(back["array"], np.ndarray) and back["array"].tolist() == [0, 1, 2, 3]
    assert back["flag"] is True


def test_optimizer_state_survives_the_round_trip(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
    checkpoint.save_state({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / "s")
    back = checkpoint.load_state(tmp_path / "s")
    clone = nn.Linear(3, 2)
    clone.load_state_dict(back["model"])
    clone_opt = torch.optim.Adam(clone.parameters(), lr=0.1)
    clone_opt.load_state_dict(back["opt"])
    x = torch.randn(4, 3)
    for m, o in ((model, opt), (clone, clone_opt)):
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    assert torch.equal(model.weight, clone.weight)


def test_rng_state_restores_every_generator(tmp_path):
    import random

    saved = checkpoint.rng_state()
    checkpoint.save_state({"rng": saved}, tmp_path / "rng")
    expected = (torch.rand(3), random.random(), np.random.rand())
    checkpoint.set_rng_state(checkpoint.load_state(tmp_path / "rng")["rng"])
    again = (torch.rand(3), random.random(), np.random.rand())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_weights_file_loads_into_a_fresh_model(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    checkpoint.save_weights(model, tmp_path / "best.safetensors")
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    fresh.load_state_dict(checkpoint.load_weights(tmp_path / "best.safetensors"))
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    checkpoint.save_state({"epoch": 1}, path)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", crash)
    with pytest.raises(OSError):
        checkpoint.save_state({"epoch": 2}, path)
    assert checkpoint.load_state(path) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left


def test_checkpoint_files_get_ordinary_permissions(tmp_path):
    checkpoint.save_weights(nn.Linear(1, 1), tmp_path / "w.safetensors")
    mode = stat.S_IMODE((tmp_path / "w.safetensors").stat().st_mode)
    assert mode & stat.S_IRGRP  # readable beyond the owner, as any file the user writes


def test_unreadable_files_are_checkpoint_errors(tmp_path):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"\x00not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.ckpt"):
        checkpoint.load_state(garbage)
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load_weights(tmp_path / "missing.safetensors")
    checkpoint.save_weights(nn.Linear(1, 1), tmp_path / "w.safetensors")
    with pytest.raises(CheckpointError, match="weights only"):
        checkpoint.load_state(tmp_path / "w.safetensors")
