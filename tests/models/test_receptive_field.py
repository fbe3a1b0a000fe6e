"""Receptive fields in the model summary, checked against hand calculation.

Recurrence per axis (kernel k, stride s, padding p, dilation d), starting from (1, 1, 0):
size += (k-1)·d·jump;  jump *= s;  start += ((k-1)/2·d - p)·jump_in.
"""

import pytest
import torch
import torchvision
from torch import nn

from cnnlab import models
from cnnlab.models.receptive import Field, sequential, union


def fields(model: nn.Module, shape=(1, 16, 16)) -> dict[str, Field]:
    """H-axis field of each layer's output, by layer name (last call wins)."""
    s = models.summarize(model, shape)
    return {r.name: r.receptive_field[0] for r in s.rows}


def test_5x5_then_3x3_sees_7_pixels():
    net = nn.Sequential(nn.Conv2d(1, 1, 5, padding=2), nn.Conv2d(1, 1, 3, padding=1))
    f = fields(net)
    assert f["0"] == Field(5, 1, 0.0)  # 1 + (5-1)·1 = 5
    assert f["1"] == Field(7, 1, 0.0)  # 5 + (3-1)·1 = 7; 'same' padding keeps start at 0


def test_pooling_composes_like_a_conv_and_multiplies_the_jump():
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(1, 1, 3, padding=1)
    )
    f = fields(net)
    assert (f["0"].size, f["0"].jump) == (3, 1)  # 1 + 2·1
    assert f["1"] == f["0"]  # ReLU is elementwise
    assert (f["2"].size, f["2"].jump) == (4, 2)  # 3 + (2-1)·1 = 4; jump 1·2
    assert (f["3"].size, f["3"].jump) == (8, 2)  # 4 + (3-1)·2 = 8
    # start: conv 0 + (1 - 1)·1 = 0; pool 0 + (0.5 - 0)·1 = 0.5 (centre of pixels 0 and 1);
    # conv 0.5 + (1 - 1)·2 = 0.5.
    assert [f[k].start for k in "0123"] == [0.0, 0.0, 0.5, 0.5]


def test_avg_pool_with_stride_and_padding():
    # AvgPool2d(3, stride=2, padding=1): size 1 + 2·1 = 3, jump 2, start 0 + (1 - 1)·1 = 0.
    assert fields(nn.Sequential(nn.AvgPool2d(3, 2, 1)))["0"] == Field(3, 2, 0.0)


def test_dilation_widens_the_kernel():
    net = nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2, padding=2), nn.Conv2d(1, 1, 3, dilation=4))
    f = fields(net, (1, 32, 32))
    assert f["0"] == Field(5, 1, 0.0)  # 1 + (3-1)·2·1 = 5; start 0 + (1·2 - 2)·1 = 0
    assert f["1"] == Field(13, 1, 4.0)  # 5 + (3-1)·4·1 = 13; start 0 + (1·4 - 0)·1 = 4


def test_padding_shifts_the_start():
    # Conv 3×3 stride 2: start = 0 + ((3-1)/2 - p)·1 = 1 - p.
    for pad, start in [(0, 1.0), (1, 0.0), (2, -1.0)]:
        assert fields(nn.Sequential(nn.Conv2d(1, 1, 3, 2, pad)))["0"] == Field(3, 2, start)
    # A second layer's padding counts in units of the jump: after conv3 s2 p0 (size 3, jump 2,
    # start 1), conv3 p0 gives size 3 + 2·2 = 7, start 1 + (1 - 0)·2 = 3; with p1, 1 + 0·2 = 1.
    for pad, start in [(0, 3.0), (1, 1.0)]:
        two = nn.Sequential(nn.Conv2d(1, 1, 3, 2), nn.Conv2d(1, 1, 3, 1, pad))
        assert fields(two)["1"] == Field(7, 2, start)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_string_padding():
    # 'same' for k=4: total 3, PyTorch puts 1 on the left: start 0 + (1.5 - 1)·1 = 0.5.
    assert fields(nn.Sequential(nn.Conv2d(1, 1, 4, padding="same")))["0"] == Field(4, 1, 0.5)
    assert fields(nn.Sequential(nn.Conv2d(1, 1, 3, padding="valid")))["0"].start == 1.0


def test_axes_are_reported_separately_when_they_differ():
    s = models.summarize(nn.Sequential(nn.Conv2d(1, 1, (3, 5), padding=(1, 2))), (1, 8, 8))
    h, w = s.rows[0].receptive_field
    assert (h.size, w.size) == (3, 5)
    assert "3/1/0 × 5/1/0" in s.table()


class Residual(nn.Module):
    """x + branch(x), the branch two 3×3 convs: the sum sees 5 px, the branch's field."""

    def __init__(self, shortcut: nn.Module | None = None):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)
        )
        self.shortcut = shortcut or nn.Identity()
        self.out = nn.ReLU()

    def forward(self, x):
        return self.out(self.shortcut(x) + self.branch(x))


def test_residual_block_takes_the_larger_branch_not_the_chain():
    f = fields(Residual(), (4, 16, 16))
    assert f["branch.2"] == Field(5, 1, 0.0)  # 1 + 2 + 2
    assert f["out"] == Field(5, 1, 0.0)  # max(5, 1 for the identity)


