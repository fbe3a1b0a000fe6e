"""Data-parallel training on several processes (torchrun, `cnnlab train --nproc N`): who this
process is, the process group, DistributedDataParallel and the few collectives the trainer
needs. The one home of everything that knows there are other processes.

torchrun (or its elastic agent behind --nproc) starts one process per device and tells each its
RANK, LOCAL_RANK and WORLD_SIZE in the environment. A process without them, or with a world of
one, is the ordinary single-process run: World.size == 1, no process group, and every collective
below returns its input untouched, so one process computes exactly what it always did.

Every rank takes the same decisions because they come from the same numbers: losses and scores
summed over the ranks, the epoch's metrics row broadcast from rank 0, one agreed stop status.
Only rank 0 reads and writes the run directory; what other ranks need from it (a checkpoint to
roll back to, the best weights for the test score) is broadcast, so nodes need no shared disk.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
from torch import nn

from cnnlab.errors import CnnlabError, ConfigError
from cnnlab.training.device import resolve_device

T = TypeVar("T")

# Seconds a process waits for the others: to form the group (a node that never starts, a wrong
# MASTER_ADDR) and in any later collective (a rank that died without the agent noticing). The
# environment variable overrides it; it is not a config key, since it belongs to the launch, not
# to the run (a resumed run may be launched differently).
TIMEOUT_ENV = "CNNLAB_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
PEER_GRACE_S = 3.0  # torchrun's agent polls its workers every 0.1 s


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes. size 1: a run of its own."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the rank among this machine's processes: its GPU
    # The gloo group for the collectives of Python objects and flags: CPU-side, so that they
    # never wait for the GPU (NCCL would need device tensors and a host sync for each).
    control: Any = None

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run directory and the console."""
        return self.rank == 0

    def device(self, name: str) -> torch.device:
        """train.device for this rank: cuda -> cuda:LOCAL_RANK, one GPU per process."""
        device = resolve_device(name)
        if self.size == 1 or device.type == "cpu":
            return device
        if device.type != "cuda":
            raise ConfigError(
                f"train.device = {name!r}: several processes train on cuda or cpu only"
            )
        if device.index is not None:
            raise ConfigError(
                f"train.device = {name!r}: with several processes each takes its own GPU "
                "(cuda:LOCAL_RANK); use train.device=cuda or auto"
            )
        if self.local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {self.local_rank}: only {torch.cuda.device_count()} CUDA device(s)"
                " visible on this node; start at most that many processes per node"
            )
        torch.cuda.set_device(self.local_rank)  # NCCL's communicator binds to the current one
        return torch.device("cuda", self.local_rank)

    def wrap(self, net: nn.Module, device: torch.device) -> nn.Module:
        """`net` in DistributedDataParallel (it averages the gradients over the ranks in
        backward and starts every rank from rank 0's weights); `net` itself on one process."""
        if self.size == 1:
            return net
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=ids)

    def sum(self, *values: torch.Tensor | float) -> list[float]:
        """Each value summed over the ranks, as Python floats. float64 on the wire: counts of
        images stay exact up to 2**53."""
        device = next((v.device for v in values if torch.is_tensor(v)), torch.device("cpu"))
        stacked = torch.stack(
            [torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values]
        )
        if self.size > 1:
            import torch.distributed as dist

            dist.all_reduce(stacked)
        return stacked.tolist()

    def from_main(self, make: Callable[[], T]) -> T:
        """make() run on rank 0 and its result broadcast to every rank (pickled over the
        control group). A CnnlabError it raises is raised on every rank, so no rank waits for a
        value that never comes and each exits with the same one-line message."""
        if self.size == 1:
            return make()
        import torch.distributed as dist

        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = (True, make())
            except CnnlabError as e:
                box[0] = (False, e)
        dist.broadcast_object_list(box, src=0, group=self.control)
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def same(self, value: T) -> T:
        """Rank 0's `value` on every rank (an epoch's metrics row, whose timings differ)."""
        return value if self.size == 1 else self.from_main(lambda: value)

    def gather(self, value: T) -> list[T] | None:
        """Every rank's `value`, in rank order, on rank 0; None elsewhere and on one process."""
        if self.size == 1:
            return None
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.size if self.is_main else None
        dist.gather_object(value, out, dst=0, group=self.control)
        return out

    def all_gather(self, value: T) -> list[T]:
        """Every rank's `value`, in rank order, on every rank."""
        if self.size == 1:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.size
        dist.all_gather_object(out, value, group=self.control)
        return out

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier(group=self.control)

    def sync_buffers(self, *modules: nn.Module) -> None:
        """Rank 0's buffers (BatchNorm's running statistics, an EMA's copies of them) on every
        rank. Each rank updates its own from its own images; DistributedDataParallel sends
        rank 0's at the next training forward anyway, and evaluation needs them now, so that
        every rank evaluates its share of the images with the same model."""
        if self.size == 1:
            return
        import torch.distributed as dist

        for module in modules:
            for buffer in module.buffers():
                dist.broadcast(buffer, src=0)


SINGLE = World()


def from_env() -> World:
    """The World that torchrun's environment describes (RANK, WORLD_SIZE, LOCAL_RANK), without
    a process group yet; SINGLE outside torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return SINGLE
    return World(
        rank=int(os.environ["RANK"]),
        size=size,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    if raw is None:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise ConfigError(f"{TIMEOUT_ENV} = {raw!r}: expected a number of seconds > 0")
    return seconds


@contextmanager
def joined() -> Iterator[World]:
    """This process's World for the duration of a run: under torchrun, the process group is
    formed on entry (gloo for CPU tensors, NCCL for CUDA ones when a GPU is visible) and taken
    down on exit; a group the caller formed already is used and left alone."""
    world = from_env()
    if world.size == 1:
        yield world
        return
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        _init_group(world)
    control = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    try:
        yield World(world.rank, world.size, world.local_rank, control)
    except Exception as e:
        if not isinstance(e, CnnlabError):
            # The death of another process reaches this one as an error in a collective, a
            # moment before torchrun's agent stops every process: wait for that stop, so that
            # the agent's report names the process that failed first, not this one.
            time.sleep(PEER_GRACE_S)
        raise
    finally:
        if owned:
            dist.destroy_process_group()


def _init_group(world: World) -> None:
    import torch.distributed as dist

    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    seconds = timeout_s()
    try:
        dist.init_process_group(backend, timeout=timedelta(seconds=seconds))
    except (dist.DistError, TimeoutError) as e:
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"rank {world.rank} of WORLD_SIZE={world.size}: the processes did not all meet at"
            f" {where} within {seconds:g} s ({first}); start every process (every node, with"
            f" the same --rdzv-endpoint), or wait longer with {TIMEOUT_ENV}=SECONDS"
        ) from None
