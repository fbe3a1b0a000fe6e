import copy

import pytest
import torch
from torch import nn

from cnnlab.config.schema import ModelConfig
from cnnlab.models import create as build
from cnnlab.models.fold import fold_batchnorm


def trained_cnn() -> nn.Module:
    """The default cnn with non-trivial BN statistics and affine parameters, in eval mode."""
    torch.manual_seed(0)
    model = build(ModelConfig(width=8), 10, 1, (28, 28))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_folded_net_computes_the_same_function_without_batchnorm():
    model = trained_cnn()
    before = copy.deepcopy(model.state_dict())
    folded = fold_batchnorm(model)
    x = torch.randn(16, 1, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
    assert batchnorms(model) == 6 and batchnorms(folded) == 0
    for key, value in model.state_dict().items():  # the original is untouched
        assert torch.equal(value, before[key]), key


def test_folding_keeps_channels_last():
    model = trained_cnn().to(memory_format=torch.channels_last)
    folded = fold_batchnorm(model)
    convs = [m for m in folded.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_a_net_in_training_mode_is_not_folded():
    model = trained_cnn().train()
    assert fold_batchnorm(model) is model


class DataDependent(nn.Module):
    """Python control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.bn(self.conv(x))
        return y if y.sum() > 0 else -y


def test_an_untraceable_net_is_returned_as_it_is():
    model = DataDependent().eval()
    assert fold_batchnorm(model) is model


@pytest.mark.parametrize("affine", [True, False])
def test_batchnorm_without_a_conv_before_it_stays(affine):
    model = nn.Sequential(nn.BatchNorm2d(1, affine=affine), nn.Conv2d(1, 2, 3)).eval()
    folded = fold_batchnorm(model)
    assert batchnorms(folded) == 1
