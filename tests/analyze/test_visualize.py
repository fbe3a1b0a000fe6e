"""viz: Grad-CAM maps (shape, range, where they peak), filters and activation grids, layer
names, and the CLI's exit codes."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cnnlab.analyze import visualize as viz
from cnnlab.analyze.trained import load_trained
from cnnlab.cli import main
from cnnlab.errors import ConfigError


class Quadrants(nn.Module):
    """Channel k of the output is the input on quadrant k only (top-left, then the other
    three), so that each channel is tied to one region."""

    def forward(self, x):
        h, w = x.shape[-2:]
        masks = torch.zeros(4, h, w)
        masks[0, : h // 2, : w // 2] = masks[1, : h // 2, w // 2 :] = 1
        masks[2, h // 2 :, : w // 2] = masks[3, h // 2 :, w // 2 :] = 1
        return x * masks


class TopLeft(nn.Module):
    """Class 0's logit is the top-left quadrant's mean, class 1's the bottom-right one's."""

    def __init__(self):
        super().__init__()
        self.quadrants = Quadrants()
        self.relu = nn.ReLU(inplace=True)  # in place after the layer: the capture must survive

    def forward(self, x):
        a = self.relu(self.quadrants(x))
        return torch.stack([a[:, 0].mean(dim=(1, 2)), a[:, 3].mean(dim=(1, 2))], dim=1)


def test_gradcam_peaks_where_the_logit_looks():
    torch.manual_seed(0)
    model = TopLeft().eval()
    x = torch.rand(3, 1, 16, 16) + 0.1
    cam = viz.gradcam(model, x, model.quadrants, target=torch.zeros(3, dtype=torch.long))
    assert cam.shape == (3, 16, 16)
    assert cam.min() >= 0 and cam.max() <= 1
    assert torch.allclose(cam.amax(dim=(1, 2)), torch.ones(3))
    assert cam[:, :7, :7].min() > 0.05 and cam[:, 9:, :].max() == 0 and cam[:, :, 9:].max() == 0
    other = viz.gradcam(model, x, model.quadrants, target=torch.ones(3, dtype=torch.long))
    assert other[:, 9:, 9:].min() > 0.05 and other[:, :7, :].max() == 0


def test_gradcam_of_a_trained_model_has_the_image_size(trained):
    images = trained.images("val").images[:5]
    x = (images.float() / 255 - trained.info.mean[0]) / trained.info.std[0]
    name, layer = viz.find_layer(trained.model, None)
    assert isinstance(layer, nn.Conv2d) and name == viz.convs(trained.model)[-1][0]
    cam = viz.gradcam(trained.model, x, layer)
    assert all(p.grad is None for p in trained.model.parameters())  # autograd.grad only
    assert cam.shape == (5, *images.shape[-2:])
    assert cam.min() >= 0 and cam.max() <= 1 and torch.isfinite(cam).all()


def test_filter_images_map_zero_to_mid_gray():
    w = torch.zeros(2, 1, 3, 3)
    w[0, 0, 0, 0], w[1, 0, 1, 1] = 1.0, -2.0
    tiles = viz.filter_images(w)
    assert tiles.shape == (2, 1, 3, 3) and tiles.dtype == torch.uint8
    assert tiles[0, 0, 0, 0] == 255 and tiles[1, 0, 1, 1] == 0 and tiles[0, 0, 2, 2] == 128
    assert viz.filter_images(torch.randn(4, 3, 5, 5)).shape == (4, 3, 5, 5)  # RGB kept
    assert viz.filter_images(torch.randn(4, 8, 3, 3)).shape == (4, 1, 3, 3)  # mean over inputs


def not_blank(path) -> bool:
    pixels = np.asarray(Image.open(path).convert("L"))
    return pixels.std() > 5


def test_filters_png_is_not_blank(trained, tmp_path):
    path = viz.write_filters(trained, tmp_path / "filters.png")
    assert not_blank(path)


@pytest.mark.slow
def test_activations_and_unknown_layers(trained, tmp_path):
    name = viz.convs(trained.model)[0][0]
    out = viz.activations(
        trained.model, torch.zeros(2, 1, 8, 8), viz.find_layer(trained.model, name)[1]
    )
    assert out.shape[:2] == (2, trained.model.get_submodule(name).out_channels)
    path = viz.write_activations(trained, name, path=tmp_path / "a.png")
    assert not_blank(path)
    with pytest.raises(ConfigError, match=r"--layer '0\.00': no such layer — did you mean 0\.0"):
        viz.find_layer(trained.model, "0.00")


@pytest.mark.slow
def test_cli(run_dir, capsys):
    first = viz.convs(load_trained(run_dir, device="cpu").model)[0][0]
    assert main(["viz", "filters", str(run_dir)]) == 0
    assert main(["viz", "gradcam", str(run_dir), "--n", "4"]) == 0
    assert main(["viz", "activations", str(run_dir), "--layer", first]) == 0
    for name in ("filters.png", "gradcam.png", f"activations-{first}.png"):
        assert not_blank(run_dir / name)
    capsys.readouterr()
    assert main(["viz", "activations", str(run_dir), "--layer", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cnnlab: error: --layer 'nope'") and err.count("\n") == 1
