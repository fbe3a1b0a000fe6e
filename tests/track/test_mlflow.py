"""MLflow tracking (track.mlflow, runs export --mlflow), read back through MLflow's own client:
from a folder store, and from a real `mlflow server` (SQLite backend, served artifacts) that
the tests start on 127.0.0.1."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from cnnlab.cli import main
from cnnlab.config.keys import flatten
from cnnlab.config.schema import Config
from cnnlab.errors import ConfigError
from cnnlab.track import mlflow as tracking
from cnnlab.track.registry import load_run
from cnnlab.track.rundir import LOCK_NAME, RunDir

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402

SERVER_START_S = 240  # an mlflow server's first start migrates its database: ~40 s on 2 cores


@pytest.fixture(autouse=True)
def no_mlflow_environment(monkeypatch):
    """The user's MLflow variables never reach these tests."""
    for name in (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_EXPERIMENT_ID",
        tracking.PARENT_ENV,
        "MLFLOW_ALLOW_FILE_STORE",
    ):
        monkeypatch.delenv(name, raising=False)


def client(uri: str) -> MlflowClient:
    with pytest.MonkeyPatch.context() as patch:  # MLflow 3 opens a folder store only so
        patch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
        return MlflowClient(uri)


def only_run(uri: str, experiment: str = "cnnlab"):
    reader = client(uri)
    found = reader.search_runs([reader.get_experiment_by_name(experiment).experiment_id])
    assert len(found) == 1
    return reader, found[0]


def epoch(n: int) -> dict:
    return {
        "epoch": n,
        "step": 10 * n,
        "lr": 0.1 / n,
        "train_loss": 2.0 / n,
        "train_acc": 0.5 + 0.1 * n,
        "val_loss": 2.5 / n,
        "val_acc": 0.4 + 0.1 * n,
        "seconds": 1.25,
        "images_per_second": 800.0,
    }


SUMMARY = {
    "status": "completed",
    "best_val_acc": 0.7,
    "final_val_acc": 0.7,
    "test_acc": None,
    "best_epoch": 3,
    "epochs_run": 3,
    "train_seconds": 3.75,
    "images_per_second": 800.0,
    "device": "cpu",
    "versions": {"cnnlab": "0.1.0", "torch": "2.4.0"},
    "diagnosis": [
        {"kind": "still_improving", "message": "val_acc rose to the end", "advice": "train longer"}
    ],
}


def written_run(root: Path, **summary) -> Path:
    """A finished run directory as `cnnlab train` leaves it, 3 epochs, written by hand."""
    run = RunDir.create(root, "digits-cnn")
    config = Config().to_dict()
    config["optim"]["lr"] = 0.05
    run.write_text("config.yaml", yaml.safe_dump(config, sort_keys=False))
    for n in (1, 2, 3):
        run.log_epoch(epoch(n))
    run.write_summary({**SUMMARY, **summary})
    run.close()
    return run.path


