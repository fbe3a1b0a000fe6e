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


@pytest.mark.slow
def test_one_run_page_has_numbers_charts_config_and_model(sweep):
    _, real, _ = sweep
    out = write_report([real])
    assert out == real / "report.html"
    page = out.read_text()
    summary = json.loads((real / "summary.json").read_text())
    assert best_acc_text(real) in page
    assert f"{summary['final_val_acc']:.2%}" in page and summary["device"] in page
    assert "completed" in page
    # 3 epochs: judged, but too short for the trend rules, which the page says as a note
    assert "<li class=note><b>too_short</b>: only 3 epochs (completed)" in page
    images = PNG_URI.findall(page)
    assert len(images) == 3  # loss linear and log, accuracy linear: no log axis of accuracy
    for data in images:
        rgb = pixels(base64.b64decode(data))
        assert rgb.shape[0] > 200 and rgb.std() > 20, "blank chart"
    assert "loss (log scale)" in page and "accuracy" in page and "accuracy (log" not in page
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


@pytest.mark.slow
def test_several_runs_get_a_comparison_table(sweep, tmp_path, tables):
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
    assert len(PNG_URI.findall(page)) == 2 + 2 * 3  # overlays + each run's charts
    # one legend for both overlays, each entry with what differs on hover
    legend = re.findall(
        r'<li title="([^"]*)"><span class=swatch[^>]*></span><a [^>]*>([^<]*)</a>', page
    )
    assert legend == [("optim.lr=0.003", "optim.lr=0.003"), ("optim.lr=0.01", "optim.lr=0.01")]
    (compared,) = [t for t in tables(page) if t.css_class == "runs"]
    assert compared.column("run") == [real.name, other.name]


@pytest.mark.slow
def test_best_is_highlighted_within_each_dataset(sweep, tmp_path, tables):
    _, real, other = sweep
    runs = [copy_run(real, tmp_path / name) for name in ("d1", "d2", "f1", "f2", "c1")]
    for run, data, acc in zip(
        runs,
        ["digits", "digits", "fashion-mnist", "fashion-mnist", "cifar10"],
        [0.70, 0.60, 0.95, 0.90, 0.99],
        strict=True,
    ):
        edit_yaml(
            run / "config.yaml",
            lambda c, data=data, acc=acc: c["data"].update(name=data) or c["optim"].update(lr=acc),
        )
        edit_summary(run, best_val_acc=acc)
    page = write_report(runs, tmp_path / "datasets.html").read_text()
    (compared,) = [t for t in tables(page) if t.css_class == "runs"]
    best = [cells[0] for css, cells in compared.rows if css == "best"]
    # the best of each dataset with two runs; the lone cifar10 run has nothing to beat
    assert best == ["d1", "f1"]
    assert "among the runs on the same dataset (data.name)" in page


@pytest.mark.slow
def test_a_sweep_folder_lists_its_runs(sweep, tmp_path, monkeypatch):
    root, real, other = sweep
    monkeypatch.chdir(tmp_path)
    out = write_report([root])
    assert out.name == "report.html" and out.resolve().parent == tmp_path.resolve()
    page = out.read_text()
    assert real.name in page and other.name in page and "<th>optim.lr</th>" in page
    # a run named both directly and through its sweep is shown once
    assert write_report([root, real], tmp_path / "b.html").read_text().count("<details") == 2


@pytest.mark.slow
def test_confusion_and_robustness_files_become_tables(run_copy, tables):
    (run_copy / "confusion.csv").write_text("true\\pred,cat,dog\ncat,9,1\ndog,2,8\n")
    (run_copy / "robustness.csv").write_text(
        "corruption,1,2,mean\nnoise,0.9,0.71,0.805\nclean,0.95,0.95,0.95\n"
        "mean corruption error,0.1,0.29,0.195\n"
    )
    page = write_report([run_copy]).read_text()
    assert "<h4>Confusion matrix</h4>" in page and "<h4>Robustness</h4>" in page
    assert "<th>true\\pred</th><th>cat</th><th>dog</th>" in page
    assert "<th>cat</th><td class=num>9</td>" in page  # counts stay counts
    # fractions in the CSV, percentages on the page as in the CLI and robustness.md
    robustness = next(t for t in tables(page) if t.rows[0][1][0] == "corruption")
    assert robustness.row("noise")[1] == ["noise", "90.00", "71.00", "80.50"]
    assert robustness.row("mean corruption error")[1][1:] == ["10.00", "29.00", "19.50"]
    assert robustness.rows[0][1] == ["corruption", "1", "2", "mean"]


