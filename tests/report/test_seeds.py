"""The report of groups of seeds (runs of one config that differ only by train.seed), on real
tiny digits runs: one comparison row with mean ± std (n), and a section whose curves show every
seed faintly behind the mean and its ±std band."""

import base64
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from cnnlab.config import load_config
from cnnlab.report import write_report
from cnnlab.training.experiment import train

pytestmark = pytest.mark.slow  # four real trainings

PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A folder holding a group of three seeds (as `cnnlab train --seeds 3` writes it: run
    directories and a group.json) and, next to it, one run with another lr."""
    root = tmp_path_factory.mktemp("seeds")
    with pytest.MonkeyPatch.context() as mp:  # conftest's cache fixture is per-function
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))

        def run(folder, *overrides):
            base = ["train.epochs=2", "model.width=8", f"run.dir={root / folder}"]
            return train(load_config(overrides=[*base, *overrides])).path

        seeds = [run("group", f"train.seed={seed}", f"run.name=s{seed}") for seed in (1, 2, 3)]
        (root / "group" / "group.json").write_text(json.dumps({"n": 3}))
        other = run("other", "train.seed=1", "optim.lr=0.01")
    return root, seeds, other


def summaries(paths) -> list[dict]:
    return [json.loads((p / "summary.json").read_text()) for p in paths]


def mean_std(values) -> str:
    """What numpy says, formatted as the report does."""
    mean, std = 100 * np.mean(values), 100 * np.std(values, ddof=1)
    return f"{mean:.2f} ± {std:.2f} % (n={len(values)})"


def test_a_group_is_one_row_with_mean_and_std(runs, tmp_path, tables):
    root, seeds, other = runs
    page = write_report([root], tmp_path / "report.html").read_text()
    compared = next(t for t in tables(page) if t.css_class == "runs")  # the first
    assert len(compared.rows) == 1 + 2  # header, the group, the other run
    group = compared.row("3 seeds (1, 2, 3)")[1]
    head = compared.rows[0][1]
    got = dict(zip(head, group, strict=True))
    for column, key in [("best val acc", "best_val_acc"), ("final val acc", "final_val_acc")]:
        assert got[column] == mean_std([s[key] for s in summaries(seeds)])
    seconds = [s["train_seconds"] for s in summaries(seeds)]
    assert got["train time"] == f"{np.mean(seconds):.1f} ± {np.std(seconds, ddof=1):.1f} s (n=3)"
    assert got["epochs"] == "2" and got["status"] == "3 completed"
    assert got["optim.lr"] == "0.003" and "train.seed" not in head  # the seed is no difference
    assert compared.row(other.name)[1][head.index("optim.lr")] == "0.01"
    assert "<h1>cnnlab report: 4 runs, 1 group of seeds</h1>" in page


def test_a_group_has_a_section_with_each_seed_and_its_mean_curves(runs, tmp_path, tables):
    root, seeds, _ = runs
    page = write_report([root / "group"], tmp_path / "group.html").read_text()
    section = page.split('<section id="group-0">')[1].split("</section>")[0]
    (per_seed,) = tables(section)
    assert per_seed.column("run") == [p.name for p in seeds] + ["mean ± std (n)"]
    assert per_seed.column("train.seed") == ["1", "2", "3", ""]
    accs = [s["best_val_acc"] for s in summaries(seeds)]
    assert per_seed.rows[-1][0] == "mean" and mean_std(accs) in per_seed.rows[-1][1]
    assert per_seed.column("best val acc")[0].startswith(f"{accs[0]:.2%}")
    images = PNG_URI.findall(section)
    assert len(images) == 2  # loss and accuracy
    assert "loss: seeds and mean ± std" in section and "accuracy: seeds and mean ± std" in section
    for data in images:
        rgb = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"), float)
        # the ±std band: C0 blue at alpha 0.2 over white, and C1 orange's
        for band in ((210, 227, 240), (255, 229, 207)):
            assert (np.abs(rgb - band).max(axis=2) < 8).sum() > 500, f"no band {band}"
    # each seed still has its own section, linked from its row
    for i, path in enumerate(seeds):
        assert f'<a href="#run-{i}">{path.name}</a>' in section
        assert f'<section id="run-{i}">' in page
