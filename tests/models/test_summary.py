"""summarize: the per-layer table written to model.txt."""

import pytest
import torch

from cnnlab import models
from cnnlab.config.schema import ModelConfig


@pytest.fixture(scope="module")
def cnn():
    return models.build(ModelConfig(), num_classes=10, in_channels=1, image_size=(8, 8))


@pytest.fixture(scope="module")
def summary(cnn):
    return models.summarize(cnn, (1, 8, 8))


def test_total_params_is_the_models_parameter_count(cnn, summary):
    total = sum(p.numel() for p in cnn.parameters())
    assert summary.total_params == total
    assert summary.trainable_params == total


def test_rows_params_add_up_to_the_total(summary):
    assert sum(r.params for r in summary.rows) == summary.total_params


def test_first_conv_and_last_linear_output_shapes(summary):
    convs = [r for r in summary.rows if r.kind == "Conv2d"]
    linears = [r for r in summary.rows if r.kind == "Linear"]
    assert convs[0].output_shape == (32, 8, 8)  # width 32 at full resolution
    assert convs[0].params == 32 * 1 * 3 * 3  # no bias: BatchNorm has one
    assert linears[-1].output_shape == (10,)
    assert linears[-1].params == 4 * 32 * 10 + 10  # last stage is 4 * width wide
    assert summary.rows[-1].kind == "Linear"  # rows in forward order


def test_resolution_halves_between_stages(summary):
    shapes = [r.output_shape for r in summary.rows if r.kind == "Conv2d"]
    assert [s[1:] for s in shapes] == [(8, 8)] * 2 + [(4, 4)] * 2 + [(2, 2)] * 2
    assert [s[0] for s in shapes] == [32, 32, 64, 64, 128, 128]


def test_trainable_params_excludes_frozen_ones():
    model = models.build(ModelConfig(), num_classes=10, in_channels=1, image_size=(8, 8))
    first = next(model.parameters())
    first.requires_grad_(False)
    s = models.summarize(model, (1, 8, 8))
    assert s.trainable_params == s.total_params - first.numel()


def test_summarize_leaves_the_model_in_its_mode_and_without_hooks():
    model = models.build(ModelConfig(), num_classes=10, in_channels=1, image_size=(8, 8))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    models.summarize(model.train(), (1, 8, 8))
    assert model.training
    assert torch.equal(bn.running_mean, before)  # ran in eval: BatchNorm statistics untouched
    assert all(not m._forward_hooks for m in model.modules())


def test_table_shows_layers_and_totals(summary):
    text = summary.table()
    assert text.splitlines()[0] == "input: 1×8×8"
    assert "total params" in text
    assert f"{summary.total_params:,}" in text
    assert "Conv2d" in text and "32×8×8" in text and "Linear" in text
    # One table line per layer.
    assert sum("Conv2d" in line for line in text.splitlines()) == 6


def test_activation_bytes_count_float32_outputs(summary):
    per_image = sum(4 * torch.Size(r.output_shape).numel() for r in summary.rows)
    assert summary.activation_bytes == per_image > 0