def test_residual_block_with_a_conv_shortcut_is_5_not_9():
    # Shortcut of two 3×3 convs too: the graph gives max(5, 5) = 5. Composing the four leaf
    # convs in call order, as a chain, would give 1 + 4·2 = 9.
    shortcut = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    s = models.summarize(Residual(shortcut), (4, 16, 16))
    assert s.rows[-1].receptive_field[0] == Field(5, 1, 0.0)
    assert s.receptive_field_method == "torch.fx graph"


def test_concatenation_takes_the_union_of_offset_fields():
    class TwoPaths(nn.Module):  # two 3×3 convs side by side, one padded, concatenated
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=1)  # pixels -1..1, start 0
            self.b = nn.Conv2d(1, 1, 3, padding=0)  # pixels 0..2, start 1
            self.out = nn.ReLU()

        def forward(self, x):  # (1, 8, 8) -> a: (1, 8, 8), b: (1, 6, 6) -> (2, 6, 6)
            return self.out(torch.cat([self.a(x)[..., :6, :6], self.b(x)], dim=1))

    # The cat's output unit 0 sees pixels -1..1 and 0..2, so -1..2: size 4, centre 0.5.
    f = fields(TwoPaths(), (1, 8, 8))
    assert (f["a"], f["b"]) == (Field(3, 1, 0.0), Field(3, 1, 1.0))
    assert f["out"] == union([f["a"], f["b"]]) == Field(4, 1, 0.5)


def test_global_pooling_and_linear_see_the_whole_input():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3)
    )
    s = models.summarize(net, (1, 8, 8))
    assert [str(r.receptive_field[0]) for r in s.rows] == ["3/1/0", "global", "global", "global"]
    assert s.receptive_field[0].whole and s.receptive_field[0].size == 8  # the 8-px image
    assert s.local_receptive_field[0] == Field(3, 1, 0.0)


def test_squeeze_excite_gate_makes_the_field_global():
    class SE(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.fc = nn.Conv2d(2, 2, 1)
            self.act = nn.ReLU()

        def forward(self, x):
            y = self.conv(x)
            return self.act(y * self.fc(y.mean((2, 3), keepdim=True)).sigmoid())

    f = fields(SE(), (2, 8, 8))
    assert f["conv"] == Field(3, 1, 0.0)
    assert f["act"].whole  # every output is scaled by a gate computed from the whole map


def test_untraceable_model_falls_back_to_the_chain_and_says_so():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 1, 3, padding=1)
            self.b = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x):
            x = self.a(x)
            return self.b(x) if x.abs().sum() >= 0 else x  # a value: fx cannot trace it

    s = models.summarize(DataDependent(), (1, 8, 8))
    assert [r.receptive_field[0].size for r in s.rows] == [3, 5]  # 1 + 2, 3 + 2
    assert s.receptive_field_method.startswith("sequential")
    assert "torch.fx could not trace" in s.table()


def test_resnet18_final_stage_sees_435_pixels_at_jump_32():
    # conv1 7×7/2 p3: 1 + 6·1 = 7, jump 2, start 0 + (3 - 3)·1 = 0
    # maxpool 3×3/2 p1: 7 + 2·2 = 11, jump 4, start 0
    # layer1, four 3×3/1 convs on the longest path: 11 + 4·(2·4) = 43, jump 4
    # layer2: 43 + 2·4 = 51 (stride 2 → jump 8), then 3 convs: 51 + 3·(2·8) = 99
    # layer3: 99 + 2·8 = 115 (jump 16), 115 + 3·(2·16) = 211
    # layer4: 211 + 2·16 = 243 (jump 32), 243 + 3·(2·32) = 435
    # Every conv pads (k-1)/2 and the 1×1 shortcuts pad 0, so start stays 0.
    net = torchvision.models.resnet18(num_classes=10)
    s = models.summarize(net, (3, 32, 32))
    f = {r.name: r.receptive_field[0] for r in s.rows}
    assert f["conv1"] == Field(7, 2, 0.0)
    assert f["maxpool"] == Field(11, 4, 0.0)
    assert f["layer1.1.conv2"] == Field(43, 4, 0.0)
    assert f["layer2.1.conv2"] == Field(99, 8, 0.0)
    assert f["layer3.1.conv2"] == Field(211, 16, 0.0)
    assert f["layer4.1.conv2"] == Field(435, 32, 0.0)
    assert s.local_receptive_field == (Field(435, 32, 0.0),) * 2
    assert s.receptive_field[0].whole  # after avgpool + fc
    assert "435 px, jump 32, start 0" in s.table()
    # Composed as a chain of leaf layers, each 1×1/2 shortcut conv would double the jump again
    # on top of its block's stride-2 conv: 1891 px at jump 256, the error the graph avoids.
    leaves = [(n, m) for n, m in net.named_modules() if next(m.children(), None) is None]
    chain = sequential(leaves, (32, 32))
    assert chain[[n for n, _ in leaves].index("layer4.1.conv2")][0] == Field(1891, 256, 0.0)
