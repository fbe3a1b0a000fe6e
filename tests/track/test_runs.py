"""cnnlab.track.runs and `cnnlab runs`: on run directories written by hand (fast), so sorting,
filtering, the index cache and exports are checked on exactly known values."""

import json
import os
import sqlite3
import time

import pandas as pd
import pytest
import yaml
from PIL import Image

from cnnlab.cli import main
from cnnlab.config.schema import Config
from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.track import curves, runindex, runs
from cnnlab.track.rundir import RunDir

BASE = Config().to_dict()


def make_run(root, name, *, lr=0.01, opt="adam", test_acc=0.9, summary=True, epochs=3, seed=0):
    """A run directory as `cnnlab train` leaves it (the files the table and plots read)."""
    path = root / name
    path.mkdir(parents=True)
    config = json.loads(json.dumps(BASE))
    config["optim"].update(lr=lr, name=opt)
    config["train"].update(epochs=epochs, seed=seed)
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    metrics = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "val_loss": 1.2 / e,
            "train_acc": 0.5 + e / 10,
            "val_acc": test_acc - (epochs - e) / 100,
            "lr": lr,
        }
        for e in range(1, epochs + 1)
    ]
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if summary:
        write_summary(path, test_acc=test_acc, epochs=epochs)
    return path


def write_summary(path, test_acc=0.9, epochs=3, status="completed"):
    summary = {
        "status": status,
        "best_val_acc": test_acc,
        "final_val_acc": test_acc,
        "test_acc": test_acc,
        "best_epoch": epochs,
        "epochs_run": epochs,
        "train_seconds": 10.0 * epochs,
        "versions": {"torch": "2.x"},
        "diagnosis": [],
    }
    (path / "summary.json").write_text(json.dumps(summary))


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "20260101-000001-a", lr=0.1, opt="sgd", test_acc=0.80)
    make_run(root, "20260101-000002-b", lr=0.01, opt="adam", test_acc=0.95)
    make_run(root, "20260101-000003-c", lr=0.001, opt="adam", test_acc=0.90)
    return root


def names(rows):
    return [r.name for r in rows]


def test_index_reads_config_and_summary_and_dates(root):
    rows = runs.index_runs(root)
    assert names(rows) == ["20260101-000001-a", "20260101-000002-b", "20260101-000003-c"]
    a = rows[0]
    assert a.date == "2026-01-01 00:00:01"
    assert a.get("optim.lr") == 0.1 and a.get("lr") == 0.1 and a.get("optimizer") == "sgd"
    assert a.get("test_acc") == 0.80 and a.get("time") == 30.0
    assert a.get("versions.torch") == "2.x"  # nested summary keys are flattened
    assert "diagnosis" not in a.scalars  # lists are not table material


def test_sort_accuracies_descend_others_ascend_none_last(root):
    make_run(root, "20260101-000004-d", test_acc=0.5, summary=False)  # running: no test_acc
    rows = runs.index_runs(root)
    assert names(runs.sort_rows(rows, "test_acc"))[:3] == [
        "20260101-000002-b",
        "20260101-000003-c",
        "20260101-000001-a",
    ]
    assert names(runs.sort_rows(rows, "test_acc"))[-1] == "20260101-000004-d"
    assert [r.get("lr") for r in runs.sort_rows(rows, "optim.lr")] == [0.001, 0.01, 0.01, 0.1]
    assert names(runs.sort_rows(rows, "date"))[0] == "20260101-000004-d"  # newest first
    assert names(runs.sort_rows(rows, "test_acc", reverse=True))[0] == "20260101-000001-a"


def test_filters_are_yaml_values_and_combine(root):
    rows = runs.index_runs(root)
    assert names(runs.filter_rows(rows, ["optim.name=adam"])) == [
        "20260101-000002-b",
        "20260101-000003-c",
    ]
    assert names(runs.filter_rows(rows, ["optim.name=adam", "optim.lr=1e-3"])) == [
        "20260101-000003-c"
    ]
    assert names(runs.filter_rows(rows, ["test_acc>=0.9", "status=completed"])) == [
        "20260101-000002-b",
        "20260101-000003-c",
    ]
    assert names(runs.filter_rows(rows, ["optim.name!=adam"])) == ["20260101-000001-a"]
    assert runs.filter_rows(rows, ["model.stages=[2, 2, 2]"]) == rows  # lists compare too
    assert runs.filter_rows(rows, ["run.name=null"]) == rows


