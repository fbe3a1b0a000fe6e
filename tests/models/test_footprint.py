import torch

from cnnlab import models
from cnnlab.config import load_config
from cnnlab.models.footprint import measure


class Shape:
    num_classes, channels, image_size = 10, 3, (32, 32)
    mean, std = (0.5,) * 3, (0.25,) * 3


def test_the_count_on_the_meta_device_is_the_real_models(tmp_path):
    config = load_config(overrides=["model.width=8", "train.batch_size=16"])
    need = models.footprint(config, Shape())
    real = models.build(config, Shape())
    params = sum(p.numel() for p in real.parameters())
    summary = models.summarize(real, (3, 32, 32))
    assert need.params == params and need.param_bytes == 8 * params
    # every leaf output of a batch of 16, and the batch itself, in float32
    assert need.activation_bytes == 16 * (summary.activation_bytes + 4 * 3 * 32 * 32)


def test_a_model_too_large_to_allocate_is_counted_without_allocating_it():
    huge = lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10**11))  # noqa: E731
    need = measure(huge, (3, 32, 32), batch=64)
    assert need.params == 3 * 32 * 32 * 10**11 + 10**11
    assert need.total_bytes > 2**50


def test_a_network_meta_cannot_build_is_not_counted():
    def needs_values():
        w = torch.ones(2)
        if w.sum().item() > 0:  # .item() of a meta tensor: no value to read
            return torch.nn.Linear(2, 2)

    assert measure(needs_values, (1, 2, 2), batch=1) is None
