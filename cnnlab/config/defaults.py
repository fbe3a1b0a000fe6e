"""Defaults that commands need before (or without) a config: where runs are kept, and the
options of `cnnlab lr-find` and `cnnlab eval`, which are flags of those commands, not config
keys. Free of pydantic, so that `cnnlab runs list` and `--help` start without building the
schema (pydantic and the schema are ~0.25 s of a 0.45 s start on a 2-core EPYC); the schema
takes run.dir's default from here, so each default is still declared once."""

from __future__ import annotations

from dataclasses import dataclass

RUN_DIR = "runs"  # run.dir's default: the folder of run directories


@dataclass(frozen=True)
class LrFindOptions:
    """`cnnlab lr-find`'s sweep."""

    start_lr: float = 1e-7
    end_lr: float = 10.0
    steps: int = 200  # optimizer steps (at least 10: fewer give no usable slope)


@dataclass(frozen=True)
class EvalOptions:
    """`cnnlab eval`'s report."""

    top_k: int = 5  # top-k accuracy besides top-1
    worst: int = 16  # highest-loss images shown


LR_FIND, EVAL = LrFindOptions(), EvalOptions()  # the defaults of those commands' flags
