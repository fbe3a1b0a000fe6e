import pytest
import torch

from cnnlab.augment.tta import build_views
from cnnlab.errors import ConfigError


def test_no_views_means_no_tta():
    assert build_views([]) is None


def test_flip_and_shift_views():
    views = build_views(["flip", {"view": "shift", "pixels": 1}])
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = views(x)
    assert len(out) == 4  # original, mirror, two shifts
    assert torch.equal(out[0], x) and torch.equal(out[1], x.flip(-1))
    assert torch.equal(out[2][0, 0, 1:, 1:], x[0, 0, :3, :3])  # moved down-right by 1
    assert torch.equal(out[3][0, 0, :3, :3], x[0, 0, 1:, 1:])  # moved up-left by 1
    assert all(v.shape == x.shape for v in out)


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("rotate", "expected flip"),
        ({"view": "shift", "pixels": 0}, "pixels = 0"),
        ({"view": "flip", "pixels": 1}, "unknown key"),
        (3, "expected flip"),
    ],
)
def test_bad_views_are_config_errors(spec, fragment):
    with pytest.raises(ConfigError, match=fragment):
        build_views([spec])
