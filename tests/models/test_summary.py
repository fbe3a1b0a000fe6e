"""summarize: the per-layer table written to model.txt."""

import pytest
import torch

from cnnlab import models
from cnnlab.config.schema import ModelConfig


@pytest.fixture(scope="module")
def cnn():
    return models.create(ModelConfig(), num_classes=10, in_channels=1, image_size=(8, 8))


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
    model = models.create(ModelConfig(), num_classes=10, in_channels=1, image_size=(8, 8))
    first = next(model.parameters())
    first.requires_grad_(False)
    s = models.summarize(model, (1, 8, 8))
    assert s.trainable_params == s.total_params - first.numel()


def test_summarize_leaves_the_model_in_its_mode_and_without_hooks():
    model = models.create(ModelConfig(), num_classes=10, in_channels=1, image_size=(8, 8))
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


def test_conv_macs_and_activation_memory_by_hand():
    s = models.summarize(torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1)), (3, 32, 32))
    (row,) = s.rows
    assert row.macs == 16 * 3 * 9 * 32 * 32 == 442_368  # C_out·C_in·k²·H·W; bias not counted
    assert row.flops == 2 * 442_368
    assert row.activation_bytes == 16 * 32 * 32 * 4 == 65_536  # float32 output, one image


def test_linear_macs():
    s = models.summarize(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(128, 10)), (128, 1, 1)
    )
    assert s.rows[-1].macs == 128 * 10 == 1_280
    assert s.rows[0].macs == 0  # Flatten moves no numbers


def test_depthwise_and_grouped_conv_macs():
    depthwise = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8)  # one 3×3 filter per channel
    pointwise = torch.nn.Conv2d(8, 16, 1)
    grouped = torch.nn.Conv2d(16, 16, 3, padding=1, groups=2)  # each output sees 16/2 channels
    s = models.summarize(torch.nn.Sequential(depthwise, pointwise, grouped), (8, 10, 10))
    assert [r.macs for r in s.rows] == [
        8 * 1 * 9 * 10 * 10,  # C_out · (C_in/groups = 1) · k² · H · W = 7,200
        16 * 8 * 1 * 10 * 10,  # 12,800
        16 * 8 * 9 * 10 * 10,  # 115,200
    ]


def test_batchnorm_counts_one_mac_per_element_and_pooling_none():
    net = torch.nn.Sequential(
        torch.nn.BatchNorm2d(4), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.AvgPool2d(2)
    )
    s = models.summarize(net, (4, 8, 8))
    assert [r.macs for r in s.rows] == [4 * 8 * 8, 0, 0, 0]  # BN in eval: x·scale + shift


def test_totals_are_the_sum_of_the_rows(summary):
    assert summary.macs == sum(r.macs for r in summary.rows) > 0
    assert summary.flops == 2 * summary.macs
    assert summary.activation_bytes == sum(r.activation_bytes for r in summary.rows)
    assert summary.train_activation_bytes == 2 * summary.activation_bytes
    assert summary.param_bytes == 4 * summary.total_params  # float32


def test_default_cnn_macs_by_hand(summary):
    # 8×8 input, width 32: convs (1→32, 32→32) at 8×8, maxpool, (32→64, 64→64) at 4×4,
    # maxpool, (64→128, 128→128) at 2×2, each C_out·C_in·9·H·W; BN one per output element;
    # Linear 128·10.
    convs = 9 * (
        32 * 1 * 64 + 32 * 32 * 64 + 64 * 32 * 16 + 64 * 64 * 16 + 128 * 64 * 4 + 128 * 128 * 4
    )
    bn = 2 * (32 * 64 + 64 * 16 + 128 * 4)
    assert summary.macs == convs + bn + 128 * 10
    # Final field: global after pooling; the last conv sees 1 + 2·1·2 + 1 (pool) + 2·2·2 + 1·2
    # (pool) + 2·4·2 = 3, 5, 6, 10, 14, 16, 24, 32 px at jump 4.
    assert summary.receptive_field[0].whole
    assert (summary.local_receptive_field[0].size, summary.local_receptive_field[0].jump) == (32, 4)


def test_table_has_the_new_columns_and_totals(summary):
    text = summary.table()
    header = text.splitlines()[2]
    for column in ("act mem", "MACs", "RF size/jump/start"):
        assert column in header
    assert "8.0 KB" in text  # first conv: 32×8×8 float32 = 8,192 bytes
    assert f"{summary.macs:,} per image" in text and f"{summary.flops:,}" in text
    assert "with backward" in text and "params size" in text
    assert "receptive field:   global (last spatial layer: 32 px, jump 4" in text
    assert "torch.fx graph" in text
