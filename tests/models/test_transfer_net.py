"""models.transfer: the input adapter, cutting a backbone, pooling, heads and freezing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.config.schema import ModelConfig, TransferConfig
from cnnlab.errors import ConfigError
from cnnlab.models import create as build_model
from cnnlab.models import summarize
from cnnlab.models.transfer import Backbone, InputAdapter, Pool, TransferNet, build, head

GRAY = ((0.3,), (0.2,), (8, 8))  # a 1-channel dataset's mean, std, size
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def small_backbone(channels: int = 1, size: tuple[int, int] = (8, 8)) -> Backbone:
    torch.manual_seed(0)
    net = build_model(ModelConfig(width=4), 5, channels, size)
    return Backbone("test-net", net, (0.5,) * channels, (0.25,) * channels, channels, size)


def test_adapter_is_the_identity_when_data_and_backbone_agree():
    adapter = InputAdapter(((0.5,), (0.25,), (8, 8)), (0.5,), (0.25,), (8, 8))
    x = torch.randn(2, 1, 8, 8)
    assert adapter.identity and adapter(x) is x


def test_adapter_renormalises_and_repeats_gray_into_rgb():
    adapter = InputAdapter(GRAY, *IMAGENET, (8, 8))
    pixels = torch.rand(2, 1, 8, 8)  # [0, 1]
    x = (pixels - 0.3) / 0.2  # as the data pipeline normalises it
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in IMAGENET)
    expected = (pixels.expand(-1, 3, -1, -1) - mean) / std
    torch.testing.assert_close(adapter(x), expected)


def test_adapter_mixes_rgb_into_gray_with_luma_weights():
    adapter = InputAdapter(((0.0,) * 3, (1.0,) * 3, (4, 4)), (0.0,), (1.0,), (4, 4))
    x = torch.zeros(1, 3, 4, 4)
    x[:, 0], x[:, 1], x[:, 2] = 1.0, 0.5, 0.0
    torch.testing.assert_close(adapter(x), torch.full((1, 1, 4, 4), 0.299 + 0.5 * 0.587))


def test_adapter_resizes_to_the_backbone_size():
    adapter = InputAdapter(GRAY, (0.3,), (0.2,), (28, 28))
    x = torch.full((2, 1, 8, 8), 1.5)
    out = adapter(x)
    assert out.shape == (2, 1, 28, 28)
    torch.testing.assert_close(out, torch.full_like(out, 1.5))  # a constant stays constant


@pytest.mark.parametrize(
    ("kind", "size", "dim"),
    [("avg", 1, 4), ("max", 1, 4), ("avgmax", 1, 8), ("avg", 2, 16), ("flatten", 1, 36)],
)
def test_pool_turns_a_feature_map_into_vectors(kind, size, dim):
    x = torch.randn(2, 4, 3, 3)
    out = Pool(kind, size)(x)
    assert out.shape == (2, dim)
    if kind == "avg" and size == 1:
        torch.testing.assert_close(out, x.mean(dim=(2, 3)))
    if kind == "max":
        torch.testing.assert_close(out, x.amax(dim=(2, 3)))


def test_pool_passes_vectors_and_pools_tokens():
    vectors = torch.randn(2, 7)
    assert torch.equal(Pool("avg", 1)(vectors), vectors)
    tokens = torch.randn(2, 5, 6)  # (B, N, D)
    torch.testing.assert_close(Pool("avg", 1)(tokens), tokens.mean(dim=1))


def test_heads():
    linear = head(16, 3, TransferConfig())
    assert [type(m) for m in linear] == [nn.Linear]
    mlp = head(16, 3, TransferConfig(head="mlp", hidden=[8, 4], dropout=0.5))
    assert [type(m).__name__ for m in mlp] == [
        "Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"
    ]  # fmt: skip
    assert [m.out_features for m in mlp if isinstance(m, nn.Linear)] == [8, 4, 3]


def test_default_cut_gives_the_features_the_classifier_saw():
    source = small_backbone()
    x = torch.randn(3, 1, 8, 8)
    seen = {}
    last = [m for m in source.net.modules() if isinstance(m, nn.Linear)][-1]
    last.register_forward_hook(lambda m, inputs, out: seen.setdefault("x", inputs[0]))
    source.net.eval()
    source.net(x)
    net = build(source, TransferConfig(), 3, GRAY, (8, 8)).eval()
    torch.testing.assert_close(net.backbone(x), seen["x"])  # the adapter is tested above
    assert net.head[0].in_features == seen["x"].shape[1] and net.head[0].out_features == 3


def test_cut_by_name_and_by_summary_row_agree_with_that_layer():
    source = small_backbone()
    rows = summarize(source.net, (1, 8, 8)).rows
    row = 5
    by_index = build(source, TransferConfig(layer=row, pool="flatten"), 3, GRAY, (8, 8))
    source = small_backbone()  # build() cuts the net it is given
    by_name = build(source, TransferConfig(layer=rows[row].name, pool="flatten"), 3, GRAY, (8, 8))
    seen = {}
    reference = small_backbone().net.eval()
    reference.get_submodule(rows[row].name).register_forward_hook(
        lambda m, i, out: seen.setdefault("out", out)
    )
    x = torch.randn(2, 1, 8, 8)
    reference(x)
    for net in (by_index, by_name):
        net.eval()
        torch.testing.assert_close(net.backbone(x), seen["out"])
    # only the layers up to the cut are kept
    assert sum(p.numel() for p in by_name.backbone.parameters()) < sum(
        p.numel() for p in reference.parameters()
    )


def test_bad_layers_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"transfer.layer = '3.00': .*close: 3.0"):
        build(small_backbone(), TransferConfig(layer="3.00"), 3, GRAY, (8, 8))
    with pytest.raises(ConfigError, match=r"transfer.layer = 999: .* layers in `cnnlab summary`"):
        build(small_backbone(), TransferConfig(layer=999), 3, GRAY, (8, 8))


def test_pooling_options_on_vectors_are_refused():
    with pytest.raises(ConfigError, match="nothing to pool"):
        build(small_backbone(), TransferConfig(pool="max"), 3, GRAY, (8, 8))


def test_freezing_fixes_weights_and_batchnorm_statistics():
    net = build(small_backbone(), TransferConfig(), 3, GRAY, (8, 8)).freeze()
    assert not any(p.requires_grad for p in net.backbone.parameters())
    assert all(p.requires_grad for p in net.head.parameters())
    net.train()
    assert net.training and net.head.training and not net.backbone.training
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    net(torch.randn(8, 1, 8, 8) * 3 + 1).sum().backward()
    after = net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats untouched
    net.freeze(False).train()
    assert net.backbone.training and all(p.requires_grad for p in net.backbone.parameters())


def test_transfer_net_forward_is_head_of_features():
    net = build(small_backbone(), TransferConfig(head="mlp", hidden=[6]), 3, GRAY, (8, 8)).eval()
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(net(x), net.head(net.features(x)))
    assert isinstance(net, TransferNet) and net(x).shape == (2, 3)


def test_an_input_size_the_backbone_cannot_take_is_a_one_line_error():
    with pytest.raises(ConfigError, match=r"model.backbone = 'test-net': cannot take 1×2×2 images"):
        build(small_backbone(), TransferConfig(), 3, GRAY, (2, 2))  # two 2x2 max-pools
