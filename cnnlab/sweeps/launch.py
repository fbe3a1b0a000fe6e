"""`cnnlab sweep SPEC`: the sweep directory and its study, then the trials: in this process
(one worker), or in K worker processes that this one watches; then trials.csv, best.yaml and
the plots.

Workers are processes, not Optuna's n_jobs threads (threads share the GIL and torch's state).
On the CPU each of K workers gets cores // K torch threads; with GPUs the workers are spread
over the visible devices (several per device when K is larger). A worker that dies is
replaced while work is left; on the journal storage, which has no heartbeat, its trial is
failed and re-queued here (an RDB storage's heartbeat does that by itself).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from cnnlab.atomic import write_text_atomic
from cnnlab.config import dump_yaml
from cnnlab.config.load import validate
from cnnlab.errors import ConfigError
from cnnlab.sweeps import show
from cnnlab.sweeps import study as studies
from cnnlab.sweeps.space import config_values
from cnnlab.sweeps.spec import Plan, Spec, load_spec
from cnnlab.sweeps.worker import log_to, work
from cnnlab.track.sweepdir import BASE_YAML, BEST_YAML, JOURNAL, SPEC_YAML, SWEEP_JSON, WORKER_LOGS

EXIT_INTERRUPTED = 130  # a worker's exit code after Ctrl-C (cnnlab.cli.codes)
POLL_S = 1.0  # how often the watcher looks at its workers and the study


def prepare(plan: Plan, sweep_dir: Path) -> tuple[optuna.Study, str]:
    """The sweep directory with its records, and the study (created, or resumed after its
    orphaned trials are re-queued and any missing grid points enqueued)."""
    spec = plan.spec
    url = studies.storage_url(spec, sweep_dir)
    if "://" in url:  # a storage that cannot be opened leaves no sweep directory behind
        storage = studies.open_storage(url, _beat(url, spec), spec.retries)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "://" not in url:
        storage = studies.open_storage(url)
    study = studies.create(plan, storage)
    record = {"study": spec.name, "storage": JOURNAL if spec.storage is None else url}
    write_text_atomic(sweep_dir / SWEEP_JSON, json.dumps(record, indent=2) + "\n")
    shown = spec.model_dump(mode="json", exclude_none=True)
    for entry in shown["space"].values():
        if not entry["when"]:
            del entry["when"]
    write_text_atomic(sweep_dir / SPEC_YAML, yaml.safe_dump(shown, sort_keys=False))
    write_text_atomic(sweep_dir / BASE_YAML, dump_yaml(validate(plan.base)))
    if "://" not in url:
        for trial in studies.orphans(study):
            studies.requeue(study, trial, spec.retries)
    if spec.is_grid:
        studies.enqueue_grid(study, plan, sweep_dir)
    return study, url


def _beat(url: str, spec: Spec) -> int | None:
    return spec.heartbeat if "://" in url else None


def resumed(sweep_dir: Path, **flags: Any) -> Plan:
    """The plan of an existing sweep directory, with `flags` (trials, timeout, workers)."""
    _, plan, _ = show.open_sweep(sweep_dir)
    changed = plan.spec.model_dump() | {k: v for k, v in flags.items() if v is not None}
    try:
        spec = Spec.model_validate(changed | {"dir": str(sweep_dir)})
    except ValueError as e:
        raise ConfigError(f"{sweep_dir}: {e}".splitlines()[0]) from None
    return Plan(spec, plan.base, str(sweep_dir))


def run_sweep(
    source: Any, *, quiet: bool = False, out: TextIO | None = None, **flags: Any
) -> tuple[optuna.Study, Plan, Path]:
    """Run (or resume) a sweep to the end of its budget. `source`: a spec file, mapping or
    Spec, or a sweep directory; `flags`: trials, timeout, workers, storage, name."""
    if isinstance(source, str | Path) and Path(source).is_dir():
        plan = resumed(Path(source), **flags)
    else:
        plan = load_spec(source, **flags)
    spec, out = plan.spec, out or sys.stdout
    sweep_dir = plan.sweep_dir().absolute()
    with _optuna_logs_to(None):
        study, url = prepare(plan, sweep_dir)
    (sweep_dir / WORKER_LOGS).mkdir(exist_ok=True)
    with open(sweep_dir / WORKER_LOGS / "worker-0.log", "a") as log, _optuna_logs_to(log):
        echo = Echo(plan, None if quiet else out)
        echo.line(
            f"sweep {spec.name}: {_budget(study, plan)}, {spec.workers} worker"
            f"{'s' if spec.workers > 1 else ''}, storage {studies.shown(url)}; in {sweep_dir}"
        )
        try:
            if spec.workers == 1:
                work(
                    study,
                    plan,
                    sweep_dir,
                    timeout_s=spec.timeout and 60.0 * spec.timeout,
                    after_trial=lambda s, t: (
                        echo.finished(s),
                        show.write_tables(s, plan, sweep_dir),
                    ),
                )
            else:
                deadline = None if spec.timeout is None else time.monotonic() + 60 * spec.timeout
                Watcher(plan, study, url, sweep_dir, echo, deadline).run()
        except KeyboardInterrupt:
            echo.line(f"interrupted; stopped trials are queued again: cnnlab sweep {sweep_dir}")
            raise
        finally:
            show.write_tables(study, plan, sweep_dir)  # also after Ctrl-C
    show.write_plots(study, sweep_dir)
    for line in show.summary_lines(study, plan):
        echo.line(line)
    echo.line(f"best config: {sweep_dir / BEST_YAML}; details: cnnlab sweep show {sweep_dir}")
    return study, plan, sweep_dir


@contextlib.contextmanager
def _optuna_logs_to(stream: TextIO | None) -> Iterator[None]:
    """Optuna's lines (with the traceback of a failed trial) into the worker's log (None:
    nowhere) rather than the terminal, for as long as the sweep runs here."""
    logger = optuna.logging.get_logger("optuna")
    handlers, level = list(logger.handlers), logger.level
    try:
        log_to(stream)
        yield
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)


def _budget(study: optuna.Study, plan: Plan) -> str:
    found = show.trials(study)
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in found)
    if plan.spec.is_grid:
        size = sum("fixed_params" in t.system_attrs and studies.retry_of(t) is None for t in found)
        return f"grid of {size} points, {done} done"
    limit = "no trial limit" if plan.spec.trials is None else f"{plan.spec.trials} trials"
    return f"{limit}, {done} done"


class Echo:
    """The sweep's lines on the terminal: one per finished trial, and the watcher's news."""

    def __init__(self, plan: Plan, out: TextIO | None):
        self.plan, self.out, self.seen = plan, out, set()

    def line(self, text: str) -> None:
        if self.out is not None:
            print(text, file=self.out, flush=True)

    def finished(self, study: optuna.Study) -> None:
        retried = show.retried_numbers(study)
        for trial in show.trials(study):
            if trial.state.is_finished() and trial.number not in self.seen:
                self.seen.add(trial.number)
                self.line(self._describe(trial, retried))

    def _describe(self, t: FrozenTrial, retried: set[int]) -> str:
        metric = self.plan.spec.objective.metric
        state = show.STATES.get(t.state, t.state.name.lower())
        if t.state == TrialState.COMPLETE:
            result = f"{metric} {t.value:.4f}"
        elif t.state == TrialState.PRUNED:
            result = f"at epoch {t.last_step}" if t.last_step is not None else "before epoch 1"
        else:
            result = show.failure(t, retried)
        values = config_values(self.plan.spec.space, t.params)
        params = " ".join(f"{k}={show._short(v)}" for k, v in values.items())
        seconds = f"{t.duration.total_seconds():.1f} s" if t.duration else "-"
        return f"trial {t.number:>4}  {state:<8}  {result}  {params}  ({seconds})"


class Watcher:
    """K worker processes of one sweep on this machine, replaced when they die."""

    def __init__(self, plan, study, url, sweep_dir, echo, deadline):
        self.plan, self.study, self.url, self.sweep_dir = plan, study, url, sweep_dir
        self.echo, self.deadline = echo, deadline
        self.procs: dict[int, subprocess.Popen] = {}
        self.interrupted = False  # a worker stopped for Ctrl-C: the user's, so start no more
        self.lost = 0  # deaths since a trial last finished: a worker that cannot start
        self.logs = sweep_dir / WORKER_LOGS
        self.logs.mkdir(exist_ok=True)
        k = plan.spec.workers
        self.threads = max(1, len(os.sched_getaffinity(0)) // k)
        self.devices = _devices(plan)

    def run(self) -> None:
        for index in range(self.plan.spec.workers):
            self.start(index)
        idle_since = None
        try:
            while True:
                time.sleep(POLL_S)
                self.reap()
                if "://" in self.url:
                    with studies.settled():  # the heartbeat's re-queue, also with no worker
                        optuna.storages.fail_stale_trials(self.study)
                before = len(self.echo.seen)
                self.echo.finished(self.study)
                if len(self.echo.seen) > before:
                    self.lost = 0
                if self.procs:
                    idle_since = None
                    continue
                if self.interrupted:
                    raise KeyboardInterrupt
                if self._can_go_on():
                    self.start(0)
                    continue
                idle_since = idle_since or time.monotonic()
                if not self._wait_for_stale(idle_since):
                    break
        except KeyboardInterrupt:
            if self.procs:
                self.echo.line("interrupted: waiting for the workers to save their runs")
                self.stop()
            raise

    def _can_go_on(self) -> bool:
        if self.interrupted:
            return False
        timed_out = self.deadline is not None and time.monotonic() >= self.deadline
        return not timed_out and studies.work_left(self.study, self.plan)

    def _wait_for_stale(self, idle_since: float) -> bool:
        """RDB: with no worker left, wait a heartbeat grace period for running trials of dead
        workers to turn stale and be re-queued."""
        if "://" not in self.url:
            return False
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        grace = (studies.GRACE_BEATS + 2) * self.plan.spec.heartbeat
        return bool(running) and time.monotonic() - idle_since < grace

    def start(self, index: int) -> None:
        if self.lost > 2 * self.plan.spec.workers + 2:
            raise ConfigError(
                f"sweep {self.plan.spec.name}: workers keep dying before finishing a trial; "
                f"see {self.logs}"
            )
        remaining = None if self.deadline is None else max(1.0, self.deadline - time.monotonic())
        command = [sys.executable, "-m", "cnnlab", "sweep", "worker", "--storage", self.url]
        command += ["--study", self.plan.spec.name, "--dir", str(self.sweep_dir)]
        command += ["--threads", str(self.threads), "--index", str(index)]
        if remaining is not None:
            command += ["--timeout-s", f"{remaining:.0f}"]
        env = os.environ | {"OMP_NUM_THREADS": str(self.threads)}
        if self.devices:
            env["CUDA_VISIBLE_DEVICES"] = self.devices[index % len(self.devices)]
        with open(self.logs / f"worker-{index}.log", "a") as log:
            self.procs[index] = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def reap(self) -> None:
        """Workers that ended: a dead one's trials re-queued (journal), and a replacement."""
        for index, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                continue
            del self.procs[index]
            if code == 0:
                continue
            if code == EXIT_INTERRUPTED:  # it saved its run and re-queued its trial
                self.interrupted = True
                continue
            self.lost += 1
            how = f"signal {-code}" if code < 0 else f"exit code {code}"
            news = f"worker {index} (pid {proc.pid}) died ({how})"
            if "://" not in self.url:
                dead = {studies.worker_id(proc.pid)}
                for trial in studies.orphans(self.study, dead):
                    again = studies.requeue(self.study, trial, self.plan.spec.retries)
                    news += f"; trial {trial.number} {'re-queued' if again else 'failed'}"
            self.echo.line(news)
            if self._can_go_on():
                self.start(index)

    def stop(self) -> None:
        """After Ctrl-C (which reached the workers too): let them save and exit; a second
        Ctrl-C kills them."""
        try:
            for proc in self.procs.values():
                proc.wait()
        except KeyboardInterrupt:
            for proc in self.procs.values():
                proc.kill()
            raise
        self.reap()


