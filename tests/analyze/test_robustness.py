"""Robustness suite: exact invariances give exactly the clean accuracy, every corruption runs at
every severity, noise hurts more as it grows on a real trained run, the files and the CLI."""

import csv
from functools import partial

import pytest
import torch
from torch import nn

from cnnlab.analyze import robustness as rb
from cnnlab.augment.ops import OPS
from cnnlab.cli import main
from cnnlab.data.sources.digits import read_digits
from cnnlab.errors import ConfigError


def symmetrise(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.copy_((m.weight + m.weight.flip(-1)) / 2)


def mirror_symmetric_net(images, labels) -> nn.Module:
    """Convolutions with left-right symmetric kernels, then global average pooling: the logits
    of an image and of its mirror image are the same. Fitted a little (kernels symmetrised
    after every step) so that its predictions are not constant."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    x = (images.float() / 255 - 0.3) / 0.4
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(40):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), labels).backward()
        opt.step()
        symmetrise(net)
    return net.eval()


@pytest.fixture(scope="module")
def digits():
    from cnnlab.config.schema import DataConfig

    data = read_digits(DataConfig(name="digits")).train
    return data.images[:400], data.labels[:400]


def score(model, images, labels, transform=None):
    return rb.accuracy(model, images, labels, mean=(0.3,), std=(0.4,), transform=transform)


@pytest.fixture(scope="module")
def mirror_net(digits):
    return mirror_symmetric_net(*digits)


def test_a_mirror_invariant_model_scores_the_same_on_mirrored_images(digits, mirror_net):
    images, labels = digits
    net = mirror_net
    x = (images.float() / 255 - 0.3) / 0.4
    assert torch.allclose(net(x), net(x.flip(-1)), atol=1e-5)
    clean = score(net, images, labels)
    flipped = score(net, images, labels, partial(OPS.get("flip"), p=1.0))
    assert flipped == clean
    assert len(set(net(x).argmax(1).tolist())) > 1  # not a constant prediction


def test_grayscale_is_the_identity_on_one_channel_images(digits, mirror_net):
    images, labels = digits
    net = mirror_net
    gray = partial(OPS.get("grayscale"), p=1.0)
    assert score(net, images, labels, gray) == score(net, images, labels)


@pytest.mark.parametrize("name", list(rb.CORRUPTIONS))
def test_every_corruption_runs_at_every_severity_and_stays_in_range(name):
    x = torch.rand(4, 3, 12, 12)
    for s in rb.SEVERITIES:
        out = rb.corruption_transform(name, s, 12, 12)(x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == x.dtype
        assert 0 <= out.min() and out.max() <= 1
        if name not in ("grayscale", "invert"):
            again = rb.corruption_transform(name, s, 12, 12)(x, torch.Generator().manual_seed(0))
            assert torch.equal(out, again)  # the same seed, the same corruption


def test_jpeg_gets_worse_as_quality_drops():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32).mul(4).round().div(4)  # blocky: JPEG keeps some of it
    errors = [
        (rb.corruption_transform("jpeg", s, 32, 32)(x, None) - x).abs().mean().item()
        for s in rb.SEVERITIES
    ]
    assert errors == sorted(errors) and errors[0] > 0


def test_suite_on_a_trained_run(trained):
    result = rb.robustness(trained, only=["noise", "saturation", "invert", "grayscale"])
    assert result.split == "val" and result.images == len(trained.images("val"))
    assert result.accuracy["saturation"] is None and result.accuracy["grayscale"] is None
    noise = result.accuracy["noise"]
    assert noise[-1] < noise[0] <= result.clean + 0.02  # monotone-ish: severity 5 is worst
    assert noise[-1] < result.clean - 0.05
    assert len(set(result.accuracy["invert"])) == 1
    errors = [1 - a for a in noise + result.accuracy["invert"]]
    assert result.mean_error == pytest.approx(sum(errors) / len(errors))
    assert result.relative_error == pytest.approx(result.mean_error - (1 - result.clean))


def test_files_have_the_names_the_report_embeds(trained, tmp_path):
    result = rb.robustness(trained, only="noise,hue", limit=64)
    paths = rb.write(result, tmp_path)
    stem = "robustness-val-noise+hue-first64"  # named by what ran: no other run overwrites it
    assert [p.name for p in paths.values()] == [f"{stem}.csv", f"{stem}.md", f"{stem}.png"]
    from cnnlab.report.results import result_sections

    shown = "".join(result_sections(tmp_path))  # the report embeds what robustness wrote
    assert "<h4>Robustness" in shown and "<table>" in shown and "data:image/png" in shown
    rows = list(csv.reader(paths["csv"].open()))
    assert rows[0] == ["corruption", "1", "2", "3", "4", "5", "mean"]
    assert [r[0] for r in rows[1:]] == ["noise", "hue", "clean", "mean corruption error"]
    assert rows[2][1:] == ["n/a"] * 6
    assert float(rows[3][1]) == pytest.approx(result.clean, abs=1e-4)
    assert float(rows[4][-1]) == pytest.approx(result.mean_error, abs=1e-4)
    md = paths["md"].read_text()
    assert "| corruption | 1 | 2 | 3 | 4 | 5 | mean |" in md and "mCE" in md
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_corruption_is_a_one_line_error():
    with pytest.raises(ConfigError, match="did you mean noise"):
        rb.select("noize")


def test_cli(run_dir, capsys):
    assert main(["robustness", str(run_dir), "--only", "blur,jpeg", "--limit", "50"]) == 0
    out = capsys.readouterr().out
    assert "| blur |" in out and "robustness-val-blur+jpeg-first50.csv" in out
    assert (run_dir / "robustness-val-blur+jpeg-first50.png").is_file()
    assert main(["robustness", str(run_dir), "--only", "blurr"]) == 2
    assert main(["robustness", str(run_dir), "--split", "test"]) == 2  # digits has no test
    assert "no test split" in capsys.readouterr().err


def test_accuracy_under_a_random_corruption_does_not_depend_on_the_batch_size(digits, mirror_net):
    """Noise is drawn per corruption chunk, not per model batch: --batch-size only changes how
    the model is fed."""
    images, labels = digits
    noise = rb.corruption_transform("noise", 3, 8, 8)
    scores = {
        size: rb.accuracy(
            mirror_net, images, labels, mean=(0.3,), std=(0.4,), transform=noise, batch_size=size
        )
        for size in (32, 100, 1024)
    }
    assert len(set(scores.values())) == 1, scores


@pytest.mark.parametrize(
    ("requested", "native", "expected"),
    [
        ("auto", True, "bf16"),
        ("auto", False, "fp32"),
        ("fp32", True, "fp32"),
        ("fp16", False, "fp16"),
    ],
)
def test_auto_precision_is_bf16_only_for_an_fp32_run_on_an_amx_cpu(
    trained, monkeypatch, requested, native, expected
):
    assert trained.config.train.precision == "fp32"
    monkeypatch.setattr(rb, "native_bf16", lambda device: native)
    assert rb.suite_precision(trained, requested) == expected


def test_unknown_precision_is_a_one_line_error(trained):
    with pytest.raises(ConfigError, match="--precision fp33: expected one of auto, fp32"):
        rb.suite_precision(trained, "fp33")


@pytest.mark.slow
def test_bf16_suite_is_close_to_fp32_and_says_so(trained, monkeypatch):
    """bf16 autocast rounds activations: a few predictions near the boundary flip, no more."""
    seen = []
    score = rb.score
    monkeypatch.setattr(rb, "score", lambda *a, **k: seen.append(a[2]) or score(*a, **k))
    runs = {p: rb.robustness(trained, only="noise,blur", precision=p) for p in ("fp32", "bf16")}
    assert set(seen[: len(seen) // 2]) == {"fp32"} and set(seen[len(seen) // 2 :]) == {"bf16"}
    assert runs["fp32"].precision == "fp32" and "model in bf16" in runs["bf16"].markdown()
    assert runs["bf16"].clean == pytest.approx(runs["fp32"].clean, abs=0.02)
    for name in ("noise", "blur"):
        assert runs["bf16"].accuracy[name] == pytest.approx(runs["fp32"].accuracy[name], abs=0.03)


def test_cli_precision(run_dir, capsys):
    argv = ["robustness", str(run_dir), "--only", "invert", "--limit", "20"]
    assert main([*argv, "--precision", "fp33"]) == 2
    assert "--precision fp33: expected one of" in capsys.readouterr().err
    assert main([*argv, "--precision", "fp32"]) == 0
    assert "(cpu, fp32)" in capsys.readouterr().out


@pytest.mark.slow
def test_a_subset_never_overwrites_the_whole_suite(trained, tmp_path):
    whole = rb.write(rb.robustness(trained, limit=32), tmp_path)
    before = whole["csv"].read_bytes()
    part = rb.write(rb.robustness(trained, only="noise,blur", limit=32), tmp_path)
    assert whole["csv"].name == "robustness-val-first32.csv"
    assert part["csv"].name == "robustness-val-noise+blur-first32.csv"
    assert whole["csv"].read_bytes() == before  # the whole suite's results are still there
