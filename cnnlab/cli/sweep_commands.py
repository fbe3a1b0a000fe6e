"""cnnlab sweep SPEC.yaml | sweep show DIR | sweep worker --storage URL --study NAME."""

from __future__ import annotations

import argparse
import sys

from cnnlab.cli.codes import EXIT_USER_ERROR
from cnnlab.errors import ConfigError

ACTIONS = ("show", "worker")
RUN_FLAGS = ("trials", "timeout", "workers", "storage", "name")


def cmd_sweep(args: argparse.Namespace) -> int:
    if args.target == "show":
        return _show(args)
    if args.target == "worker":
        return _worker(args)
    if args.dir is not None:
        raise ConfigError(
            f"cnnlab sweep {args.target} {args.dir}: one spec file (or sweep directory) at a time"
        )
    if args.study is not None:
        raise ConfigError("--study names the study a worker joins: cnnlab sweep worker --study")
    from cnnlab.sweeps.launch import run_sweep
    from cnnlab.sweeps.show import trials

    study, _, _ = run_sweep(args.target, **{k: getattr(args, k) for k in RUN_FLAGS})
    done = [t for t in trials(study) if t.state.name in ("COMPLETE", "PRUNED")]
    if not done and trials(study):
        print(
            "cnnlab: error: no trial of the sweep completed (see the errors above)", file=sys.stderr
        )
        return EXIT_USER_ERROR
    return 0


def _show(args: argparse.Namespace) -> int:
    if args.dir is None:
        raise ConfigError("cnnlab sweep show DIR: give the sweep directory")
    from rich.table import Table
    from rich.text import Text

    from cnnlab.sweeps import show
    from cnnlab.track.console import output_console

    study, plan, sweep_dir = show.open_sweep(args.dir)
    table = show.sorted_frame(study, plan)
    console = output_console()
    grid = Table(box=None, pad_edge=False, title=f"sweep {plan.spec.name}", title_justify="left")
    columns = [c for c in table.columns if c not in ("retry_of",)]
    for column in columns:
        grid.add_column(str(column), overflow="fold")
    for _, row in table.iterrows():
        grid.add_row(*(Text(_cell(row[c])) for c in columns))
    console.print(grid)
    show.write_tables(study, plan, sweep_dir)
    plots = show.write_plots(study, sweep_dir)
    for line in show.summary_lines(study, plan):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    if plots:
        names = ", ".join(p.name for p in plots)
        console.print(f"plots: {names} in {sweep_dir}", highlight=False, markup=False)
    console.print(f"best config: {sweep_dir / 'best.yaml'}", highlight=False, markup=False)
    return 0


def _cell(value) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _worker(args: argparse.Namespace) -> int:
    if args.storage is None or args.study is None:
        raise ConfigError("cnnlab sweep worker: give --storage URL and --study NAME")
    from cnnlab.sweeps.launch import run_worker

    run_worker(
        args.storage,
        args.study,
        args.worker_dir,
        threads=args.threads,
        index=args.index,
        timeout_s=args.timeout_s,
    )
    return 0


def add_parser(commands, debug: argparse.ArgumentParser) -> None:
    sweep = commands.add_parser(
        "sweep",
        parents=[debug],
        help="tune any config keys with Optuna: trials as runs in one sweep directory",
        usage="cnnlab sweep SPEC.yaml|SWEEP_DIR [--trials N] [--timeout MIN] [--workers K] "
        "[--storage URL] [--name NAME]\n       cnnlab sweep show SWEEP_DIR\n"
        "       cnnlab sweep worker --storage URL --study NAME [--dir DIR]",
    )
    sweep.add_argument(
        "target",
        metavar="SPEC.yaml|SWEEP_DIR|show|worker",
        help="a sweep spec to run, a sweep directory to resume, or an action",
    )
    sweep.add_argument("dir", nargs="?", metavar="SWEEP_DIR", help="show: the sweep directory")
    sweep.add_argument("--trials", type=int, metavar="N", help="the study's trial budget")
    sweep.add_argument(
        "--timeout", type=float, metavar="MIN", help="start no trial after MIN minutes"
    )
    sweep.add_argument(
        "--workers", type=int, metavar="K", help="worker processes on this machine (default 1)"
    )
    sweep.add_argument(
        "--storage",
        metavar="URL",
        help="postgresql://user@host/db or sqlite:///file.db (default: a journal file in "
        "the sweep directory); worker: the study's storage, or its journal file",
    )
    sweep.add_argument("--name", help="the study's name (default: the spec file's name)")
    sweep.add_argument("--study", metavar="NAME", help="worker: the study to join")
    sweep.add_argument(
        "--dir", dest="worker_dir", metavar="DIR", help="worker: where its trials' runs go"
    )
    # Set by the process that starts workers on one machine.
    sweep.add_argument("--threads", type=int, help=argparse.SUPPRESS)
    sweep.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    sweep.add_argument("--timeout-s", type=float, help=argparse.SUPPRESS)
    sweep.set_defaults(func=cmd_sweep)
