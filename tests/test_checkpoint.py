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


def _with_skeleton(path, skeleton: str, tensors=None):
    """A last.ckpt whose JSON skeleton is `skeleton` (a crash or a hand edit)."""
    from safetensors.torch import save_file

    save_file(tensors or {"t0": torch.zeros(2)}, str(path), metadata={"cnnlab.state": skeleton})
    return path


@pytest.mark.parametrize(
    ("skeleton", "says"),
    [
        ("", "not JSON"),
        ("{nope", "not JSON"),
        ("[" * 10_000 + "]" * 10_000, "not JSON"),  # the decoder's own recursion limit
        ("[" * 100 + "]" * 100, "nested more than 64 levels"),
        ("[1, 2]", "the state is list, expected dict"),
        ('{"__dict__": {"w": {"__tensor__": "t9"}}}', "names a tensor 't9' the file does not"),
        ('{"__dict__": {"w": {"__tensor__": 7}}}', "names a tensor '7'"),
        ('{"__dict__": 5}', "damaged state"),
        ('{"__items__": [[[1], 2]]}', "unhashable"),
        ('{"__tuple__": 3}', "damaged state"),
        ('{"what": 1}', "unrecognised entry"),
    ],
)
def test_a_damaged_skeleton_is_one_checkpoint_error_naming_the_file(tmp_path, skeleton, says):
    path = _with_skeleton(tmp_path / "last.ckpt", skeleton)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_state(path)
    assert str(path) in str(e.value) and says in str(e.value)
    assert "\n" not in str(e.value)


def test_state_of_another_shape_is_named_by_its_key(tmp_path):
    path = tmp_path / "last.ckpt"
    checkpoint.save_state({"fit": {"epoch": "3"}, "model": [1]}, path)
    shape = {"fit": {"epoch": int}, "model": dict[str, torch.Tensor]}
    with pytest.raises(CheckpointError, match=r"fit\.epoch is str, expected int"):
        checkpoint.load_state(path, shape)
    checkpoint.save_state({"fit": {"epoch": True}, "model": {}}, path)
    with pytest.raises(CheckpointError, match=r"fit\.epoch is bool"):  # a flag is no count
        checkpoint.load_state(path, shape)
    checkpoint.save_state({"fit": {"epoch": 3}}, path)
    with pytest.raises(CheckpointError, match="model is missing"):
        checkpoint.load_state(path, shape)
    checkpoint.save_state({"fit": {"epoch": 3}, "model": {"w": 1.0}}, path)
    with pytest.raises(CheckpointError, match=r"model\.w is float, expected Tensor"):
        checkpoint.load_state(path, shape)
    checkpoint.save_state({"fit": {"epoch": 3, "new": 1}, "model": {}}, path)
    assert checkpoint.load_state(path, shape)["fit"]["new"] == 1  # more than asked is fine
    checkpoint.check_shape(None, float | None, path)
    checkpoint.check_shape(2, float, path)  # JSON may write a whole float without its ".0"


def test_weights_of_another_model_name_the_first_tensor_that_differs(tmp_path):
    path = tmp_path / "best.safetensors"
    checkpoint.save_weights(nn.Linear(3, 4), path)
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_into(nn.Linear(3, 5), checkpoint.load_weights(path), path)
    assert str(e.value) == (
        f"{path}: weights of another model: tensor 'weight' is [4, 3] where this model's is [5, 3]"
    )
    with pytest.raises(CheckpointError, match=r"lacks tensor '0\.weight' and 3 more"):
        checkpoint.load_into(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), {}, path)
    with pytest.raises(CheckpointError, match="has tensor 'extra'"):
        tensors = checkpoint.load_weights(path) | {"extra": torch.zeros(1)}
        checkpoint.load_into(nn.Linear(3, 4), tensors, path)
    fits = nn.Linear(3, 4)
    checkpoint.load_into(fits, checkpoint.load_weights(path), path)


def test_a_damaged_about_header_is_a_checkpoint_error(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "best.safetensors"
    save_file({"w": torch.zeros(1)}, str(path), metadata={"cnnlab.about": "[" * 5000})
    with pytest.raises(CheckpointError, match="damaged header"):
        checkpoint.weights_about(path)


def test_a_full_disk_is_an_oserror_naming_the_checkpoint(tmp_path, monkeypatch):
    """safetensors reports I/O errors as text; they come back as the OSError they were."""
    import errno

    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left (os error 28)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(OSError) as e:
        checkpoint.save_state({"epoch": 1}, tmp_path / "last.ckpt")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(tmp_path / "last.ckpt")
    assert list(tmp_path.iterdir()) == []
