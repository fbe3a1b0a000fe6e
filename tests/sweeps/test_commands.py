"""`cnnlab sweep show` and `cnnlab sweep worker` given wrong places: one line, exit 2."""

from __future__ import annotations

import socket

import pytest

from cnnlab.cli import main


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the with block ends


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["show"], "cnnlab sweep show DIR: give the sweep directory"),
        (["show", "{tmp}"], "not a sweep directory (no sweep.json)"),
        (["worker", "--study", "s"], "cnnlab sweep worker: give --storage URL and --study NAME"),
        (["worker", "--storage", "{tmp}/none.journal", "--study", "s"], "no such journal file"),
        (["worker", "--storage", "{tmp}", "--study", "s"], "no such journal file"),
        (
            ["worker", "--storage", "postgresql://cnnlab@127.0.0.1:{port}/x", "--study", "s"],
            "cannot open it (",
        ),
        (["{tmp}/spec.yaml", "--study", "s"], "--study names the study a worker joins"),
        (["{tmp}/missing.yaml"], "missing.yaml: spec file not found"),
    ],
    ids=[
        "show-nothing",
        "show-not-a-sweep",
        "worker-no-storage",
        "worker-no-journal",
        "worker-folder",
        "worker-no-server",
        "study-without-worker",
        "no-spec-file",
    ],
)
@pytest.mark.slow
def test_wrong_places_are_one_line_and_exit_2(tmp_path, capsys, argv, says):
    port = _closed_port()
    argv = [a.format(tmp=tmp_path, port=port) for a in argv]
    assert main(["sweep", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err
    assert not (tmp_path / "none.journal").exists()  # a mistyped storage is not created
