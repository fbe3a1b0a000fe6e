"""Data-parallel runs as a user starts them: real torchrun processes on the CPU (gloo), tiny
runs (digits, narrow nets, one OpenMP thread per process) so that CI's two cores manage."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cnnlab.checkpoint import load_state, load_weights
from cnnlab.cli import main
from cnnlab.config import load_config
from cnnlab.training import experiment
from cnnlab.training.resume import resume

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="torchrun runs on Linux here"),
]

ENV = os.environ | {"OMP_NUM_THREADS": "1"}
LIMIT_S = 300  # no test may hang: a stuck job fails the test instead
CPU = "train.device=cpu"  # gloo, also where a GPU is visible
MLP = ["model.name=mlp", "model.width=8", "train.epochs=2", CPU]  # no BatchNorm, no dropout


def cnnlab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cnnlab", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env or ENV, timeout=LIMIT_S)


def only_run(root: Path) -> Path:
    (run,) = list(root.iterdir())
    return run


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_state(run / "checkpoints" / "last.ckpt")["model"]


def assert_weights_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key].float(), b[key].float(), atol=atol, rtol=0, msg=key)


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def one_process(root: Path, *overrides: str) -> Path:
    config = load_config(overrides=[*overrides, f"run.dir={root}"])
    return experiment.train(config, quiet=True).path


@pytest.fixture(scope="module")
def single_mlp(tmp_path_factory) -> Path:
    return one_process(tmp_path_factory.mktemp("single"), *MLP)


@pytest.fixture(scope="module")
def two_mlp(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("two")
    done = cnnlab("train", "--nproc", "2", *MLP, f"run.dir={root}")
    return only_run(root), done


def test_two_processes_train_the_weights_of_one(single_mlp, two_mlp):
    run, done = two_mlp
    assert done.returncode == 0, done.stderr
    assert "2 processes: batch 64 = 2 × 32 per process" in done.stdout
    assert done.stdout.count("run summary") == 1  # rank 0 alone shows the run
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_run"] == 2
    # the same global batches, gradients averaged over the ranks: float-rounding apart
    assert_weights_close(weights(run), weights(single_mlp), atol=1e-6)
    for ours, theirs in zip(metrics(run), metrics(single_mlp), strict=True):
        assert ours["step"] == theirs["step"] == 22 * ours["epoch"]
        for key in ("train_loss", "train_acc", "val_loss", "val_acc"):
            assert ours[key] == pytest.approx(theirs[key], abs=1e-6), key


def test_a_run_of_two_processes_loads_like_any_other(two_mlp, tmp_path):
    run, _ = two_mlp
    best = load_weights(run / "checkpoints" / "best.safetensors")
    assert not any(key.startswith("module.") for key in best)
    assert main(["eval", str(run)]) == 0
    assert (run / "eval-val.json").is_file()


def test_sync_bn_on_two_processes_trains_the_batchnorm_net_of_one(tmp_path):
    net = ["model.width=4", "train.epochs=1", CPU]
    single = one_process(tmp_path / "one", *net)
    done = cnnlab(
        "train", "--nproc", "2", *net, "train.sync_bn=true", f"run.dir={tmp_path / 'two'}"
    )
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path / "two")
    assert "SyncBatchNorm" in (run / "log.txt").read_text()
    # BatchNorm statistics over the whole global batch, running statistics included
    assert_weights_close(weights(run), weights(single), atol=1e-5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_meet_at_a_c10d_rendezvous(tmp_path):
    endpoint = f"127.0.0.1:{free_port()}"
    node = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=2",
        "--nproc-per-node=1",
        "--rdzv-backend=c10d",
        f"--rdzv-endpoint={endpoint}",
        "--rdzv-id=cnnlab-test",
        "-m",
        "cnnlab",
        "train",
        "model.name=mlp",
        "model.width=8",
        "train.epochs=1",
        CPU,
        f"run.dir={tmp_path}",
    ]
    nodes = [subprocess.Popen(node, env=ENV, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [n.communicate(timeout=LIMIT_S)[0] for n in nodes]
    assert [n.returncode for n in nodes] == [0, 0]
    assert sum("run summary" in out for out in outs) == 1  # one console: global rank 0's
    summary = json.loads((only_run(tmp_path) / "summary.json").read_text())
    assert summary["status"] == "completed"


def test_a_run_stopped_on_two_processes_resumes_on_one(single_mlp, tmp_path):
    done = cnnlab("train", "--nproc", "2", *MLP, "train.max_minutes=0.00001", f"run.dir={tmp_path}")
    assert done.returncode == 0, done.stderr
    run = only_run(tmp_path)
    saved = load_state(run / "checkpoints" / "last.ckpt")
    assert saved["fit"]["status"] == "time_limit" and saved["fit"]["step"] == 10  # agreed at a log
    assert saved["train_loader"]["position"] == 10 and len(saved["rank_rng"]) == 2
    result = resume(run, ["train.max_minutes=null"], quiet=True)
    assert result.status == "completed"
    assert_weights_close(weights(run), weights(single_mlp), atol=1e-6)
    assert [m["step"] for m in metrics(run)] == [22, 44]


def test_a_run_stopped_on_one_process_resumes_on_two(single_mlp, tmp_path):
    config = load_config(overrides=[*MLP, "train.max_minutes=0.00001", f"run.dir={tmp_path}"])
    run = experiment.train(config, quiet=True).path
    done = cnnlab("train", "--nproc", "2", "--resume", str(run), "train.max_minutes=null")
    assert done.returncode == 0, done.stderr
    assert "resuming after epoch 0, step 1" in done.stdout
    assert_weights_close(weights(run), weights(single_mlp), atol=1e-6)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 44


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int:
    """The pid of a worker of `cnnlab train --nproc`, by the RANK in its environment."""
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rpartition(")")[2].split()[1])
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # not a process, or one that ended meanwhile
        if ppid == launcher.pid and f"RANK={rank}".encode() in environ:
            return int(proc.name)
    raise AssertionError(f"no worker with RANK={rank} under pid {launcher.pid}")


def _start_long_run(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`cnnlab train --nproc 2` of many epochs, once its first epoch is logged."""
    launcher = subprocess.Popen(
        [sys.executable, "-m", "cnnlab", "train", "--nproc", "2", "model.name=mlp"]
        + ["model.width=8", "train.epochs=500", CPU, f"run.dir={tmp_path}"],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + LIMIT_S
    while time.monotonic() < deadline:
        logged = list(tmp_path.glob("*/metrics.jsonl"))
        if logged and logged[0].read_text().strip():
            return launcher, logged[0].parent
        assert launcher.poll() is None, launcher.communicate()
        time.sleep(0.2)
    launcher.kill()
    raise AssertionError("no epoch logged in time")


def test_a_killed_rank_stops_the_job_with_one_line_and_a_resumable_checkpoint(tmp_path):
    launcher, run = _start_long_run(tmp_path)
    os.kill(_rank_pid(launcher, 1), signal.SIGKILL)
    out, err = launcher.communicate(timeout=LIMIT_S)
    assert launcher.returncode == 128 + signal.SIGKILL
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "rank 1" in lines[0] and "SIGKILL" in lines[0], err
    saved = load_state(run / "checkpoints" / "last.ckpt")  # intact: written atomically
    done = saved["fit"]["epoch"]
    assert resume(run, [f"train.epochs={done + 1}"], quiet=True).status == "completed"


def test_ctrl_c_stops_every_rank_at_one_step_and_resumes(tmp_path):
    launcher, run = _start_long_run(tmp_path)
    launcher.send_signal(signal.SIGINT)
    out, err = launcher.communicate(timeout=LIMIT_S)
    assert launcher.returncode == 130, err
    assert "resume with: cnnlab train --resume" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    saved = load_state(run / "checkpoints" / "last.ckpt")
    more = [f"train.epochs={saved['fit']['epoch'] + 1}"]
    assert resume(run, more, quiet=True).status == "completed"


def test_a_rendezvous_that_never_completes_times_out_in_one_line(tmp_path):
    env = ENV | {
        "WORLD_SIZE": "2",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "CNNLAB_DIST_TIMEOUT": "2",
    }
    done = cnnlab("train", CPU, f"run.dir={tmp_path}", env=env)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not all meet at 127.0.0.1" in lines[0]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