def artifact_files(reader: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    files = set()
    for item in reader.list_artifacts(run_id, folder):
        files |= artifact_files(reader, run_id, item.path) if item.is_dir else {item.path}
    return files


def local_files(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()} - {LOCK_NAME}


def check_uploaded(reader: MlflowClient, run, path: Path) -> None:
    """Everything a run directory holds, as MLflow holds it for the MLflow run `run`."""
    config = yaml.safe_load((path / "config.yaml").read_text())
    summary = json.loads((path / "summary.json").read_text())
    rows = [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
    assert run.info.run_name == path.name
    assert run.data.tags[tracking.PATH_TAG] == str(path.resolve())
    assert run.data.params == {k: tracking.config_text(v) for k, v in flatten(config).items()}
    for key in ("val_acc", "train_loss", "lr"):
        history = reader.get_metric_history(run.info.run_id, key)
        assert [(m.step, m.value) for m in history] == [(r["epoch"], r[key]) for r in rows]
    assert run.data.metrics["best_val_acc"] == summary["best_val_acc"]
    assert run.data.tags["cnnlab.status"] == summary["status"]
    assert run.data.tags["cnnlab.versions.cnnlab"] == summary["versions"]["cnnlab"]
    for finding in summary["diagnosis"]:
        assert f"**{finding['kind']}**" in run.data.tags["mlflow.note.content"]
    assert artifact_files(reader, run.info.run_id) == local_files(path)
    copy = Path(reader.download_artifacts(run.info.run_id, "summary.json"))
    assert json.loads(copy.read_text()) == summary


# ---------------------------------------------------------------- the folder store


def test_the_tracker_logs_a_run_as_training_calls_it(tmp_path):
    uri = str(tmp_path / "mlruns")
    path = written_run(tmp_path / "runs")
    tracker = tracking.MlflowTracker(uri)
    tracker.on_start(path, yaml.safe_load((path / "config.yaml").read_text()))
    for n in (1, 2, 3):
        assert tracker.on_epoch(epoch(n)) is None  # never asks the run to stop
    tracker.on_end(path, json.loads((path / "summary.json").read_text()))
    reader, run = only_run(uri)
    assert run.info.status == "FINISHED"
    check_uploaded(reader, run, path)
    assert run.data.params["optim.lr"] == "0.05"
    assert run.data.params["data.root"] == "null" and run.data.params["augment.train"] == "[]"
    # the summary's own throughput is not logged over the per-epoch series of that name
    assert [m.value for m in reader.get_metric_history(run.info.run_id, "images_per_second")] == [
        800.0
    ] * 3
    assert "test_acc" not in run.data.metrics  # None: nothing to log


def test_a_diverged_run_ends_failed_and_non_finite_values_are_left_out(tmp_path):
    uri = str(tmp_path / "mlruns")
    path = written_run(tmp_path / "runs", status="diverged")
    tracker = tracking.MlflowTracker(uri)
    tracker.on_start(path, Config())  # a Config as the trainer passes it
    tracker.on_epoch({**epoch(1), "train_loss": math.nan, "val_loss": math.inf})
    tracker.on_end(path, {**SUMMARY, "status": "diverged", "best_val_acc": math.nan})
    reader, run = only_run(uri)
    assert run.info.status == "FAILED" and run.data.tags["cnnlab.status"] == "diverged"
    assert "train_loss" not in run.data.metrics and "best_val_acc" not in run.data.metrics
    assert run.data.metrics["val_acc"] == epoch(1)["val_acc"]


def test_trials_become_children_of_the_sweeps_run(tmp_path, monkeypatch):
    uri = str(tmp_path / "mlruns")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "lr-sweep")
    parent = tracking.start_parent(uri, "sweep-1", {"trials": 2, "space": {"optim.lr": [0.1]}})
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")  # a trial finds its parent's experiment
    monkeypatch.setenv(tracking.PARENT_ENV, parent)  # as a sweep's worker processes inherit it
    paths = [written_run(tmp_path / "runs") for _ in range(2)]
    for path in paths:
        tracking.MlflowTracker(uri).log_finished(load_run(path))
    tracking.finish_run(uri, parent, "completed")
    reader = client(uri)
    experiment = reader.get_experiment_by_name("lr-sweep")
    runs = reader.search_runs([experiment.experiment_id])
    sweep = next(r for r in runs if r.info.run_id == parent)
    assert sweep.info.status == "FINISHED" and sweep.data.params["trials"] == "2"
    assert sweep.data.params["space.optim.lr"] == "[0.1]"
    children = [r for r in runs if r.info.run_id != parent]
    assert sorted(r.info.run_name for r in children) == sorted(p.name for p in paths)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent}


@pytest.mark.slow
def test_a_run_trained_with_track_mlflow_is_in_the_folder_store(quick, tmp_path):
    from cnnlab.training.experiment import train

    uri = str(tmp_path / "mlruns")
    result = train(quick(f"track.mlflow={uri}"), quiet=True)
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # allowed only while the store opened
    reader, run = only_run(uri)
    assert run.info.status == "FINISHED"
    check_uploaded(reader, run, result.path)
    assert run.data.params["track.mlflow"] == uri
    assert run.data.metrics["steps"] == result.summary["steps"]


