"""`cnnlab train --nproc N`: torchrun's elastic agent for one machine, in this process, starting
N workers that run `python -m cnnlab <the same command, without --nproc>`.

It is `torchrun --standalone --nproc-per-node N -m cnnlab ...` with what a user of one machine
wants instead of torchrun's report: rank 0 on the terminal (its live progress bar included);
the other ranks' output in a log folder, since they print nothing but errors; one line naming
the rank when a worker fails, and an exit code that says why.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
import uuid
from pathlib import Path

from cnnlab.errors import ConfigError

EXIT_SIGNALLED = 128  # + the signal's number, as a shell reports a killed command


def launch(nproc: int, argv: list[str], own_exit_codes: tuple[int, ...]) -> int:
    """Run `python -m cnnlab *argv` on `nproc` local processes; their exit code. A code in
    own_exit_codes from rank 0 is passed on silently: rank 0 has said why on the terminal."""
    if "WORLD_SIZE" in os.environ:
        raise ConfigError("--nproc starts torchrun itself; under torchrun, leave it out")
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs, SignalException, Std
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # The agent logs each start, signal and failure; this launcher reports them itself. (Each
    # of torch's modules sets its own logger's level, so the parent's would not do.)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    # One OpenMP pool per worker sized to its share of the cores: N pools of every core each
    # would fight over them (torchrun sets 1 for the same reason).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    log_dir = Path(tempfile.mkdtemp(prefix="cnnlab-ranks-"))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"cnnlab-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",  # a free port, as torchrun --standalone
        max_restarts=0,
        logs_specs=DefaultLogsSpecs(
            log_dir=str(log_dir), redirects={r: Std.ALL for r in range(1, nproc)}
        ),
    )
    try:
        elastic_launch(config, sys.executable)("-m", "cnnlab", *argv)
    except ChildFailedError as e:
        return _report(e.failures, log_dir, own_exit_codes)
    except SignalException as e:  # Ctrl-C: the agent passed it on; the workers checkpointed
        return EXIT_SIGNALLED + int(e.sigval)  # SIGINT: 130, as cnnlab's own Ctrl-C exit
    _remove(log_dir)
    return 0


def _report(failures: dict, log_dir: Path, own_exit_codes: tuple[int, ...]) -> int:
    """One line for a failed job: the first rank that failed and how; its exit code."""
    main = failures.get(0)
    if main is not None and main.exitcode in own_exit_codes:
        return main.exitcode
    # The agent stops the others with SIGTERM: the first failure is among the rest.
    rank = min(failures, key=lambda r: (_stopped(failures[r]), failures[r].timestamp, r))
    failure = failures[rank]
    if failure.exitcode < 0:
        how = f"was killed by {failure.signal_name()}"
        code = EXIT_SIGNALLED - failure.exitcode
    else:
        how = f"exited with code {failure.exitcode}"
        code = failure.exitcode
    said = _last_line(log_dir, failure.local_rank)
    print(
        f"cnnlab: error: rank {rank} (pid {failure.pid}) {how}{f' ({said})' if said else ''};"
        " the other ranks were stopped (a run directory's checkpoints/last.ckpt continues the"
        f" run with --resume RUN_DIR); the output of ranks 1 and up: {log_dir}",
        file=sys.stderr,
    )
    return code


def _stopped(failure) -> bool:
    """Whether a worker ended by the agent's SIGTERM, i.e. because another one failed."""
    return failure.exitcode == -signal.SIGTERM


def _last_line(log_dir: Path, local_rank: int) -> str:
    """The last line a redirected rank wrote to stderr ('' for rank 0, which was not)."""
    for path in log_dir.glob(f"*/attempt_*/{local_rank}/stderr.log"):
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line]
        return lines[-1] if lines else ""
    return ""


def _remove(log_dir: Path) -> None:
    import shutil

    shutil.rmtree(log_dir, ignore_errors=True)
