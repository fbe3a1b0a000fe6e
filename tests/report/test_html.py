"""write_report: the self-contained HTML page of a run or of several, checked as text and in a
real headless Chromium (skipped when none is installed: `apt-get install chromium`)."""

import base64
import io
import json
import re
import shutil
import subprocess

import numpy as np
import pytest
import yaml
from PIL import Image

from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.report import write_report
from cnnlab.track.rundir import CONFUSION_CSV, ROBUSTNESS_CSV
from cnnlab.training.experiment import train

PNG_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A folder of two runs differing in optim.lr: one real 3-epoch run and a copy of it with
    lr and accuracies edited (a second training would double this module's time)."""
    root = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:  # conftest's cache fixture is per-function
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        config = load_config(overrides=["model.width=8", "train.epochs=3", f"run.dir={root}"])
        real = train(config).path
    other = copy_run(real, root / "zz-lr-0.01")
    edit_yaml(other / "config.yaml", lambda c: c["optim"].update(lr=0.01))
    edit_summary(other, best_val_acc=0.5, final_val_acc=0.4)
    return root, real, other


@pytest.fixture
def run_copy(sweep, tmp_path):
    """A private copy of the real run, for tests that add files to it."""
    return copy_run(sweep[1], tmp_path / "run")


def copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints", "tensorboard", "*.html"))
    return dst


def edit_yaml(path, change):
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def edit_summary(run, **values):
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps(summary | values))


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)


def best_acc_text(run) -> str:
    summary = json.loads((run / "summary.json").read_text())
    return f"{summary['best_val_acc']:.2%} (epoch {summary['best_epoch']})"


def test_one_run_page_has_numbers_charts_config_and_model(sweep):
    _, real, _ = sweep
    out = write_report([real])
    assert out == real / "report.html"
    page = out.read_text()
    summary = json.loads((real / "summary.json").read_text())
    assert best_acc_text(real) in page
    assert f"{summary['final_val_acc']:.2%}" in page and summary["device"] in page
    assert "completed" in page and "no findings" in page
    images = PNG_URI.findall(page)
    assert len(images) == 4  # loss and accuracy, each linear and log
    for data in images:
        rgb = pixels(base64.b64decode(data))
        assert rgb.shape[0] > 200 and rgb.std() > 20, "blank chart"
    assert "loss (log scale)" in page and "accuracy (linear scale)" in page
    assert "optim:\n  name: adam" in page  # config.yaml verbatim
    assert "total params:" in page and "BatchNorm2d" in page  # model.txt
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page


def test_user_text_is_escaped(run_copy):
    finding = {"kind": "diverged", "message": "loss <b>nan</b> & worse", "advice": "<i>x</i>"}
    edit_summary(run_copy, diagnosis=[finding])
    page = write_report([run_copy], run_copy / "out.html").read_text()
    assert "loss &lt;b&gt;nan&lt;/b&gt; &amp; worse" in page and "<b>nan</b>" not in page
    assert "&lt;i&gt;x&lt;/i&gt;" in page and "no findings" not in page


def test_several_runs_get_a_comparison_table(sweep, tmp_path):
    _, real, other = sweep
    out = write_report([real, other], tmp_path / "cmp.html")
    page = out.read_text()
    table = page.split("<h2>Runs</h2>")[0]
    assert "<th>optim.lr</th>" in table
    assert "<td>0.003</td>" in table and "<td>0.01</td>" in table
    assert "<th>run.dir</th>" not in table  # differs in no run; run.dir is ignored anyway
    best_row = re.search(r"<tr class=best>(.*?)</tr>", table).group(1)
    assert real.name in best_row and best_acc_text(real) in best_row
    assert "50.00%" in table and "40.00%" in table  # the edited copy's accuracies
    assert page.count("<details open>") == 2  # few runs: unfolded
    assert len(PNG_URI.findall(page)) == 2 + 2 * 4  # overlays + each run's charts


def test_a_sweep_folder_lists_its_runs(sweep, tmp_path, monkeypatch):
    root, real, other = sweep
    monkeypatch.chdir(tmp_path)
    out = write_report([root])
    assert out.name == "report.html" and out.resolve().parent == tmp_path.resolve()
    page = out.read_text()
    assert real.name in page and other.name in page and "<th>optim.lr</th>" in page
    # a run named both directly and through its sweep is shown once
    assert write_report([root, real], tmp_path / "b.html").read_text().count("<details") == 2


def test_confusion_and_robustness_files_become_tables(run_copy):
    (run_copy / CONFUSION_CSV).write_text("true\\pred,cat,dog\ncat,9,1\ndog,2,8\n")
    (run_copy / ROBUSTNESS_CSV).write_text("corruption,severity,acc\nnoise,3,0.71\n")
    page = write_report([run_copy]).read_text()
    assert "<h4>Confusion matrix</h4>" in page and "<h4>Robustness</h4>" in page
    assert "<th>true\\pred</th><th>cat</th><th>dog</th>" in page
    assert "<th>cat</th><td class=num>9</td>" in page
    assert "<th>noise</th><td class=num>3</td><td class=num>0.71</td>" in page


def test_a_run_still_going_has_a_page_too(run_copy):
    (run_copy / "summary.json").unlink()
    (run_copy / "metrics.jsonl").unlink()
    page = write_report([run_copy]).read_text()
    assert "running (no summary.json yet)" in page and "no epochs finished yet" in page
    assert "data:image/png" not in page


def test_not_a_run_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no run directories") as e:
        write_report([tmp_path])
    assert str(tmp_path) in str(e.value)
    with pytest.raises(ConfigError, match="not a run directory"):
        write_report([tmp_path / "missing"])


# --- in a real browser ---------------------------------------------------------------------


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no Chromium: apt-get install chromium")


def headless(page, tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            chromium(),
            "--headless=new",
            "--no-sandbox",  # root in containers/CI
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def page_errors(stderr: str, page) -> list[str]:
    """Console messages and load failures that Chromium logs for the page; its own noise
    (no D-Bus, no GPU in a container) does not mention the page."""
    return [
        line
        for line in stderr.splitlines()
        if page.as_uri() in line
        and any(s in line for s in (":CONSOLE", "Uncaught", "ERR_", "Failed to load resource"))
    ]


def test_the_error_check_sees_console_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><body><script>console.error('x'); nope();</script></body>")
    errors = page_errors(headless(bad, tmp_path, "--dump-dom").stderr, bad)
    assert any("Uncaught ReferenceError" in line for line in errors), "check is blind"


def test_page_renders_in_chromium(sweep, tmp_path):
    _, real, other = sweep
    page = write_report([real, other], tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    result = headless(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400")
    assert result.returncode == 0, result.stderr[-2000:]
    assert page_errors(result.stderr, page) == []
    rgb = pixels(shot.read_bytes())
    assert rgb.shape[:2] == (2400, 1200)
    packed = rgb.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1])  # one int per colour
    assert rgb.std() > 10 and len(np.unique(packed)) > 50
    # matplotlib's first two line colours (C0 blue, C1 orange): the charts were drawn
    for colour in ((31, 119, 180), (255, 127, 14)):
        assert (np.abs(rgb - colour).max(axis=2) < 12).sum() > 200, f"no chart line {colour}"

    dom = headless(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0 and page_errors(dom.stderr, page) == []
    text = dom.stdout
    assert "<th>optim.lr</th>" in text and best_acc_text(real) in text
    assert text.count('src="data:image/png;base64,') == 10
