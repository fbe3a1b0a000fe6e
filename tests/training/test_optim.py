import copy
import sys
from collections import OrderedDict

import pytest
import torch
from torch import nn

from cnnlab.config.schema import OptimConfig
from cnnlab.errors import ConfigError
from cnnlab.training import optim
from cnnlab.training.experiment import train

# A learning rate per optimizer that suits both the toy problem and digits; a new optimizer
# fails the parametrized tests until it has one here.
LR = {
    "adadelta": 1.0,
    "adagrad": 0.05,
    "adam": 0.01,
    "adamw": 0.01,
    "lamb": 0.03,
    "lion": 0.002,
    "muon": 0.02,
    "rmsprop": 0.003,
    "sgd": 0.1,
}


def tiny_cnn() -> nn.Sequential:
    """conv -> BN -> ReLU -> pool -> linear: a conv filter for Muon's flattened path, norm
    weights and biases for the no-decay group, a classifier head."""
    return nn.Sequential(
        OrderedDict(
            features=nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            classifier=nn.Linear(64, 2),
        )
    )


def ids(params) -> set[int]:
    return {id(p) for p in params}


@pytest.mark.parametrize("name", optim.OPTIMIZERS.names())
def test_every_optimizer_lowers_the_loss_of_a_small_problem(name):
    torch.manual_seed(0)
    x = torch.randn(64, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    model = tiny_cnn()
    opt = optim.build(model, OptimConfig(name=name, lr=LR[name], weight_decay=1e-4))

    def loss() -> torch.Tensor:
        return nn.functional.cross_entropy(model(x), y)

    before = loss().item()
    for _ in range(30):
        opt.zero_grad()
        loss().backward()
        opt.step()
    assert loss().item() < 0.7 * before


@pytest.mark.parametrize("name", optim.OPTIMIZERS.names())
def test_every_optimizer_trains_the_default_dataset(quick, name):
    config = quick("train.epochs=1", f"optim.name={name}", f"optim.lr={LR[name]}")
    result = train(config)
    assert result.status == "completed"
    assert result.summary["final_val_acc"] > 0.3  # digits: 10 classes, chance 0.1


def test_config_values_reach_the_optimizer():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(
        name="sgd", lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-4, dampening=0.0
    )
    group = optim.build(model, cfg).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.1,
        0.8,
        True,
        1e-4,
    )
    rms = optim.build(model, OptimConfig(name="rmsprop", alpha=0.9, momentum=0.5)).param_groups
    assert (rms[0]["alpha"], rms[0]["momentum"]) == (0.9, 0.5)
    assert optim.build(model, OptimConfig(name="adadelta", rho=0.8)).param_groups[0]["rho"] == 0.8


def test_eps_none_keeps_each_optimizers_default():
    model = nn.Linear(2, 2)
    assert optim.build(model, OptimConfig(name="adagrad")).param_groups[0]["eps"] == 1e-10
    assert optim.build(model, OptimConfig(name="adam")).param_groups[0]["eps"] == 1e-8
    assert optim.build(model, OptimConfig(name="adam", eps=1e-3)).param_groups[0]["eps"] == 1e-3
    assert "eps" not in optim.build(model, OptimConfig(name="lion", eps=1e-3)).param_groups[0]


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(ConfigError, match=r"optim.name: unknown optimizer 'adamm' — did you mean"):
        optim.build(nn.Linear(2, 2), OptimConfig(name="adamm"))


@pytest.mark.parametrize(("momentum", "dampening"), [(0.0, 0.0), (0.9, 0.1)])
def test_nesterov_needs_momentum_and_no_dampening(momentum, dampening):
    cfg = OptimConfig(name="sgd", nesterov=True, momentum=momentum, dampening=dampening)
    with pytest.raises(ConfigError, match=r"optim.nesterov=true needs optim.momentum > 0"):
        optim.build(nn.Linear(2, 2), cfg)


def norm_and_bias_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3),
        nn.BatchNorm2d(4),
        nn.GroupNorm(2, 4),
        nn.Conv2d(4, 4, 1, bias=False),
        nn.InstanceNorm2d(4, affine=True),
        nn.Flatten(),
        nn.LayerNorm(4),
        nn.Linear(4, 2),
    )


def test_norm_weights_and_biases_get_no_weight_decay():
    model = norm_and_bias_net()
    groups = optim.build(model, OptimConfig(name="adamw", weight_decay=0.05)).param_groups
    plain = ids(p for g in groups if g["weight_decay"] == 0.0 for p in g["params"])
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm)
    expected = ids(p for m in model.modules() if isinstance(m, norms) for p in m.parameters())
    expected |= ids(p for name, p in model.named_parameters() if name.endswith("bias"))
    assert plain == expected
    decayed = ids(p for g in groups if g["weight_decay"] == 0.05 for p in g["params"])
    assert decayed == ids(model.parameters()) - expected
    assert len(groups) == 2


