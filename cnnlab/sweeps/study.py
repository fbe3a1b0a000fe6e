"""Where a sweep's Optuna study lives, and how its trials are handed out to workers.

Storage: JournalStorage on a file in the sweep directory by default, the storage Optuna
recommends for several processes on one machine; an RDB URL (postgresql://, sqlite:///) for
workers on several machines, with a heartbeat: a trial whose worker stopped beating is failed
and re-queued by Optuna's RetryHeartbeatStaleTrialCallback. The journal has no heartbeat: the
process that started the workers re-queues a dead one's trial (requeue(), same attributes).

The trial budget is shared by every worker through the storage alone:
- a grid enqueues each of its points once (enqueue_grid), and workers only take waiting trials;
- any other sampler: a trial that is neither enqueued nor a retry ("fresh") runs only if fewer
  than `trials` fresh trials were numbered before it. Numbers are handed out by the storage in
  one order for all workers, so a race at the end of the budget cannot run one trial too many:
  the extra trial is marked `spare` and failed at once, before anything trains.
Retries do not count: they stand in for their failed original.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import socket
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from cnnlab.errors import ConfigError
from cnnlab.sweeps.space import grid_points
from cnnlab.sweeps.spec import Plan, Spec
from cnnlab.track.sweepdir import JOURNAL

PLAN_ATTR = "cnnlab.plan"  # the study's user attr holding Plan.stored()
# Trial user attrs a worker sets: which process runs it, its run (directory or group folder),
# the run's status, the error of a failed trial, and `spare` (see the module's docstring).
WORKER, RUN, STATUS, ERROR, SPARE = "worker", "run", "status", "error", "spare"
# What may change when a sweep is run again on its study; anything else is another sweep.
MAY_CHANGE = ("trials", "timeout", "workers", "storage", "dir", "retries", "heartbeat")
GRACE_BEATS = 3  # heartbeats missed before a trial counts as stale
UNCLAIMED_S = 60.0  # a running trial with no worker named this long after it began is orphaned


def storage_url(spec: Spec, sweep_dir: Path) -> str:
    return spec.storage or str(sweep_dir / JOURNAL)


def shown(url: str) -> str:
    """A storage URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.split(':')[0]}:***@{tail}"


def open_storage(url: str, heartbeat: int | None = None, retries: int = 0):
    """An RDB URL (anything with ://) or a journal file path. `heartbeat` (seconds): RDB
    workers beat while a trial runs; a trial silent for GRACE_BEATS beats is re-queued."""
    if "://" not in url:
        path = Path(url)
        if path.is_dir() or not path.parent.is_dir():
            raise ConfigError(f"--storage {url}: expected a journal file in an existing folder")
        backend = optuna.storages.journal.JournalFileBackend(str(path), lock_obj=FlockLock(path))
        return optuna.storages.journal.JournalStorage(backend)
    beats: dict[str, Any] = {}
    if heartbeat is not None:
        beats = {
            "heartbeat_interval": heartbeat,
            "grace_period": GRACE_BEATS * heartbeat,
            "heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=retries
            ),
        }
    try:
        with settled():
            return optuna.storages.RDBStorage(_driver(url), **beats)
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"--storage {shown(url)}: needs the {e.name} module (pip install 'cnnlab[sweep]')"
        ) from None
    except Exception as e:  # noqa: BLE001  (SQLAlchemy's and the driver's errors: one line)
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise ConfigError(f"--storage {shown(url)}: cannot open it ({reason})") from None


@contextmanager
def settled() -> Iterator[None]:
    """Without Optuna's ExperimentalWarning: its heartbeat, retry callback and stale-trial
    check have carried it since Optuna 2.8 (2021) and are what an RDB sweep relies on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def _driver(url: str) -> str:
    """postgresql://... through psycopg (v3, the sweep extra's driver): SQLAlchemy's default
    for a bare postgresql:// is psycopg2."""
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgresql", "postgres") and importlib.util.find_spec("psycopg2") is None:
        return f"postgresql+psycopg{sep}{rest}"
    return url


