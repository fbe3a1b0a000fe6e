"""The command line as a user runs it: exit codes, one-line errors, the last printed line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cnnlab", *args], capture_output=True, text=True, cwd=cwd
    )


@pytest.mark.slow
def test_train_prints_the_run_path_last_and_exits_zero(tmp_path):
    proc = run_cli("train", "train.epochs=1", "model.width=8", f"run.dir={tmp_path}")
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("run: ")
    run = Path(last.removeprefix("run: "))
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"


def test_bad_key_is_one_line_exit_2_no_traceback(tmp_path):
    proc = run_cli("train", "optim.lrr=0.1", f"run.dir={tmp_path}")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "cnnlab: error: unknown key optim.lrr — did you mean optim.lr? "
        "(from override optim.lrr=0.1)"
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not list(tmp_path.iterdir())  # nothing written


def test_debug_shows_the_traceback():
    proc = run_cli("--debug", "config", "show", "optim.lr=-1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr


@pytest.mark.slow
def test_divergence_exits_3(tmp_path):
    proc = run_cli(
        "train",
        "model.name=mlp",
        "optim.name=sgd",
        "optim.lr=1e12",
        "model.width=8",
        f"run.dir={tmp_path}",
    )
    assert proc.returncode == 3
    assert proc.stdout.strip().splitlines()[-1].startswith("run: ")


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "-c", "missing.yaml"], "missing.yaml: config file not found"),
        (["train", "model.name=resnt"], "model.name: unknown model 'resnt'"),
        (["train", "train.epochs=many"], "train.epochs = 'many'"),
        (["config", "show", "recipe=fastt"], "unknown recipe 'fastt'"),
        (["train", "notakeyvalue"], "expected key=value"),
    ],
)
def test_user_errors_exit_2_with_a_one_line_message(args, fragment, capsys, tmp_path):
    assert main([*args, f"run.dir={tmp_path}"] if args[0] == "train" else args) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1


def test_config_show_prints_the_resolved_yaml(tmp_path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text("optim: {name: sgd}\n")
    assert main(["config", "show", "-c", str(extra), "optim.lr=0.05"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["optim"]["name"] == "sgd" and shown["optim"]["lr"] == 0.05
    assert shown["model"]["name"] == "cnn"


def test_config_recipes_lists_default(capsys):
    assert main(["config", "recipes"]) == 0
    assert "default" in capsys.readouterr().out.split()


def test_console_script_is_installed():
    exe = Path(sys.executable).parent / "cnnlab"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "train" in proc.stdout


def test_overrides_may_follow_options(tmp_path, capsys):
    extra = tmp_path / "extra.yaml"
    extra.write_text("optim: {name: sgd}\n")
    assert main(["config", "show", "optim.lr=0.5", "-c", str(extra), "train.epochs=3"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert (shown["optim"]["lr"], shown["optim"]["name"], shown["train"]["epochs"]) == (
        0.5,
        "sgd",
        3,
    )


def test_unknown_flags_are_still_rejected(capsys):
    with pytest.raises(SystemExit) as e:
        main(["config", "show", "--nope"])
    assert e.value.code == 2 and "unrecognized arguments: --nope" in capsys.readouterr().err


def test_summary_prints_the_model_table(capsys):
    assert main(["summary", "model.width=8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cnn on digits: 10 classes")
    assert "total params" in out and "Conv2d" in out


def test_summary_rejects_an_option_the_model_does_not_take(capsys):
    assert main(["summary", "model.name=mlp", "model.se=true"]) == 2
    assert "model.se is not an option of model 'mlp'" in capsys.readouterr().err


@pytest.mark.slow
def test_lr_find_prints_a_suggestion_and_writes_plot_and_json(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["lr-find", "--steps", "40", "--start-lr", "1e-5", "-o", str(out), "model.width=8"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "lr_find.json").read_text())
    assert f"suggested lr: {data['suggested_lr']:.3g}" in printed
    assert (out / "lr_find.png").stat().st_size > 0 and str(out / "lr_find.png") in printed


def test_lr_find_bad_option_is_one_line_exit_2(capsys):
    assert main(["lr-find", "--start-lr", "1", "--end-lr", "0.1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--end-lr" in err[0]


@pytest.mark.slow
def test_runs_list_compare_plot_export_on_real_runs(tmp_path, capsys):
    root = tmp_path / "runs"
    for lr in ("0.01", "0.001"):
        args = ["train", "train.epochs=1", "model.name=mlp", "model.width=8", f"optim.lr={lr}"]
        assert main([*args, f"run.dir={root}"]) == 0
    capsys.readouterr()
    proc = run_cli("runs", "list", "--root", str(root), "--sort", "optim.lr")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 4 and lines[-1] == f"2 of 2 runs in {root}"
    assert " 0.001 " in lines[1] and " 0.01 " in lines[2] and "completed" in lines[1]
    assert (root / ".cnnlab-index.sqlite").is_file()

    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert main(["runs", "compare", "--root", str(root), *names]) == 0
    out = capsys.readouterr().out
    assert "optim.lr" in out and "best_val_acc" in out and "model.width" not in out

    png = tmp_path / "loss.png"
    assert main(["runs", "plot", "--root", str(root), *names, "-o", str(png)]) == 0
    assert capsys.readouterr().out.strip() == f"curves: {png}" and png.stat().st_size > 0

    csv = tmp_path / "runs.csv"
    assert main(["runs", "export", "--root", str(root), "-o", str(csv)]) == 0
    import pandas as pd

    frame = pd.read_csv(csv)
    assert sorted(frame["optim.lr"]) == [0.001, 0.01]
    assert set(frame["status"]) == {"completed"}


@pytest.mark.slow
def test_runs_errors_are_one_line_exit_2(tmp_path):
    proc = run_cli("runs", "list", "--root", str(tmp_path / "missing"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"cnnlab: error: --root {tmp_path / 'missing'}: no such directory"
    ]
    proc = run_cli("runs", "compare", str(tmp_path), str(tmp_path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "not a run directory" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_report_writes_one_page_and_prints_its_path(tmp_path, capsys):
    assert main(["train", "train.epochs=1", "model.width=8", f"run.dir={tmp_path}"]) == 0
    run = next(tmp_path.iterdir())
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {run / 'report.html'}"
    assert "data:image/png;base64" in (run / "report.html").read_text()
    assert main(["report", str(tmp_path / "missing")]) == 2
