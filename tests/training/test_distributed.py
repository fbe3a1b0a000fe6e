"""training.distributed and its helpers, without starting torchrun: one process is a World of
one, the config and the launcher refuse what cannot work in one line, the launcher reports a
failed job in one line, and CPU SyncBatchNorm equals BatchNorm over the whole batch."""

from __future__ import annotations

import signal
from types import SimpleNamespace

import pytest
import torch

from cnnlab.cli import main
from cnnlab.config import load_config
from cnnlab.errors import ConfigError
from cnnlab.training import distributed, launch
from cnnlab.training.distributed import SINGLE, World
from cnnlab.training.stop import Stopper
from cnnlab.training.sync_bn import CpuSyncBatchNorm, convert


def test_one_process_is_a_world_of_one_without_collectives(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.from_env() is SINGLE and SINGLE.is_main
    with distributed.joined() as world:
        assert world is SINGLE
    net = torch.nn.Linear(2, 2)
    assert SINGLE.wrap(net, torch.device("cpu")) is net
    assert SINGLE.sum(torch.tensor(2.5), 3) == [2.5, 3.0]
    assert SINGLE.from_main(lambda: "x") == "x" and SINGLE.same(7) == 7
    assert SINGLE.gather(1) is None and SINGLE.all_gather(1) == [1]


def test_torchruns_environment_names_the_rank(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    world = distributed.from_env()
    assert (world.rank, world.size, world.local_rank, world.is_main) == (3, 4, 1, False)


def test_a_bad_timeout_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ConfigError, match="CNNLAB_DIST_TIMEOUT = 'soon'"):
        distributed.timeout_s()


def test_several_processes_want_their_own_gpu_each():
    world = World(rank=1, size=2, local_rank=1)
    assert world.device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: cuda:LOCAL_RANK is checked on GPU machines")
    with pytest.raises(ConfigError, match="each takes its own GPU"):
        world.device("cuda:0")


def test_the_global_batch_must_divide_by_the_processes():
    train = load_config(overrides=["train.batch_size=64"]).train
    assert train.rank_batch(4) == 16
    with pytest.raises(
        ConfigError, match=r"train.batch_size = 64: .* multiple of 3 \(e.g. 63 or 66\)"
    ):
        train.rank_batch(3)


def test_nproc_refuses_an_uneven_batch_before_starting_anything(capsys, tmp_path):
    code = main(["train", "--nproc", "3", f"run.dir={tmp_path}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "train.batch_size = 64" in err[0]
    assert not any(tmp_path.iterdir())


def test_nproc_is_not_for_use_under_torchrun(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["train", "--nproc", "2", f"run.dir={tmp_path}"]) == 2
    assert "under torchrun, leave it out" in capsys.readouterr().err


def test_transfer_unfreezing_is_refused_on_several_processes():
    from cnnlab.training.experiment import _check

    config = load_config(
        overrides=["model.backbone=x.safetensors", "transfer.unfreeze_after=1", "train.epochs=2"]
    )
    with pytest.raises(ConfigError, match="transfer.unfreeze_after = 1: not with several"):
        _check(config, World(rank=0, size=2))


class _Ranks:
    """all_gather's answer of a world of several ranks, without processes."""

    size = 3

    def __init__(self, asked):
        self.asked = asked

    def all_gather(self, value):
        return self.asked


@pytest.mark.parametrize(
    ("asked", "agreed"),
    [
        ([None, None, None], None),
        ([None, "time_limit", None], "time_limit"),
        (["pruned", None, "interrupted"], "interrupted"),  # Ctrl-C beats a pruner
        (["pruned", "time_limit", None], "time_limit"),
    ],
)
def test_ranks_agree_on_the_most_urgent_stop(asked, agreed):
    stopper = Stopper()
    assert stopper.agree(_Ranks(asked)) == agreed
    assert stopper.reason() == agreed  # and keep to it


def _failure(rank, exitcode, timestamp=0):
    return SimpleNamespace(
        local_rank=rank,
        pid=100 + rank,
        exitcode=exitcode,
        timestamp=timestamp,
        signal_name=lambda: signal.Signals(-exitcode).name,
    )


def test_the_launcher_names_the_rank_that_failed_first(capsys, tmp_path):
    # rank 1 killed; rank 0 then stopped by the agent's SIGTERM, in the same second
    failures = {0: _failure(0, -signal.SIGTERM), 1: _failure(1, -signal.SIGKILL)}
    assert launch._report(failures, tmp_path, (2, 3, 130)) == 128 + signal.SIGKILL
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rank 1 (pid 101) was killed by SIGKILL" in err[0]


def test_the_launcher_quotes_a_failed_ranks_last_line(capsys, tmp_path):
    log = tmp_path / "run_x" / "attempt_0" / "1" / "stderr.log"
    log.parent.mkdir(parents=True)
    log.write_text("Traceback ...\nRuntimeError: out of memory\n\n")
    assert launch._report({1: _failure(1, 1)}, tmp_path, (2, 3, 130)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rank 1 (pid 101) exited with code 1 (RuntimeError: out of" in err[0]


def test_rank_0_that_said_why_is_passed_on_silently(capsys, tmp_path):
    assert launch._report({0: _failure(0, 3), 1: _failure(1, 3)}, tmp_path, (2, 3, 130)) == 3
    assert capsys.readouterr().err == ""


def test_cpu_sync_batchnorm_is_batchnorm_on_one_process():
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3))
    synced = convert(
        torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3)), torch.device("cpu")
    )
    synced.load_state_dict(plain.state_dict())
    assert isinstance(synced[1], CpuSyncBatchNorm)
    assert plain.state_dict().keys() == synced.state_dict().keys()
    x = torch.randn(8, 2, 4, 4)
    for mode in (True, False):
        plain.train(mode), synced.train(mode)
        torch.testing.assert_close(synced(x), plain(x))
    torch.testing.assert_close(synced[1].running_var, plain[1].running_var)


def _sync_bn_rank(rank: int, path: str, out: str) -> None:
    """One rank of two: its half of a batch through CpuSyncBatchNorm; saves output, gradients
    and running statistics."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    torch.manual_seed(0)
    x = torch.randn(8, 3, 4, 4) * 3 + 1
    bn = CpuSyncBatchNorm(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-1, 1)
    half = x[rank * 4 : rank * 4 + 4].requires_grad_()
    y = bn(half)
    (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
    torch.save(
        {"y": y.detach(), "dx": half.grad, "dw": bn.weight.grad, "rm": bn.running_mean},
        f"{out}.{rank}",
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_cpu_sync_batchnorm_on_two_processes_is_batchnorm_over_the_whole_batch(tmp_path):
    import torch.multiprocessing as mp

    out = str(tmp_path / "rank")
    mp.spawn(_sync_bn_rank, args=(str(tmp_path / "store"), out), nprocs=2)
    ranks = [torch.load(f"{out}.{r}") for r in range(2)]

    torch.manual_seed(0)
    x = (torch.randn(8, 3, 4, 4) * 3 + 1).requires_grad_()
    bn = torch.nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-1, 1)
    y = bn(x)
    weights = torch.cat([torch.arange(y[:4].numel()).view_as(y[:4]).sin()] * 2)
    (y * weights).sum().backward()
    torch.testing.assert_close(torch.cat([r["y"] for r in ranks]), y.detach())
    torch.testing.assert_close(torch.cat([r["dx"] for r in ranks]), x.grad)
    # each rank's weight gradient is its share; DistributedDataParallel adds (averages) them
    torch.testing.assert_close(ranks[0]["dw"] + ranks[1]["dw"], bn.weight.grad)
    torch.testing.assert_close(ranks[0]["rm"], bn.running_mean)
