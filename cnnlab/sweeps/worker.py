"""A sweep worker: takes trials from the study until its budget is spent, each trial one
ordinary run directory in the sweep directory (or, with repeats, a group folder of R runs).

A trial reports its per-epoch metric to Optuna, and its run stops after the epoch the pruner
judges hopeless (status `pruned`, state PRUNED). A run that diverged, or raised, is a FAIL
trial with its error and diagnosis in the trial's user attributes; a worker goes on with the
next trial. Ctrl-C ends the run with its checkpoint, re-queues its trial and stops the worker.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.config import load_config
from cnnlab.errors import CnnlabError
from cnnlab.sweeps import study as studies
from cnnlab.sweeps.repeats import train_seeds
from cnnlab.sweeps.space import overrides, suggest
from cnnlab.sweeps.spec import SUMMARY_METRICS, Plan, intermediate_metric
from cnnlab.training.experiment import Callback, RunResult, train

INTERRUPTS = 100  # re-queues of a Ctrl-C'd trial: not a failure, never used up


class SpareTrial(Exception):
    """Taken after the budget was spent (see sweeps.study): failed before anything runs."""


class TrialFailed(Exception):
    """The run ended without a score (diverged, no value for the objective)."""


class Reporter(Callback):
    """Collects a run's per-epoch metric; reports it to the trial and stops the run when the
    pruner says so (`prune`: the first run of a trial only, whose epochs are its steps), but
    never after its last epoch (`epochs`): a run that has trained is scored."""

    def __init__(self, trial: optuna.Trial, metric: str, prune: bool, sweep_dir: Path, epochs: int):
        self.trial, self.metric, self.prune, self.sweep_dir = trial, metric, prune, sweep_dir
        self.epochs = epochs
        self.values: list[float] = []

    def on_start(self, run_dir: Path, config: Any) -> None:
        if self.prune:  # the trial's run (or group folder) is known before it trains
            where = run_dir if run_dir.parent == self.sweep_dir else run_dir.parent
            self.trial.set_user_attr(studies.RUN, where.name)

    def on_epoch(self, metrics: dict[str, Any]) -> str | None:
        value = metrics.get(self.metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return None
        self.values.append(float(value))
        if self.prune:
            self.trial.report(float(value), metrics["epoch"])
            if metrics["epoch"] < self.epochs and self.trial.should_prune():
                return "pruned"
        return None


class Objective:
    """study.optimize's function: one trial's runs -> the objective's value."""

    def __init__(self, plan: Plan, sweep_dir: Path, quiet: bool = True):
        self.plan, self.sweep_dir, self.quiet = plan, sweep_dir, quiet
        self.current: int | None = None  # the number of the trial being run

    def __call__(self, trial: optuna.Trial) -> float:
        plan, spec = self.plan, self.plan.spec
        trial.set_user_attr(studies.WORKER, studies.worker_id())
        if not studies.within_budget(trial.study, plan, trial.number):
            trial.set_user_attr(studies.SPARE, True)
            trial.study.stop()
            raise SpareTrial(f"trial {trial.number}: the budget was spent when it was taken")
        self.current = trial.number
        values = suggest(trial, spec.space)
        name = f"trial-{trial.number:04d}"
        own = {"run.dir": str(self.sweep_dir)} | ({"run.name": name} if spec.repeats == 1 else {})
        try:
            config = load_config(base=plan.base, overrides=overrides(values | own))
            metric = intermediate_metric(spec, config.train.early_stopping.monitor)
            watched, epochs = metric or spec.objective.metric, config.train.epochs
            reporters = [
                Reporter(trial, watched, i == 0, self.sweep_dir, epochs)
                for i in range(spec.repeats)
            ]
            results = self._train(config, name, reporters)
        except Exception as e:
            what = str(e) if isinstance(e, CnnlabError) else f"{type(e).__name__}: {e}"
            trial.set_user_attr(studies.ERROR, what.splitlines()[0] if what else type(e).__name__)
            raise
        trial.set_user_attr(studies.STATUS, ", ".join(r.status for r in results))
        return self._value(trial, results, reporters)

    def _train(self, config: Any, name: str, reporters: list[Reporter]) -> list[RunResult]:
        if self.plan.spec.repeats == 1:
            return [train(config, quiet=self.quiet, callbacks=reporters)]
        seeds = [config.train.seed + i for i in range(self.plan.spec.repeats)]
        group = train_seeds(
            config,
            seeds,
            folder=self.sweep_dir / name,
            name=name,
            quiet=self.quiet,
            callbacks=lambda i: [reporters[i]],
            stop_on=("interrupted", "pruned", "diverged"),  # the trial's fate is decided
        )
        return group.results

    def _value(self, trial: optuna.Trial, results: list[RunResult], reporters) -> float:
        statuses = [r.status for r in results]
        if "interrupted" in statuses:
            raise KeyboardInterrupt  # work() re-queues the trial
        if "pruned" in statuses:
            raise optuna.TrialPruned()
        if "diverged" in statuses:
            run = results[statuses.index("diverged")]
            found = run.summary.get("diagnosis") or [{}]
            why = next((f for f in found if f.get("kind") == "diverged"), found[0])
            trial.set_user_attr(studies.ERROR, f"diverged: {why.get('message', run.path.name)}")
            raise TrialFailed(trial.user_attrs[studies.ERROR])
        metric = self.plan.spec.objective.metric
        pairs = zip(results, reporters, strict=False)  # fewer results after a Ctrl-C
        scores = [_score(result, reporter, metric, self.plan) for result, reporter in pairs]
        missing = [r.path.name for r, s in zip(results, scores, strict=True) if s is None]
        if missing:
            trial.set_user_attr(
                studies.ERROR,
                f"objective {metric}: no value in {missing[0]} (a test score needs a dataset "
                "with a test split)"
                if metric == "test_acc"
                else f"objective {metric}: no value",
            )
            raise TrialFailed(trial.user_attrs[studies.ERROR])
        if len(scores) > 1:
            trial.set_user_attr("values", scores)
        return math.fsum(scores) / len(scores)