@pytest.mark.slow
def test_every_confusion_and_robustness_output_is_shown_by_what_made_it(run_copy):
    """eval and robustness name their outputs by split and subset (confusion-test.csv,
    robustness-noise.csv); the report shows each, next to today's names."""
    png = pixels_png()
    for name in ("confusion", "confusion-test", "confusion-val-tta"):
        (run_copy / f"{name}.csv").write_text(f"true\\pred,a,b\na,{len(name)},0\nb,0,1\n")
    (run_copy / "confusion-val-tta.png").write_bytes(png)
    (run_copy / "robustness-noise.csv").write_text("corruption,1,mean\nnoise,0.5,0.5\n")
    (run_copy / "robustness-noise.png").write_bytes(png)
    (run_copy / "robustness.png").write_bytes(png)  # a chart without its table
    page = write_report([run_copy]).read_text()
    headings = re.findall(r"<h4>((?:Confusion|Robustness)[^<]*)</h4>", page)
    assert headings == [
        "Confusion matrix",
        "Confusion matrix (test)",
        "Confusion matrix (val-tta)",
        "Robustness",
        "Robustness (noise)",
    ]
    for name in ("confusion", "confusion-test", "confusion-val-tta"):
        assert f"<th>a</th><td class=num>{len(name)}</td>" in page
    assert "<th>noise</th><td class=num>50.00</td>" in page
    assert len(PNG_URI.findall(page)) == 3 + 3  # the run's charts + the three result images


def pixels_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_run_still_going_has_a_page_too(run_copy):
    from cnnlab.track.rundir import RunDir

    (run_copy / "summary.json").unlink()
    (run_copy / "metrics.jsonl").unlink()
    writer = RunDir.reopen(run_copy, [])  # a trainer holds the run's lock
    try:
        page = write_report([run_copy]).read_text()
    finally:
        writer.close()
    assert "running (no summary.json yet)" in page and "no epochs finished yet" in page
    assert "data:image/png" not in page
    killed = write_report([run_copy]).read_text()  # no writer any more: it was killed
    assert "killed (no summary.json yet)" in killed


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


@pytest.mark.slow
def test_the_error_check_sees_console_errors(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><body><script>console.error('x'); nope();</script></body>")
    errors = page_errors(headless(bad, tmp_path, "--dump-dom").stderr, bad)
    assert any("Uncaught ReferenceError" in line for line in errors), "check is blind"


@pytest.mark.slow
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
    assert text.count('src="data:image/png;base64,') == 8


@pytest.mark.slow
def test_a_wide_comparison_fits_1200_px_and_scrolls_in_its_own_box(sweep, tmp_path):
    """Many differing keys with long values: the page stays 1,200 px wide (the table scrolls
    inside its box, long cells are cut with the whole value on hover)."""
    _, real, _ = sweep

    def differ(config, i):
        config["optim"].update(lr=0.001 * (i + 1), weight_decay=1e-4 * i, momentum=0.5 + i / 10)
        config["model"].update(layers=[f"conv({16 * (k + i)}, 3)" for k in range(8)], width=8 + i)
        config["data"].update(root=f"/a/very/long/path/to/some/images/of/mine/{i}" * 2)
        config["train"].update(batch_size=64 + i, label_smoothing=0.05 * i, seed=i)

    runs = [copy_run(real, tmp_path / f"run-with-a-rather-long-name-{i}") for i in range(3)]
    for i, run in enumerate(runs):
        edit_yaml(run / "config.yaml", lambda c, i=i: differ(c, i))
    page = write_report(runs, tmp_path / "wide.html")
    assert '<span title="[&#x27;conv(16, 3)&#x27;, ' in page.read_text()  # cut, whole on hover
    # The page itself has no script; a copy of it measures the layout in the browser.
    probe = tmp_path / "probe.html"
    measure = (
        "<script>const box = document.querySelector('table.runs').parentElement;"
        "document.title = document.documentElement.scrollWidth + ' ' + box.clientWidth;</script>"
    )
    probe.write_text(page.read_text().replace("</body>", measure + "</body>"))
    dom = headless(probe, tmp_path, "--dump-dom", "--window-size=1200,2400")
    assert dom.returncode == 0 and page_errors(dom.stderr, probe) == []
    page_width, box = map(int, re.search(r"<title>(\d+) (\d+)</title>", dom.stdout).groups())
    assert page_width <= 1200 and box <= 1100  # the body's max-width
