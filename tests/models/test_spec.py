"""model.name=layers: nets build as written, and every mistake is named at build time."""

import re

import pytest
import torch
from torch import nn

from cnnlab import models
from cnnlab.config.schema import ModelConfig
from cnnlab.errors import ConfigError
from cnnlab.models import spec


def build(layers, classes=10, channels=3, size=32, **options) -> nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(name="layers", layers=layers, **options)
    return models.create(cfg, num_classes=classes, in_channels=channels, image_size=(size, size))


def fails(layers, *fragments, **kw) -> str:
    """Builds `layers`, expecting a ConfigError whose message holds every fragment."""
    with pytest.raises(ConfigError) as e:
        build(layers, **kw)
    msg = str(e.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in {msg!r}"
    return msg


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


VGG = [
    "conv(32, 3)", "bn", "relu", "conv(32, 3)", "bn", "relu", "maxpool(2)",
    "conv(64, 3)", "bn", "relu", "conv(64, 3)", "bn", "relu", "maxpool(2)",
    "flatten", "linear(256)", "relu", "dropout(0.5)", "linear",
]  # fmt: skip


def test_vgg_like_list_matches_the_same_net_written_by_hand():
    by_hand = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 10),
    )  # fmt: skip
    model = build(VGG)
    assert n_params(model) == n_params(by_hand)
    assert [type(m) for m in model] == [type(m) for m in by_hand]
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_end_to_end_through_models_build_trains_a_step():
    model = build(
        ["conv(8, 3)", "bn", "act", "maxpool(2)", "se", "sepconv(16, 3)", "gap", "linear"]
    )
    assert model.training  # probing ran in eval mode; the model comes back ready to train
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_user_report_net_without_padding_flattens_to_1600_features():
    layers = [
        "conv(32, 3, padding=0)", "relu", "conv(32, 3, padding=0)", "relu", "maxpool(2)",
        "dropout(0.1)", "conv(64, 3, padding=0)", "relu", "conv(64, 3, padding=0)", "relu",
        "maxpool(2)", "flatten", "linear(512)", "relu", "dropout(0.5)", "linear",
    ]  # fmt: skip
    model = build(layers)
    # 32 -> 30 -> 28 -> pool 14 -> 12 -> 10 -> pool 5: 5 * 5 * 64 = 1600
    assert model[12].in_features == 1600 == 5 * 5 * 64
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_conv_padding_defaults_to_same_for_odd_kernels():
    model = build(["conv(4, 5)", "conv(4, 3, stride=2)", "conv(4, 3, padding=0)", "gap", "linear"])
    x = torch.zeros(1, 3, 32, 32)
    assert model[0](x).shape[2:] == (32, 32)  # 5x5 with padding 2 keeps the size
    assert model[1](model[0](x)).shape[2:] == (16, 16)
    assert model[2].padding == (0, 0)


def test_probing_leaves_batchnorm_statistics_untouched():
    model = build(["conv(4, 3)", "bn", "flatten", "bn", "linear"])
    for m in (model[1], model[3]):
        assert (m.running_mean == 0).all() and (m.running_var == 1).all()
    assert isinstance(model[1], nn.BatchNorm2d) and isinstance(model[3], nn.BatchNorm1d)


def test_act_follows_model_activation_and_named_activations_stay_fixed():
    model = build(
        ["act", "gelu", "silu", "leaky_relu(0.2)", "relu", "gap", "linear"], activation="silu"
    )
    assert [type(m) for m in model[:5]] == [nn.SiLU, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.ReLU]
    assert model[3].negative_slope == 0.2


def test_pools_gap_and_se_reduce_as_documented():
    model = build(["maxpool(2)", "avgpool(2, stride=1)", "se(3)", "gap", "linear"])
    x = torch.zeros(1, 3, 32, 32)
    assert model[1](model[0](x)).shape == (1, 3, 15, 15)
    assert model[3](x).shape == (1, 3)  # gap flattens: linear can follow directly
    assert model[2].gate[1].out_channels == 1  # 3 // 3 hidden units


def test_residual_adds_its_input():
    model = build(["residual([conv(3, 3, bias=False)])", "gap", "linear"])
    block = model[0]
    assert isinstance(block.shortcut, nn.Identity)
    nn.init.zeros_(block.body[0].weight)  # body(x) = 0, so the block must return x itself
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(block(x), x)


def test_residual_projects_when_channels_and_size_change():
    model = build(
        ["residual([conv(16, 3, stride=2), bn, relu, conv(16, 3), bn])", "relu", "gap", "linear"]
    )
    proj = model[0].shortcut[0]
    assert isinstance(proj, nn.Conv2d) and proj.kernel_size == (1, 1) and proj.stride == (2, 2)
    assert (proj.in_channels, proj.out_channels) == (3, 16)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_residual_of_flat_features_projects_with_a_linear():
    model = build(["gap", "residual([linear(8), relu])", "linear"])
    assert isinstance(model[1].shortcut, nn.Linear)


