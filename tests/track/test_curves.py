"""track.curves: legend labels that tell runs apart, group curves (mean ± std band, seeds
faint) equal to numpy's, and log axes that read as plain numbers."""

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PolyCollection

from cnnlab.track.curves import config_labels, plot_curves, plot_groups, run_labels
from cnnlab.track.registry import Run

LAYERS = [f"conv({16 * i}, 3, bias=False)" for i in range(1, 9)]


def run(name, metrics=(), **config):
    """A Run from dotted keys: run("a", **{"optim.lr": 0.1})."""
    nested: dict = {}
    for key, value in config.items():
        section, _, leaf = key.partition(".")
        nested.setdefault(section, {})[leaf] = value
    return Run(Path(name), nested, {}, list(metrics))


def test_labels_put_the_short_differences_first_and_stay_short():
    runs = [
        run("a", **{"model.layers": LAYERS, "optim.lr": 0.1}),
        run("b", **{"model.layers": LAYERS[:2], "optim.lr": 0.2}),
    ]
    labels = run_labels(runs)
    assert labels == ["optim.lr=0.1 model.layers=[8 items]", "optim.lr=0.2 model.layers=[2 items]"]
    assert all(len(label) <= 80 for label in labels)


def test_long_values_that_start_alike_keep_distinct_labels():
    swapped = [LAYERS[0], "conv(7, 3, bias=False)", *LAYERS[2:]]  # the same length, too
    runs = [run("a", **{"model.layers": LAYERS}), run("b", **{"model.layers": swapped})]
    a, b = run_labels(runs)
    assert a != b and "conv(32" in a and "conv(7" in b
    # a long path differing at its end shows the end
    paths = [run(c, **{"data.root": f"/data/some/long/folder/of/images-{c}"}) for c in "xy"]
    assert run_labels(paths) == ["data.root=…mages-x", "data.root=…mages-y"]


def test_keys_that_do_not_fit_are_left_to_the_tooltip():
    configs = [
        {
            "optim": {"lr": lr},
            "data": {"root": f"/{'a' * 40}/{i}", "name": f"set-{i}" * 6},
            "model": {"name": f"{'b' * 30}{i}"},
        }
        for i, lr in enumerate([0.1, 0.2])
    ]
    labels = config_labels(configs, ["a", "b"])
    short = [label.short for label in labels]
    assert short[0].startswith("optim.lr=0.1 data.root=…aaaaa/0 ")
    assert all(len(s) <= 80 + 2 and s.endswith(" …") for s in short)  # more keys differ
    assert short[0] != short[1]
    # the tooltip has every differing key, whole
    assert labels[0].full.splitlines() == [
        "optim.lr=0.1",
        f"data.root=/{'a' * 40}/0",
        f"data.name={'set-0' * 6}",
        f"model.name={'b' * 30}0",
    ]


def test_identical_configs_are_labelled_by_their_directory():
    assert run_labels([run("x", **{"optim.lr": 0.1}), run("y", **{"optim.lr": 0.1})]) == ["x", "y"]


def seed_runs():
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(4):
        epochs = 5 if seed else 3  # one seed stopped early
        rows = [
            {"epoch": e, "train_loss": 1 / e + rng.normal(0, 0.05), "val_acc": 0.5 + e / 20}
            for e in range(1, epochs + 1)
        ]
        runs.append(run(f"s{seed}", rows, **{"train.seed": seed}))
    return runs


def test_a_group_is_its_mean_with_a_sample_std_band_and_faint_seeds():
    runs = seed_runs()
    ax = plot_groups([runs], ["train_loss"]).axes[0]
    mean_line = [line for line in ax.lines if line.get_label().startswith("train_loss")]
    assert len(mean_line) == 1 and "(mean ± std, n=4)" in mean_line[0].get_label()
    assert len(ax.lines) == 1 + 4  # the mean and every seed
    assert all(line.get_alpha() < 1 for line in ax.lines if line not in mean_line)
    values = {
        e: [m["train_loss"] for r in runs for m in r.metrics if m["epoch"] == e]
        for e in range(1, 6)
    }
    mean = [np.mean(values[e]) for e in range(1, 6)]
    std = [np.std(values[e], ddof=1) for e in range(1, 6)]
    assert np.allclose(mean_line[0].get_ydata(), mean)
    (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    ys = band.get_paths()[0].vertices[:, 1]
    lo, hi = np.array(mean) - std, np.array(mean) + std
    assert np.isclose(ys.min(), lo.min()) and np.isclose(ys.max(), hi.max())
    # without the seeds: the mean and its band only
    assert len(plot_groups([runs], ["train_loss"], seeds=False).axes[0].lines) == 1


def tick_labels(fig) -> list[str]:
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    labels = ax.get_yticklabels() + ax.get_yticklabels(minor=True)
    return [t.get_text() for t in labels if t.get_text()]


@pytest.mark.parametrize("metric", ["val_acc", "train_loss"])
def test_log_axes_read_as_plain_numbers_and_accuracy_as_error(metric):
    rows = [{"epoch": e, "val_acc": 0.8 + e / 50, "train_loss": 0.9 - e / 20} for e in range(1, 6)]
    fig = plot_curves([run("a", rows)], [metric], log=True)
    labels = tick_labels(fig)
    assert labels and not any("times" in t or "^" in t for t in labels), labels
    if metric == "val_acc":  # accuracies near 1 have no log range: 1 - acc has
        assert fig.axes[0].get_ylabel() == "error (1 - val_acc)"
        assert np.allclose(fig.axes[0].lines[0].get_ydata(), [0.2 - e / 50 for e in range(1, 6)])