def test_decay_norm_and_bias_decays_everything():
    model = norm_and_bias_net()
    cfg = OptimConfig(name="sgd", weight_decay=0.05, decay_norm_and_bias=True)
    (group,) = optim.build(model, cfg).param_groups
    assert group["weight_decay"] == 0.05 and ids(group["params"]) == ids(model.parameters())


def test_frozen_parameters_are_left_out():
    model = tiny_cnn()
    model.features.requires_grad_(False)
    params = [p for g in optim.build(model, OptimConfig()).param_groups for p in g["params"]]
    assert ids(params) == ids(model.classifier.parameters())


def test_lr_mult_longest_matching_key_wins():
    model = tiny_cnn()
    mults = {"features": 0.5, "features.0.weight": 2.0, "features.*.bias": 3.0, "classifier": 0}
    groups = optim.build(model, OptimConfig(name="sgd", lr=0.1, lr_mult=mults)).param_groups
    lr_of = {id(p): (g["lr"], g["lr_mult"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert lr_of[id(named["features.0.weight"])] == (0.2, 2.0)
    assert lr_of[id(named["features.0.bias"])] == (pytest.approx(0.3), 3.0)
    assert lr_of[id(named["features.1.bias"])] == (pytest.approx(0.3), 3.0)
    assert lr_of[id(named["features.1.weight"])] == (0.05, 0.5)
    assert lr_of[id(named["classifier.weight"])] == (0.0, 0.0)


def test_group_at_the_plain_lr_comes_first():
    groups = optim.build(tiny_cnn(), OptimConfig(lr_mult={"features": 0.1})).param_groups
    assert groups[0]["lr_mult"] == 1.0


def test_lr_mult_key_matching_nothing_names_the_top_level_modules():
    cfg = OptimConfig(lr_mult={"head": 0.1})
    msg = r"optim.lr_mult: 'head' matches no parameter; top-level modules: features, pool, "
    with pytest.raises(ConfigError, match=msg):
        optim.build(tiny_cnn(), cfg)


def test_missing_timm_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm.optim", None)
    with pytest.raises(ConfigError, match=r"optim.name=lamb needs timm: pip install timm"):
        optim.build(nn.Linear(2, 2), OptimConfig(name="lamb"))


def test_torch_without_muon_is_a_config_error(monkeypatch):
    monkeypatch.setattr(optim, "_muon", None)
    with pytest.raises(ConfigError, match=r"optim.name=muon needs torch.optim.Muon"):
        optim.build(nn.Linear(2, 2), OptimConfig(name="muon"))


def test_muon_takes_hidden_filters_and_leaves_the_rest_to_adamw():
    model = tiny_cnn()
    opt = optim.build(model, OptimConfig(name="muon", weight_decay=0.1))
    muon = ids(p for g in opt.param_groups if g["use_muon"] for p in g["params"])
    assert muon == {id(model.features[0].weight)}
    assert len(opt.param_groups) == 3  # muon; adamw decayed (classifier weight); adamw plain


def test_muon_matches_torch_muon_on_matrices_and_adamw_elsewhere():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    twin = copy.deepcopy(model)
    cfg = OptimConfig(name="muon", lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True)
    ours = optim.build(model, cfg)
    adamw_groups = [
        {"params": [twin[2].weight], "weight_decay": 0.1},
        {"params": [twin[0].bias, twin[2].bias], "weight_decay": 0.0},
    ]
    reference = [
        torch.optim.Muon([twin[0].weight], lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True),
        torch.optim.AdamW(adamw_groups, lr=0.02),
    ]
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    for _ in range(3):
        for net, opts in ((model, [ours]), (twin, reference)):
            for opt in opts:
                opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            for opt in opts:
                opt.step()
    for ours_p, ref_p in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(ours_p, ref_p)


def test_muon_state_dict_round_trip_gives_the_same_next_step():
    torch.manual_seed(0)
    model = tiny_cnn()
    cfg = OptimConfig(name="muon", lr=0.02, weight_decay=1e-3, lr_mult={"classifier": 0.5})
    opt = optim.build(model, cfg)
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 2, (8,))

    def step(net: nn.Module, o: torch.optim.Optimizer) -> None:
        o.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        o.step()

    for _ in range(2):
        step(model, opt)
    twin = copy.deepcopy(model)
    restored = optim.build(twin, cfg)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    step(model, opt)
    step(twin, restored)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert [g["lr"] for g in restored.param_groups] == [g["lr"] for g in opt.param_groups]


def test_muon_steps_channels_last_filters_like_contiguous_ones():
    torch.manual_seed(0)
    model = tiny_cnn()
    twin = copy.deepcopy(model).to(memory_format=torch.channels_last)
    grads = [torch.randn_like(p) for p in model.parameters()]
    for net, layout in ((model, torch.contiguous_format), (twin, torch.channels_last)):
        opt = optim.build(net, OptimConfig(name="muon", nesterov=True))
        for _ in range(2):
            for p, g in zip(net.parameters(), grads, strict=True):
                p.grad = g.clone(memory_format=layout) if g.ndim == 4 else g.clone()
            opt.step()
    assert twin.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(a, b)