# ---------------------------------------------------------------- errors a user can make


def test_linear_on_a_map_says_to_flatten():
    layers = VGG[:14] + ["linear(512)", "linear"]
    fails(
        layers,
        "model.layers[14] linear(512): expects a flat (N, features) input,"
        " got (1, 64, 8, 8); add flatten",
    )


def test_linear_after_conv_names_index_text_and_shape():
    fails(
        [
            "conv(32, 3)",
            "relu",
            "maxpool(2)",
            "conv(64, 3)",
            "maxpool(2)",
            "maxpool(2)",
            "maxpool(2)",
            "linear(512)",
            "linear",
        ],  # fmt: skip
        "model.layers[7] linear(512): expects a flat (N, features) input, got (1, 64, 2, 2)",
        "add flatten (or gap) before it",
    )


def test_pooling_below_one_pixel_is_refused():
    fails(
        ["maxpool(4)", "maxpool(4)", "maxpool(2)", "maxpool(2)", "gap", "linear"],
        "model.layers[3] maxpool(2): input 1×1 is smaller than the window",
    )


def test_kernel_larger_than_the_image():
    fails(
        ["conv(8, 7, padding=0)", "gap", "linear"],
        "model.layers[0] conv(8, 7, padding=0): input 5×5 is smaller than the kernel (7×7)",
        size=5,
    )


def test_map_layer_after_flatten():
    fails(
        ["flatten", "conv(8, 3)", "linear"], "model.layers[1] conv(8, 3): expects an (N, C, H, W)"
    )


def test_last_layer_must_give_the_logits():
    fails(["conv(8, 3)", "gap"], "gives (1, 8), not (N, 10)", "end with `linear`")
    fails(["gap", "linear(5)"], "not (N, 10)", "end with `linear`")


def test_empty_layers():
    fails([], "model.layers is empty")


def test_unknown_layer_suggests_the_closest_and_lists_all():
    msg = fails(
        ["conv(8, 3)", "rleu", "gap", "linear"], "model.layers[1] rleu", "did you mean relu?"
    )
    for name in spec.LAYERS:
        assert name in msg.split("valid:")[1]


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("conv(32)", "missing a required argument: 'kernel'"),
        ("conv(32, 3, strde=2)", "unexpected keyword argument 'strde'"),
        ("relu(3)", "too many positional arguments"),
        ("conv(32, 3.5)", "argument kernel must be an integer >= 1, got 3.5"),
        ("conv(0, 3)", "argument out must be an integer >= 1, got 0"),
        ("conv(32, 3, stride=-1)", "argument stride must be an integer >= 1, got -1"),
        ("conv(32, 3, padding=True)", "argument padding must be an integer >= 0"),
        ("conv(32, 3, groups=2)", "groups=2 must divide both in channels 3"),
        ("dropout(1.5)", "argument p must be a number in [0.0, 1.0), got 1.5"),
        ("maxpool(2, padding=2)", "argument padding must be at most kernel // 2 = 1"),
        ("se(0)", "argument reduction must be an integer >= 1"),
        ("residual(3)", "argument body must be a non-empty [list of layers]"),
    ],
)
def test_bad_arguments_name_the_argument(text, fragment):
    msg = fails([text, "gap", "linear"], f"model.layers[0] {text}: ", fragment)
    assert "Traceback" not in msg


def test_missing_argument_shows_usage():
    fails(["conv(8)"], "usage: conv(out, kernel, stride=1, padding=None, groups=1, bias=True)")


@pytest.mark.parametrize(
    "text",
    ['__import__("os").system("x")', "os.system", "conv('32', 3)", "lambda: 0", "conv(*a)",
     "conv(**{'out': 1})", "1 + 2", "[relu]"],
)  # fmt: skip
def test_only_names_calls_numbers_and_lists_are_accepted(text):
    msg = fails([text, "linear"], "model.layers[0]")
    assert re.search(r"not allowed|expected a layer name", msg)


def test_syntax_error_is_a_config_error():
    fails(["conv(32, 3"], "model.layers[0] 'conv(32, 3': not a layer expression")


def test_errors_inside_a_residual_name_the_inner_layer():
    fails(["residual([conv(8, 3), rleu])", "gap", "linear"], "model.layers[0].residual[1] rleu")


def test_residual_that_turns_a_map_flat_is_refused():
    fails(["residual([conv(8, 3), gap])", "linear"], "a residual must keep a map a map")


def test_residual_that_grows_the_map_is_refused():
    fails(["residual([conv(8, 3, padding=2)])", "gap", "linear"], "no strided 1×1 shortcut")


def test_options_the_layers_model_does_not_take_are_refused():
    fails(["gap", "linear"], "model.width is not an option", width=8)
