import pytest
import torch
from torch import nn

from cnnlab.config.schema import OptimConfig
from cnnlab.errors import ConfigError
from cnnlab.train import optim


@pytest.mark.parametrize("name", optim.OPTIMIZERS.names())
def test_every_optimizer_lowers_the_loss_of_a_small_problem(name):
    torch.manual_seed(0)
    x = torch.randn(64, 4)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(4, 2)
    opt = optim.build(model, OptimConfig(name=name, lr=0.05))
    before = nn.functional.cross_entropy(model(x), y).item()
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    assert nn.functional.cross_entropy(model(x), y).item() < 0.7 * before


def test_config_values_reach_the_optimizer():
    model = nn.Linear(2, 2)
    cfg = OptimConfig(name="sgd", lr=0.1, momentum=0.8, nesterov=True, weight_decay=1e-4)
    group = optim.build(model, cfg).param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]) == (
        0.1,
        0.8,
        True,
        1e-4,
    )


def test_unknown_optimizer_lists_valid_names():
    with pytest.raises(ConfigError, match=r"optim.name: unknown optimizer 'adamm' — did you mean"):
        optim.build(nn.Linear(2, 2), OptimConfig(name="adamm"))