def _score(result: RunResult, reporter: Reporter, metric: str, plan: Plan) -> float | None:
    """A run's objective: a summary number, or a per-epoch metric's best epoch."""
    if metric in SUMMARY_METRICS:
        value = result.summary.get(metric)
    elif reporter.values:
        pick = min if plan.spec.objective.minimize else max
        value = pick(reporter.values)
    else:
        value = None
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def work(
    study: optuna.Study,
    plan: Plan,
    sweep_dir: Path,
    *,
    timeout_s: float | None = None,
    quiet: bool = True,
    after_trial: Callable[[optuna.Study, FrozenTrial], None] | None = None,
) -> None:
    """Run trials until none are left for this sweep (or `timeout_s` has passed)."""
    if not studies.work_left(study, plan):
        return
    objective = Objective(plan, sweep_dir, quiet)

    def done(study: optuna.Study, trial: FrozenTrial) -> None:
        objective.current = None
        if after_trial is not None:
            after_trial(study, trial)
        if not studies.work_left(study, plan):
            study.stop()

    try:
        study.optimize(objective, timeout=timeout_s, catch=(Exception,), callbacks=[done])
    except KeyboardInterrupt:
        # The trial Ctrl-C stopped is FAIL (or still RUNNING, when it came between Optuna's
        # steps) with no error of its own: run it again when the sweep is resumed.
        stopped = [t for t in study.get_trials(deepcopy=False) if t.number == objective.current]
        for trial in stopped:
            if trial.state in (TrialState.RUNNING, TrialState.FAIL) and (
                studies.ERROR not in trial.user_attrs
            ):
                studies.requeue(study, trial, INTERRUPTS)
        raise


def log_to(stream: Any = sys.stderr) -> None:
    """Optuna's own lines (trial finished, pruned, failed with its traceback) into a worker's
    log (None: nowhere), instead of the terminal."""
    optuna.logging.disable_default_handler()
    handler = logging.StreamHandler(stream) if stream is not None else logging.NullHandler()
    handler.setFormatter(logging.Formatter("[%(levelname)1.1s %(asctime)s] %(message)s"))
    optuna.logging.get_logger("optuna").addHandler(handler)
    optuna.logging.set_verbosity(optuna.logging.INFO)