def _devices(plan: Plan) -> list[str]:
    """The visible CUDA devices to spread workers over; [] on the CPU."""
    if plan.base["train"]["device"] not in ("auto", "cuda"):
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        return [d.strip() for d in visible.split(",") if d.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def run_worker(
    storage: str,
    name: str,
    sweep_dir: str | None = None,
    *,
    threads: int | None = None,
    index: int = 0,
    timeout_s: float | None = None,
) -> None:
    """`cnnlab sweep worker`: join the study `name` in `storage` from any machine; its runs go
    to `sweep_dir` (default: the sweep's own directory name, here)."""
    if "://" not in storage and not Path(storage).is_file():
        raise ConfigError(f"--storage {storage}: no such journal file (or give an RDB URL)")
    _, plan = studies.load(studies.open_storage(storage), name)
    beats = _beat(storage, plan.spec)
    study, plan = studies.load(studies.open_storage(storage, beats, plan.spec.retries), name, index)
    folder = Path(sweep_dir or plan.sweep_dir()).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / SWEEP_JSON).exists():
        record = {"study": name, "storage": storage}
        write_text_atomic(folder / SWEEP_JSON, json.dumps(record, indent=2) + "\n")
    if threads:
        import torch

        torch.set_num_threads(threads)
    log_to(sys.stderr)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # see settled()
    work(
        study,
        plan,
        folder,
        timeout_s=timeout_s,
        after_trial=lambda s, t: show.write_tables(s, plan, folder),
    )