class FlockLock:
    """The journal file's lock as an fcntl lock, which the kernel releases when its process
    dies: Optuna's own file locks are files that a SIGKILLed worker leaves behind, stalling
    every other worker for their 30 s grace period. Local file systems only (use an RDB
    storage across machines)."""

    def __init__(self, journal: Path):
        self._path = f"{journal}.flock"
        self._fd: int | None = None

    def acquire(self) -> bool:
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@contextmanager
def locked(path: Path) -> Iterator[None]:
    lock = FlockLock(path)
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_sampler(spec: Spec, worker: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler; worker k > 0 offsets a seed by k, so that seeded workers do not
    all draw the same points (QMC keeps it: its sequence is indexed by trial)."""
    options = dict(spec.sampler)
    name = options.pop("name")
    if name == "grid":  # every point is an enqueued trial: the sampler never draws one
        return optuna.samplers.RandomSampler()
    if options.get("seed") is not None and name != "qmc":
        options["seed"] += worker
    kind = {
        "random": optuna.samplers.RandomSampler,
        "tpe": optuna.samplers.TPESampler,
        "qmc": optuna.samplers.QMCSampler,
    }[name]
    return kind(**options)


def build_pruner(spec: Spec) -> optuna.pruners.BasePruner:
    options = dict(spec.pruner)
    kind = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }[options.pop("name")]
    return kind(**options)


def create(plan: Plan, storage, worker: int = 0) -> optuna.Study:
    """The plan's study, new or (same name) resumed; a resumed study must be the same sweep."""
    spec = plan.spec
    study = optuna.create_study(
        storage=storage,
        study_name=spec.name,
        direction="minimize" if spec.objective.minimize else "maximize",
        sampler=build_sampler(spec, worker),
        pruner=build_pruner(spec),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(PLAN_ATTR)
    if stored is not None:
        difference = _difference(stored, plan.stored())
        if difference:
            raise ConfigError(
                f"study {spec.name} ({shown(storage_url(spec, plan.sweep_dir()))}) was started "
                f"with another {difference}; give --name NEW for a new sweep"
            )
    study.set_user_attr(PLAN_ATTR, plan.stored())  # the budget and timeout of this launch
    return study


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first part of two stored plans that makes them different sweeps, or None."""
    if old["base"] != new["base"]:
        keys = sorted(_flat(old["base"]).items() ^ _flat(new["base"]).items(), key=str)
        return f"base config ({keys[0][0]})" if keys else "base config"
    for key, value in new["spec"].items():
        if key not in MAY_CHANGE and json.dumps(old["spec"].get(key), sort_keys=True) != (
            json.dumps(value, sort_keys=True)
        ):
            return key
    return None


def _flat(config: dict[str, Any]) -> dict[str, str]:
    from cnnlab.config.keys import flatten

    return {k: json.dumps(v, sort_keys=True) for k, v in flatten(config).items()}


def load(storage, name: str, worker: int = 0) -> tuple[optuna.Study, Plan]:
    """A study a sweep created, with its plan, for a worker joining it."""
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.get_all_study_names(storage)
        raise ConfigError(
            f"--study {name}: no such study in that storage (it has: {', '.join(names) or 'none'})"
        ) from None
    stored = study.user_attrs.get(PLAN_ATTR)
    if stored is None:
        raise ConfigError(f"--study {name}: not a cnnlab sweep (no {PLAN_ATTR} attribute)")
    plan = Plan.from_stored(stored)
    study.sampler = build_sampler(plan.spec, worker)
    study.pruner = build_pruner(plan.spec)
    return study, plan


def retry_of(trial: FrozenTrial) -> int | None:
    """The number of the trial this one re-runs (Optuna's retry convention), or None."""
    return trial.system_attrs.get("failed_trial")


def is_fresh(trial: FrozenTrial) -> bool:
    """Drawn by the sampler: neither an enqueued point nor a retry."""
    return "fixed_params" not in trial.system_attrs and retry_of(trial) is None


def counted(trials: list[FrozenTrial], before: int | None = None) -> int:
    """Fresh trials that use up the budget (numbered below `before`)."""
    return sum(
        1
        for t in trials
        if is_fresh(t) and not t.user_attrs.get(SPARE) and (before is None or t.number < before)
    )


def within_budget(study: optuna.Study, plan: Plan, number: int) -> bool:
    """Whether trial `number`, just taken, is one the sweep should run (see the module's doc)."""
    trials = study.get_trials(deepcopy=False)
    trial = next(t for t in trials if t.number == number)
    if not is_fresh(trial):
        return True
    if plan.spec.is_grid:
        return False
    return plan.spec.trials is None or counted(trials, number) < plan.spec.trials


def work_left(study: optuna.Study, plan: Plan) -> bool:
    """Waiting trials, or (not a grid) budget for more fresh ones."""
    trials = study.get_trials(deepcopy=False)
    if any(t.state == TrialState.WAITING for t in trials):
        return True
    if plan.spec.is_grid:
        return False
    return plan.spec.trials is None or counted(trials) < plan.spec.trials


def enqueue_grid(study: optuna.Study, plan: Plan, lock_dir: Path) -> int:
    """Enqueue the grid's points (the first `trials` of them) that no trial holds yet, under a
    lock so that two launches never enqueue one point twice. Returns how many were added."""
    points = grid_points(plan.spec.space)
    if plan.spec.trials is not None:
        points = points[: plan.spec.trials]
    with locked(lock_dir / ".grid"):
        held = {
            _key(t.system_attrs["fixed_params"])
            for t in study.get_trials(deepcopy=False)
            if "fixed_params" in t.system_attrs
        }
        missing = [p for p in points if _key(p) not in held]
        for point in missing:
            study.enqueue_trial(point)
    return len(missing)


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def requeue(study: optuna.Study, trial: FrozenTrial, retries: int) -> bool:
    """Fail `trial` (its worker is gone) and queue a retry of it, as Optuna's
    RetryHeartbeatStaleTrialCallback does, unless it was retried `retries` times already."""
    study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
    history = [*trial.system_attrs.get("retry_history", []), trial.number]
    if len(history) > retries:
        return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=trial.params,
            distributions=trial.distributions,
            system_attrs={
                **trial.system_attrs,
                "failed_trial": trial.system_attrs.get("failed_trial", trial.number),
                "retry_history": history,
            },
        )
    )
    return True


def worker_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def orphans(study: optuna.Study, dead: set[str] | None = None) -> list[FrozenTrial]:
    """Running trials whose worker is gone: one of `dead` (worker ids), or, with dead=None, a
    process of this machine that no longer exists (or an owner never named, UNCLAIMED_S after
    the trial was taken: a worker names itself first thing)."""
    found = []
    now = datetime.now()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER)
        if dead is not None:
            if owner in dead:
                found.append(trial)
        elif owner is None:
            started = trial.datetime_start
            if started is not None and (now - started).total_seconds() > UNCLAIMED_S:
                found.append(trial)
        elif _gone(owner):
            found.append(trial)
    return found


def _gone(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's: only a heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
