"""Run directories a user, a crash or an attacker left damaged: every reader in track/ refuses
them in one line (load_run) or lists them as `unreadable` (runs list), never blocks on a FIFO,
never reads /dev/zero or a huge file into memory, never recurses into a RecursionError; and the
index is a cache that a damaged or foreign row or file never breaks."""

import json
import os
import sqlite3

import pytest
import yaml

from cnnlab.cli import main
from cnnlab.config.schema import Config
from cnnlab.errors import CnnlabError
from cnnlab.track import runindex, runs
from cnnlab.track.registry import MAX_BYTES, load_run

SUMMARY = {"status": "completed", "test_acc": 0.9, "best_epoch": 2, "epochs_run": 2}


def make_run(root, name="20260101-000001-a", lr=0.01):
    path = root / name
    path.mkdir(parents=True)
    config = Config().to_dict()
    config["optim"]["lr"] = lr
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "summary.json").write_text(json.dumps(SUMMARY))
    (path / "metrics.jsonl").write_text('{"epoch": 1, "val_acc": 0.5}\n')
    return path


def replace(path, how):
    path.unlink(missing_ok=True)
    if how == "fifo":
        os.mkfifo(path)
    elif how == "dev-zero":
        path.symlink_to("/dev/zero")
    elif how == "huge":
        with open(path, "wb") as f:  # sparse: no disk used, but larger than any cap
            f.truncate(MAX_BYTES["metrics.jsonl"] + 1)
    else:
        path.write_text(how)


@pytest.mark.parametrize("how", ["fifo", "dev-zero", "huge"])
@pytest.mark.parametrize("name", ["summary.json", "config.yaml"])
def test_fifos_devices_and_huge_files_are_refused_in_one_line(tmp_path, name, how):
    path = make_run(tmp_path)
    replace(path / name, how)
    if name != "config.yaml" or how == "huge":  # a config.yaml that is no file is no run
        with pytest.raises(CnnlabError, match=f"unreadable run directory \\({name}: ") as e:
            load_run(path)
        assert "\n" not in str(e.value)
        assert [r.status for r in runs.index_runs(tmp_path)] == ["unreadable"]
    else:
        assert runs.index_runs(tmp_path) == []


@pytest.mark.parametrize("how", ["fifo", "dev-zero", "huge"])
def test_a_bad_metrics_file_never_blocks_listing_plotting_or_exporting(tmp_path, how, capsys):
    path = make_run(tmp_path)
    replace(path / "metrics.jsonl", how)
    (path / "summary.json").unlink()  # listed from its progress: metrics.jsonl is read
    [row] = runs.index_runs(tmp_path)
    assert row.status == "killed" and row.get("epochs_run") == 0
    with pytest.raises(CnnlabError, match="metrics.jsonl: "):
        load_run(path).metrics  # noqa: B018
    out = tmp_path / "epochs.csv"
    args = ["runs", "export", "--root", str(tmp_path), "--epochs", "-o", str(out)]
    assert main(args) == 2
    assert "metrics.jsonl" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize(
    "text, why",
    [
        ("", "empty, not a mapping"),
        ("- a\n- b\n", "a list, not a mapping"),
        ("3\n", "a int, not a mapping"),
        ("a: " + "{b: " * 5000 + "1" + "}" * 5000 + "\n", "nesting depth"),  # 5,000 levels
        ("a: " + "[" * 900 + "]" * 900 + "\n", "nested more than 64 levels"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        ("a: !!float\n", "unreadable"),
        ("a: !!timestamp 2001-13-45\n", "unreadable"),
        ("a: &a [1, 2]\nb: [*a, *a]\n", "YAML aliases"),
    ],
)
def test_an_empty_deep_or_strange_config_is_unreadable_never_a_traceback(tmp_path, text, why):
    path = make_run(tmp_path)
    (path / "config.yaml").write_text(text)
    with pytest.raises(CnnlabError, match="unreadable run directory") as e:
        load_run(path)
    assert why in str(e.value) and "\n" not in str(e.value)
    assert [r.status for r in runs.index_runs(tmp_path)] == ["unreadable"]


def test_a_deep_summary_is_unreadable(tmp_path):
    path = make_run(tmp_path)
    (path / "summary.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(CnnlabError, match="summary.json"):
        load_run(path)
    assert [r.status for r in runs.index_runs(tmp_path)] == ["unreadable"]


def test_an_alias_bomb_in_config_yaml_is_refused_before_it_expands(tmp_path):
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    path = make_run(tmp_path)
    (path / "config.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(CnnlabError, match="YAML aliases"):
        load_run(path)


# ---------------------------------------------------------------- the index is only a cache


def rows_of(root):
    return {
        r.name: (r.status, r.get("optim.lr"), r.get("model.width")) for r in runs.index_runs(root)
    }


@pytest.mark.parametrize(
    "column, value",
    [
        ("head", "{not json"),
        ("head", "[1, 2]"),
        ("head", '{"s": [], "c": {}}'),
        ("stamp", None),
        ("date", 42),
        ("config", "{not json"),
        ("scalars", "{not json"),
        ("scalars", "3"),
        ("config", "[]"),
    ],
)
def test_a_damaged_or_foreign_index_row_is_read_again_from_the_run(tmp_path, column, value):
    make_run(tmp_path, "20260101-000001-a", lr=0.1)
    make_run(tmp_path, "20260101-000002-b", lr=0.2)
    expected = rows_of(tmp_path)
    with sqlite3.connect(tmp_path / runs.INDEX_NAME) as db:
        db.execute(f"UPDATE runs SET {column} = ?", (value,))
    assert rows_of(tmp_path) == expected
    assert [r.name for r in runs.filter_rows(runs.index_runs(tmp_path), ["model.width=32"])] == [
        r for r in expected if expected[r][2] == 32
    ]


@pytest.mark.parametrize("how", ["garbage", "fifo", "directory", "empty", "old-version"])
def test_a_damaged_or_foreign_index_file_never_breaks_a_listing(tmp_path, how, capsys):
    make_run(tmp_path)
    index = tmp_path / runs.INDEX_NAME
    if how == "garbage":
        index.write_bytes(os.urandom(4096))
    elif how == "fifo":
        os.mkfifo(index)
    elif how == "directory":
        index.mkdir()
    elif how == "empty":
        index.write_bytes(b"")
    else:
        with sqlite3.connect(index) as db:
            db.execute("CREATE TABLE runs (x)")
            db.execute("PRAGMA user_version = 1")
    (tmp_path / runindex.OLD_INDEX).write_text("{damaged")  # version 1's JSON cache
    for _ in range(2):
        assert main(["runs", "list", "--root", str(tmp_path)]) == 0
        assert "completed" in capsys.readouterr().out


def test_a_deleted_index_is_rebuilt_and_a_read_only_one_still_lists(tmp_path):
    make_run(tmp_path)
    runs.index_runs(tmp_path)
    (tmp_path / runs.INDEX_NAME).unlink()
    assert [r.status for r in runs.index_runs(tmp_path)] == ["completed"]
    assert (tmp_path / runs.INDEX_NAME).is_file()
    assert [r.status for r in runs.index_runs(tmp_path, cache=False)] == ["completed"]