def test_bad_filter_or_sort_key_names_it(root):
    rows = runs.index_runs(root)
    with pytest.raises(ConfigError, match=r"unknown key optim.lrr — did you mean optim.lr\?"):
        runs.filter_rows(rows, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        runs.filter_rows(rows, ["optim.lr"])
    with pytest.raises(ConfigError, match="--sort test_ac: unknown key test_ac"):
        runs.sort_rows(rows, "test_ac")
    runs.filter_rows(rows, ["train.ema=null"])  # a schema key is fine even if unset


def count_reads(monkeypatch):
    reads = []
    real = runindex.read_fields

    def counting(path):
        reads.append(path.name)
        return real(path)

    monkeypatch.setattr(runindex, "read_fields", counting)
    return reads


def table(rows):
    """What a listing shows of each run."""
    return [(r.name, r.date, r.scalars, dict(r.flat_config)) for r in rows]


def cached_names(root):
    with sqlite3.connect(root / runs.INDEX_NAME) as db:
        return sorted(name for (name,) in db.execute("SELECT name FROM runs"))


def test_index_cache_is_used_and_invalidated(root, monkeypatch):
    reads = count_reads(monkeypatch)
    first = runs.index_runs(root)
    assert len(reads) == 3 and (root / runs.INDEX_NAME).is_file()
    reads.clear()
    assert table(runs.index_runs(root)) == table(first)
    assert reads == []  # nothing changed: nothing parsed

    # a still-running run (its trainer holds the lock): listed from its metrics, then its
    # summary appears
    running = make_run(root, "20260101-000004-d", test_acc=0.7, summary=False)
    writer = RunDir(running)
    writer.lock()
    rows = runs.index_runs(root)
    assert reads == ["20260101-000004-d"]
    assert rows[-1].get("status") == "running" and rows[-1].get("epochs_run") == 3
    assert rows[-1].get("best_val_acc") == pytest.approx(0.7)
    reads.clear()
    write_summary(running, test_acc=0.75)
    writer.close()
    rows = runs.index_runs(root)
    assert reads == ["20260101-000004-d"]
    assert rows[-1].get("status") == "completed" and rows[-1].get("test_acc") == 0.75

    # a summary rewritten with the same size and a new mtime is re-read too
    reads.clear()
    summary = root / "20260101-000001-a" / "summary.json"
    text = summary.read_text().replace('"completed"', '"diverged!"')
    summary.write_text(text)
    os.utime(summary, ns=(time.time_ns(), time.time_ns() + 10**9))
    rows = runs.index_runs(root)
    assert reads == ["20260101-000001-a"] and rows[0].get("status") == "diverged!"

    # a deleted run disappears, from the table and the index
    reads.clear()
    for f in (root / "20260101-000002-b").iterdir():
        f.unlink()
    (root / "20260101-000002-b").rmdir()
    rows = runs.index_runs(root)
    assert reads == [] and "20260101-000002-b" not in names(rows)
    assert cached_names(root) == ["20260101-000001-a", "20260101-000003-c", "20260101-000004-d"]


def test_a_corrupt_index_is_rebuilt(root):
    (root / runs.INDEX_NAME).write_text("{not json")
    assert len(runs.index_runs(root)) == 3
    assert len(cached_names(root)) == 3


def test_sweep_folders_one_level_deeper_and_unreadable_runs(root):
    make_run(root / "sweep-lr", "trial-1", lr=0.5)
    bad = root / "20260101-000009-bad"
    bad.mkdir()
    (bad / "config.yaml").write_text("a: [unclosed\n")
    (root / "empty").mkdir()  # not a run, holds none
    rows = {r.name: r for r in runs.index_runs(root)}
    assert rows["sweep-lr/trial-1"].get("lr") == 0.5
    assert rows["20260101-000009-bad"].get("status") == "unreadable"
    assert "empty" not in rows


@pytest.mark.slow
def test_thousand_runs_are_read_once_then_listed_from_the_index(tmp_path, monkeypatch):
    root = tmp_path / "runs"
    one = make_run(root, "20260101-000000-r0000")
    files = {name: (one / name).read_text() for name in runs.WATCHED}
    for i in range(1, 1000):
        path = root / f"20260101-{i:06d}-r{i:04d}"
        path.mkdir()
        for name, text in files.items():
            (path / name).write_text(text)
    reads = count_reads(monkeypatch)
    monkeypatch.setattr(runindex, "PARALLEL_FROM", 10**6)  # read here, where reads are counted
    assert len(runs.index_runs(root)) == 1000 and len(reads) == 1000
    reads.clear()
    rows = runs.sort_rows(runs.index_runs(root), "test_acc")
    assert len(rows) == 1000 and reads == []


def test_runs_list_imports_neither_matplotlib_nor_pydantic(root):
    """runs list must start fast: matplotlib (0.6 s) loads only when a figure is drawn, pydantic
    and the schema (0.25 s) only when a config is validated or a filter's key is unknown."""
    import subprocess
    import sys

    code = (
        "import sys; from cnnlab.cli import main; main(['runs', 'list', '--root', sys.argv[1],"
        " '--sort', 'optim.lr', '--filter', 'test_acc>0']);"
        " print(sorted(m for m in ('matplotlib', 'pydantic', 'torch') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(root)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_gc_paused_gives_back_the_collectors_state():
    import gc

    assert gc.isenabled()
    with runs.gc_paused():
        assert not gc.isenabled()
        with runs.gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(KeyError), runs.gc_paused():
        raise KeyError
    assert gc.isenabled()


def test_compare_shows_exactly_the_differing_keys(root):
    rows = [runs.read_row(p) for p in sorted(root.iterdir())]
    result = runs.compare(rows)
    assert result.names == ["20260101-000001-a", "20260101-000002-b", "20260101-000003-c"]
    assert [k for k, _ in result.config] == ["optim.name", "optim.lr"]
    assert dict(result.config)["optim.lr"] == [0.1, 0.01, 0.001]
    assert dict(result.summary)["test_acc"] == [0.80, 0.95, 0.90]
    assert [k for k, _ in result.summary] == list(runs.COMPARED)


def test_resolve_run_by_path_or_name(root):
    assert runs.resolve_run("20260101-000001-a", root) == root / "20260101-000001-a"
    with pytest.raises(CnnlabError, match="not a run directory"):
        runs.resolve_run(root / "nope", root)


def test_plot_metric_names():
    available = ["train_loss", "val_loss", "val_acc", "lr"]
    assert runs.plot_metrics("loss", available) == ["train_loss", "val_loss"]
    assert runs.plot_metrics("val_acc", available) == ["val_acc"]
    with pytest.raises(ConfigError, match=r"--metric val_los: .*did you mean val_loss\?"):
        runs.plot_metrics("val_los", available)


def plot_cli(root, *args):
    paths = [str(p) for p in sorted(root.iterdir()) if p.is_dir()]
    return main(["runs", "plot", *paths, *args])


@pytest.mark.parametrize("metric, lines", [("val_loss", 3), ("loss", 6)])
def test_plot_writes_one_line_per_run_and_metric(
    root, tmp_path, capsys, monkeypatch, metric, lines
):
    drawn = []
    real = curves.plot_curves

    def spy(run_list, metrics, log=False):
        figure = real(run_list, metrics, log)
        drawn.append(len(figure.axes[0].lines))
        return figure

    monkeypatch.setattr(curves, "plot_curves", spy)
    out = tmp_path / "c.png"
    assert plot_cli(root, "--metric", metric, "--log", "-o", str(out)) == 0
    assert drawn == [lines]
    assert capsys.readouterr().out.strip() == f"curves: {out}"
    pixels = Image.open(out).convert("L")
    low, high = pixels.getextrema()
    assert high - low > 100  # not blank


def test_cli_list_prints_the_table(root, capsys):
    assert main(["runs", "list", "--root", str(root), "--sort", "test_acc", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "20260101-000002-b" in lines[1] and "95.00%" in lines[1] and "completed" in lines[1]
    assert "20260101-000003-c" in lines[2]
    assert "000001-a" not in out
    assert lines[-1] == f"2 of 3 runs in {root}; 1 more row not shown (--limit 0 shows all)"


def test_cli_list_filters_to_nothing(root, capsys):
    assert main(["runs", "list", "--root", str(root), "--filter", "optim.name=lion"]) == 0
    assert "no runs" in capsys.readouterr().out


def test_cli_compare(root, capsys):
    paths = [str(p) for p in sorted(root.iterdir()) if p.is_dir()]
    assert main(["runs", "compare", *paths]) == 0
    out = capsys.readouterr().out
    assert "optim.lr" in out and "optim.name" in out and "model.width" not in out
    assert "95.00%" in out and "30.0 s" in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["list", "--filter", "optim.lrr=1"], "unknown key optim.lrr — did you mean optim.lr?"),
        (["list", "--sort", "bogus"], "--sort bogus: unknown key bogus"),
        (["plot", "20260101-000001-a", "--metric", "nope"], "--metric nope: not in these runs"),
        (["compare", "20260101-000001-a", "not-a-run"], "not-a-run: not a run directory"),
    ],
)
def test_cli_user_errors_are_one_line_exit_2(root, capsys, args, fragment):
    assert main(["runs", *args[:1], "--root", str(root), *args[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and fragment in err


def test_export_csv_round_trips(root, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(["runs", "export", "--root", str(root), "-o", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"3 rows: {out}"
    frame = pd.read_csv(out)
    assert list(frame["name"]) == ["20260101-000001-a", "20260101-000002-b", "20260101-000003-c"]
    assert list(frame["optim.lr"]) == [0.1, 0.01, 0.001]
    assert list(frame["test_acc"]) == [0.80, 0.95, 0.90]
    assert json.loads(frame["model.stages"][0]) == BASE["model"]["stages"]


def test_export_parquet_and_epochs(root, tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "runs.parquet"
    assert main(["runs", "export", "--root", str(root), "-o", str(out), "--filter", "lr<0.05"]) == 0
    frame = pd.read_parquet(out)
    assert list(frame["name"]) == ["20260101-000002-b", "20260101-000003-c"]
    assert frame.equals(runs.export_frame(runs.index_runs(root)[1:]))
    epochs = tmp_path / "epochs.csv"
    assert main(["runs", "export", "--root", str(root), "--epochs", "-o", str(epochs)]) == 0
    frame = pd.read_csv(epochs)
    assert len(frame) == 9 and list(frame["epoch"][:3]) == [1, 2, 3]
    assert set(frame["run"]) == {"20260101-000001-a", "20260101-000002-b", "20260101-000003-c"}


def test_export_parquet_without_pyarrow_is_one_line(root, tmp_path, capsys, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name == "pyarrow":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    out = tmp_path / "x.parquet"
    assert main(["runs", "export", "--root", str(root), "-o", str(out)]) == 2
    assert "pip install pyarrow" in capsys.readouterr().err and not out.exists()


def test_cli_list_of_a_missing_root_is_one_line_exit_2(tmp_path, capsys):
    assert main(["runs", "list", "--root", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such directory" in err


def test_piped_tables_are_never_wrapped_or_folded(root, capsys):
    long = make_run(root, "20260101-000004-" + "a-rather-long-run-name" * 4, lr=0.5)
    assert main(["runs", "list", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 4 + 1  # header, a line per run, the count
    assert any(long.name in line and "completed" in line for line in lines)
    assert main(["runs", "compare", *[str(p) for p in sorted(root.iterdir()) if p.is_dir()]]) == 0
    out = capsys.readouterr().out
    [lr_line] = [line for line in out.splitlines() if line.startswith("optim.lr")]
    assert lr_line.split()[1:] == ["0.1", "0.01", "0.001", "0.5"]
    header = out.splitlines()[0]
    assert header.endswith(long.name) and len(header) > 80  # whole, on one line


def test_list_shows_a_page_on_a_terminal_and_says_how_many_are_left(tmp_path, capsys, monkeypatch):
    from cnnlab.cli.runs_commands import LIST_LIMIT

    for i in range(LIST_LIMIT + 5):
        make_run(tmp_path, f"20260101-{i:06d}-r{i}")
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "250")  # a wide terminal: rich folds nothing
    assert main(["runs", "list", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("completed") == LIST_LIMIT
    assert f"{LIST_LIMIT} of {LIST_LIMIT + 5} runs" in out and "5 more rows not shown" in out
    assert main(["runs", "list", "--root", str(tmp_path), "--limit", "0"]) == 0
    assert capsys.readouterr().out.count("completed") == LIST_LIMIT + 5


def seeds(root, name, lr, accs):
    """A group folder as `cnnlab train --seeds` writes it: runs of one config, group.json."""
    folder = root / name
    for seed, acc in enumerate(accs):
        make_run(folder, f"20260102-00000{seed}-s{seed}", lr=lr, test_acc=acc, seed=seed)
    (folder / "group.json").write_text("{}")
    return folder


def test_list_group_folds_seeds_into_one_row_with_mean_and_std(root, capsys):
    from cnnlab.track.groups import stats

    seeds(root, "lr-0.3", 0.3, [0.91, 0.92, 0.96])
    assert main(["runs", "list", "--root", str(root), "--group", "--sort", "test_acc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 4 + 1
    expected = stats([0.91, 0.92, 0.96]).format(percent=True, n=False).replace(" %", "%")
    assert lines[1].startswith("20260101-000002-b")  # 95 %, then the group's mean of 93 %
    assert lines[2].startswith("lr-0.3 (3 runs)") and expected in lines[2]
    assert "completed ×3" in lines[2]
    assert lines[-1] == f"6 of 6 runs in {root}, in 4 rows"


def test_compare_shows_seeds_of_one_config_as_one_column(root, capsys):
    from cnnlab.track.groups import stats

    folder = seeds(root, "lr-0.3", 0.3, [0.91, 0.92, 0.96])
    paths = [str(p) for p in sorted(folder.glob("2026*"))] + [str(root / "20260101-000001-a")]
    result = runs.compare([runs.read_row(p) for p in paths])
    assert result.names == ["lr-0.3", "20260101-000001-a"] and result.sizes == [3, 1]
    assert dict(result.config)["train.seed"] == [[0, 1, 2], 0]
    assert dict(result.summary)["test_acc"][0] == stats([0.91, 0.92, 0.96])
    assert main(["runs", "compare", *paths]) == 0
    out = capsys.readouterr().out
    assert "lr-0.3 (n=3)" in out and "93.00 ± 2.65%" in out and "completed ×3" in out
    assert main(["runs", "compare", "--each", *paths]) == 0
    assert "(n=3)" not in capsys.readouterr().out


def test_export_keeps_integers_integers_even_where_a_run_lacks_them(root, tmp_path):
    make_run(root, "20260101-000004-d", summary=False)  # killed: no best_epoch
    out = tmp_path / "runs.csv"
    assert main(["runs", "export", "--root", str(root), "-o", str(out)]) == 0
    header, *rows = out.read_text().splitlines()
    column = header.split(",").index("best_epoch")
    assert [r.split(",")[column] for r in rows] == ["3", "3", "3", ""]
    assert list(runs.export_frame(runs.index_runs(root))["best_epoch"])[:3] == [3, 3, 3]


def test_export_epochs_skips_the_line_a_running_trainer_is_appending(root, tmp_path):
    with open(root / "20260101-000001-a" / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "train_lo')
    out = tmp_path / "epochs.csv"
    assert main(["runs", "export", "--root", str(root), "--epochs", "-o", str(out)]) == 0
    assert len(pd.read_csv(out)) == 9


@pytest.mark.parametrize("command", ["export", "plot", "report"])
@pytest.mark.parametrize("where", ["a directory", "a missing folder", "under a file"])
def test_output_paths_that_cannot_be_written_are_one_line_errors(
    root, tmp_path, capsys, command, where
):
    (tmp_path / "file").write_text("")
    target = {
        "a directory": tmp_path,
        "a missing folder": tmp_path / "new" / "dir" / "x.out",
        "under a file": tmp_path / "file" / "x.out",
    }[where]
    run = str(root / "20260101-000001-a")
    args = {
        "export": ["runs", "export", "--root", str(root)],
        "plot": ["runs", "plot", run],
        "report": ["report", run],
    }[command]
    assert main([*args, "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err
    assert not (tmp_path / "new").exists()  # no chain of folders made