def test_runs_export_uploads_runs_trained_without_it_once(tmp_path, capsys):
    uri = f"file://{tmp_path / 'mlruns'}"
    paths = [written_run(tmp_path / "runs"), written_run(tmp_path / "runs", status="interrupted")]
    assert main(["runs", "export", "--root", str(tmp_path / "runs"), "--mlflow", uri]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"2 runs uploaded to {uri} (experiment cnnlab)"
    reader = client(uri)
    experiment = reader.get_experiment_by_name("cnnlab").experiment_id
    runs = {r.info.run_name: r for r in reader.search_runs([experiment])}
    assert runs.keys() == {p.name for p in paths}
    check_uploaded(reader, runs[paths[0].name], paths[0])
    assert runs[paths[1].name].info.status == "KILLED"
    # the epochs at the times the run's own durations give, after its start
    history = reader.get_metric_history(runs[paths[0].name].info.run_id, "val_acc")
    start = runs[paths[0].name].info.start_time
    assert [m.timestamp - start for m in history] == [1250, 2500, 3750]

    assert main(["runs", "export", "--root", str(tmp_path / "runs"), "--mlflow", uri]) == 0
    assert (
        capsys.readouterr().out
        == f"0 runs uploaded to {uri} (experiment cnnlab); 2 already there\n"
    )


@pytest.mark.slow
def test_an_upload_that_broke_off_warns_once_and_training_goes_on(quick, tmp_path, capsys):
    """The store fails after the run started: the run completes, the MLflow run stays
    RUNNING, and `runs export --mlflow` uploads the whole run afterwards."""
    from cnnlab.training.experiment import train

    uri = str(tmp_path / "mlruns")
    real = MlflowClient.log_batch

    def failing(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        if metrics:
            raise mlflow.exceptions.MlflowException("database is locked")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(MlflowClient, "log_batch", failing)
        result = train(quick(f"track.mlflow={uri}"), quiet=True)
    assert result.status == "completed"
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "database is locked" in warnings[0]
    assert "cnnlab runs export --mlflow" in warnings[0]
    _, run = only_run(uri)
    assert run.info.status == "RUNNING"

    root = str(result.path.parent)
    assert main(["runs", "export", "--root", root, "--mlflow", uri]) == 0
    reader = client(uri)
    experiment = reader.get_experiment_by_name("cnnlab").experiment_id
    finished = [r for r in reader.search_runs([experiment]) if r.info.status == "FINISHED"]
    assert len(finished) == 1
    check_uploaded(reader, finished[0], result.path)


# ---------------------------------------------------------------- errors


def test_without_mlflow_one_line_names_the_extra(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    runs = tmp_path / "runs"
    code = main(["train", "train.epochs=1", f"run.dir={runs}", f"track.mlflow={tmp_path / 'm'}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err == (
        f"cnnlab: error: track.mlflow = '{tmp_path / 'm'}': needs MLflow, which is not "
        "installed (pip install cnnlab[mlflow])\n"
    )
    assert not runs.exists()  # refused before the run directory was made
    written_run(runs)
    assert main(["runs", "export", "--root", str(runs), "--mlflow", "mlruns"]) == 2
    assert "--mlflow = 'mlruns': needs MLflow" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_does_not_answer_is_one_line_and_no_run(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    runs = tmp_path / "runs"
    assert main(["train", f"run.dir={runs}", f"track.mlflow={uri}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cnnlab: error: track.mlflow = '{uri}': no MLflow server answers there")
    assert err.count("\n") == 1 and not runs.exists()


@pytest.mark.slow
def test_a_uri_mlflow_cannot_use_is_a_config_error(tmp_path):
    (tmp_path / "file").write_text("")
    for uri, why in (
        ("foo://bar", ".*unsupported URI"),
        (f"sqlite:///{tmp_path / 'file' / 'x.db'}", ""),  # a folder that cannot be made
    ):
        with pytest.raises(ConfigError, match=re.escape(f"track.mlflow = '{uri}': ") + why):
            tracking.MlflowTracker(uri)


def test_export_to_mlflow_refuses_the_table_options(tmp_path, capsys):
    code = main(["runs", "export", "--root", str(tmp_path), "--mlflow", "m", "-o", "x.csv"])
    assert code == 2
    assert "--mlflow uploads runs to MLflow; -o is for a table file" in capsys.readouterr().err


# ---------------------------------------------------------------- a real tracking server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite store and served artifacts; its URL."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(home / "server.log", "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{home / 'mlflow.db'}",
            "--artifacts-destination",
            str(home / "artifacts"),
        ],
        cwd=home,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: its workers end with it
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start:\n{(home / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.mark.slow
def test_a_run_trained_against_a_tracking_server(server, quick, monkeypatch):
    from cnnlab.training.experiment import train

    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "trained")
    result = train(quick(f"track.mlflow={server}"), quiet=True)
    reader, run = only_run(server, "trained")
    assert run.info.status == "FINISHED"
    check_uploaded(reader, run, result.path)


@pytest.mark.slow
def test_runs_export_to_a_tracking_server(server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "exported")
    parent = tracking.start_parent(server, "sweep")
    monkeypatch.setenv(tracking.PARENT_ENV, parent)
    path = written_run(tmp_path / "runs")
    assert main(["runs", "export", "--root", str(tmp_path / "runs"), "--mlflow", server]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("1 run uploaded to")
    tracking.finish_run(server, parent, "completed")
    reader = MlflowClient(server)
    runs = reader.search_runs([reader.get_experiment_by_name("exported").experiment_id])
    child = next(r for r in runs if r.info.run_id != parent)
    assert child.data.tags["mlflow.parentRunId"] == parent
    check_uploaded(reader, child, path)
    copy = Path(reader.download_artifacts(child.info.run_id, "config.yaml"))
    assert copy.read_text() == (path / "config.yaml").read_text()
