"""MLflow tracking: a run's config, per-epoch metrics, summary, diagnosis and files in an MLflow
tracking store, while it trains (`track.mlflow: URI`) or afterwards (`cnnlab runs export
--mlflow URI`), by the same MlflowTracker.

URI: a folder ("mlruns") or file: URI, a sqlite:/// file, or a tracking server's http(s) URL.
The experiment is $MLFLOW_EXPERIMENT_NAME, else "cnnlab"; the MLflow run is named as the run
directory. What goes where:

  params     the flattened config (optim.lr, augment.train, ...), each value as an override
             writes it (0.003, true, null, [2, 2, 2])
  metrics    every number of a metrics.jsonl row, at step = its epoch; the summary's numbers
             that are not per-epoch columns (best_val_acc, test_acc, train_seconds, ...)
  tags       the summary's strings as cnnlab.<key> (cnnlab.status, cnnlab.device,
             cnnlab.versions.torch, ...), cnnlab.path (the run directory), and the diagnosis
             as the run's description (mlflow.note.content)
  artifacts  the run directory's files: config.yaml, summary.json, metrics, log.txt, model.txt,
             tensorboard/, checkpoints/

Sweeps: a trial's MLflow run becomes a child of the sweep's when the trial's tracker is given
parent_run_id, or finds MLFLOW_PARENT_RUN_ID in its environment (worker processes inherit it):
create the sweep's run with start_parent(), set the variable for the trials, finish_run() it at
the end. Children are filed in their parent's experiment.

The tracker has the trainer's callback methods (on_start, on_epoch, on_end of
cnnlab.training.experiment.Callback) without importing the trainer. While a run trains, an
MLflow failure never stops it: the tracker prints one warning and logs no more (`runs export
--mlflow` uploads the run later). MLflow is an optional extra, imported when a tracker is made.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnlab.config.keys import flatten
from cnnlab.errors import ConfigError
from cnnlab.track.rundir import LOCK_NAME

INSTALL = "pip install cnnlab[mlflow]"
PARENT_ENV = "MLFLOW_PARENT_RUN_ID"  # the sweep's MLflow run, for its trials' trackers
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"  # MLflow's own variable, honoured the same way
DEFAULT_EXPERIMENT = "cnnlab"
PATH_TAG = "cnnlab.path"  # the run directory, absolute: how an export knows what is there
CONNECT_TIMEOUT_S = 10.0  # a server URL that does not answer within this is an error
MAX_PARAM = 6000  # characters of a param value MLflow stores (MAX_PARAM_VAL_LENGTH)
MAX_TAG = 8000  # characters of a tag value (MAX_TAG_VAL_LENGTH)
# cnnlab's run status -> MLflow's (RUNNING | FINISHED | FAILED | KILLED); FINISHED otherwise
MLFLOW_STATUS = {
    "diverged": "FAILED",
    "failed": "FAILED",
    "interrupted": "KILLED",
    "killed": "KILLED",
}


def trackers(config: Any) -> list[MlflowTracker]:
    """The trackers config.track names, connected: a URI that cannot be used is a ConfigError
    now, before the run directory exists."""
    uri = config.track.mlflow
    return [] if uri is None else [MlflowTracker(uri)]


class MlflowTracker:
    """One MLflow run per on_start(); strict: an MLflow failure raises a ConfigError (an export)
    instead of a warning after which the tracker logs no more (a training). `option` is what
    errors name: track.mlflow or --mlflow."""

    def __init__(
        self,
        uri: str,
        *,
        parent_run_id: str | None = None,
        experiment: str | None = None,
        strict: bool = False,
        option: str = "track.mlflow",
    ):
        self.uri, self.strict = uri, strict
        self._where = f"{option} = {uri!r}"
        self._client = _connect(uri, self._where)
        self.parent_run_id = parent_run_id or os.environ.get(PARENT_ENV) or None
        self.experiment_name = experiment or os.environ.get(EXPERIMENT_ENV) or DEFAULT_EXPERIMENT
        self.experiment_id, self.run_id = "", None
        self._epoch_keys: set[str] = set()  # metric names the run logs per epoch
        self._broken = False  # a failure while training: log no more
        self._call(self._find_experiment, strict=True)

    def _find_experiment(self) -> None:
        client = self._client
        if self.parent_run_id is not None:  # a child goes where its parent is
            try:
                self.experiment_id = client.get_run(self.parent_run_id).info.experiment_id
            except Exception as e:
                raise ConfigError(
                    f"{self._where}: no parent run {self.parent_run_id!r} there (from "
                    f"parent_run_id or {PARENT_ENV}): {_first_line(e)}"
                ) from None
            self.experiment_name = client.get_experiment(self.experiment_id).name
            return
        found = client.get_experiment_by_name(self.experiment_name)
        if found is None:
            try:
                self.experiment_id = client.create_experiment(self.experiment_name)
                return
            except Exception:  # another process (a rank, a trial) created it meanwhile
                found = client.get_experiment_by_name(self.experiment_name)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise ConfigError(
                f"{self._where}: experiment {self.experiment_name!r} is deleted; restore it "
                f"(mlflow experiments restore) or set {EXPERIMENT_ENV} to another name"
            )
        self.experiment_id = found.experiment_id

    def on_start(self, run_dir: str | Path, config: Any, *, start_ms: int | None = None) -> None:
        """Create the MLflow run of `run_dir`; the config (a Config or its dict) as params."""
        from mlflow.entities import Param

        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        path = Path(run_dir).resolve()
        tags = {PATH_TAG: str(path), "mlflow.source.name": "cnnlab", "mlflow.source.type": "LOCAL"}
        if self.parent_run_id is not None:
            tags["mlflow.parentRunId"] = self.parent_run_id
        params = [Param(_name(k), config_text(v)[:MAX_PARAM]) for k, v in flatten(config).items()]
        self.run_id, self._epoch_keys, self._broken = None, set(), False

        def start() -> None:
            run = self._client.create_run(
                self.experiment_id, start_time=start_ms or _now_ms(), tags=tags, run_name=path.name
            )
            self.run_id = run.info.run_id
            self._client.log_batch(self.run_id, params=params)

        self._call(start)

    def on_epoch(self, metrics: Mapping[str, Any], *, time_ms: int | None = None) -> None:
        """One metrics.jsonl row: its numbers at step = its epoch."""
        from mlflow.entities import Metric

        if self.run_id is None or self._broken:
            return None
        step, stamp = int(metrics.get("epoch", 0)), time_ms or _now_ms()
        batch = [
            Metric(_name(k), float(v), stamp, step)
            for k, v in metrics.items()
            if k != "epoch" and _number(v)
        ]
        self._epoch_keys.update(m.key for m in batch)
        self._call(lambda: self._client.log_batch(self.run_id, metrics=batch))
        return None  # a tracker never asks the run to stop

    def on_end(
        self, run_dir: str | Path, summary: Mapping[str, Any], *, end_ms: int | None = None
    ) -> None:
        """The summary's numbers and strings, the diagnosis, the run directory's files; then the
        MLflow run ends with the status that matches the summary's."""
        from mlflow.entities import Metric, RunTag

        if self.run_id is None or self._broken:
            return
        stamp, step = end_ms or _now_ms(), int(summary.get("epochs_run") or 0)
        numbers = [
            Metric(_name(k), float(v), stamp, step)
            for k, v in summary.items()
            if _number(v) and _name(k) not in self._epoch_keys
        ]
        tags = [
            RunTag(f"cnnlab.{_name(k)}", v[:MAX_TAG])
            for k, v in flatten(dict(summary)).items()
            if isinstance(v, str)
        ]
        if summary.get("diagnosis"):
            tags.append(RunTag("mlflow.note.content", note(summary["diagnosis"])[:MAX_TAG]))
        status = MLFLOW_STATUS.get(str(summary.get("status")), "FINISHED")

        def end() -> None:
            self._client.log_batch(self.run_id, metrics=numbers, tags=tags)
            for file, folder in run_files(Path(run_dir)):
                self._client.log_artifact(self.run_id, str(file), folder)
            self._client.set_terminated(self.run_id, status, end_time=stamp)

        self._call(end)

    def log_finished(self, run: Any) -> str | None:
        """Upload a run directory that trained without a tracker (a cnnlab.track.registry Run)
        as the training would have: the same calls, at the times its files give. Its MLflow
        run id."""
        config, rows = run.config, run.metrics  # read first: a damaged file leaves nothing
        summary = dict(run.summary) or {"status": run.status}
        start = _started_ms(run)
        self.on_start(run.path, config, start_ms=start)
        elapsed = 0.0  # seconds, from the rows' own epoch durations
        for row in rows:
            elapsed += float(row.get("seconds") or 0) if _number(row.get("seconds")) else 0.0
            self.on_epoch(row, time_ms=start + round(elapsed * 1000))
        ended = _mtime_ms(run.path / "summary.json") or start + round(elapsed * 1000)
        self.on_end(run.path, summary, end_ms=ended)
        return self.run_id

    def uploaded(self) -> set[str]:
        """The run directories (absolute paths) whose MLflow runs this experiment holds, ended;
        a run still RUNNING there is an upload that broke off, uploaded again."""
        found: set[str] = set()

        def search() -> None:
            token = None
            while True:
                page = self._client.search_runs(
                    [self.experiment_id], max_results=1000, page_token=token
                )
                for run in page:
                    if PATH_TAG in run.data.tags and run.info.status != "RUNNING":
                        found.add(run.data.tags[PATH_TAG])
                token = page.token
                if not token:
                    return

        self._call(search, strict=True)
        return found

    def _call(self, action: Callable[[], None], strict: bool | None = None) -> None:
        try:
            action()
        except ConfigError:
            raise
        except Exception as e:  # MLflow's, requests', OSError: the store failed, not the run
            message = f"{self._where}: {_first_line(e)}"
            if self.strict if strict is None else strict:
                raise ConfigError(message) from None
            self._broken = True
            print(
                f"cnnlab: warning: MLflow logging stopped ({message}); the run goes on. Upload "
                f"it when it ends: cnnlab runs export --mlflow {self.uri}",
                file=sys.stderr,
            )


def start_parent(uri: str, name: str, params: Mapping[str, Any] | None = None) -> str:
    """A sweep's own MLflow run (in $MLFLOW_EXPERIMENT_NAME or "cnnlab"), RUNNING until
    finish_run(); set MLFLOW_PARENT_RUN_ID to the id it returns for the trials."""
    from mlflow.entities import Param

    tracker = MlflowTracker(uri, strict=True)
    flat = flatten(dict(params or {}))
    client, ids = tracker._client, []

    def create() -> None:
        run = client.create_run(tracker.experiment_id, start_time=_now_ms(), run_name=name)
        ids.append(run.info.run_id)
        params = [Param(_name(k), config_text(v)[:MAX_PARAM]) for k, v in flat.items()]
        client.log_batch(run.info.run_id, params=params)

    tracker._call(create)
    return ids[0]


def finish_run(uri: str, run_id: str, status: str = "completed") -> None:
    """End the MLflow run `run_id` with the MLflow status of a cnnlab `status`."""
    tracker = MlflowTracker(uri, strict=True)
    final = MLFLOW_STATUS.get(status, "FINISHED")
    tracker._call(lambda: tracker._client.set_terminated(run_id, final, end_time=_now_ms()))


# ---------------------------------------------------------------- MLflow's store and names


def _connect(uri: str, where: str) -> Any:
    """An MlflowClient of `uri`; ConfigError without MLflow, for a server that does not answer
    (MLflow itself would retry for minutes) or a URI MLflow does not take."""
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise ConfigError(f"{where}: needs MLflow, which is not installed ({INSTALL})") from None
    if uri.startswith(("http://", "https://")):
        _check_server(uri, where)
    try:
        with _file_store_allowed(uri):
            return MlflowClient(tracking_uri=uri)
    except Exception as e:
        raise ConfigError(f"{where}: {_first_line(e)}") from None


def _check_server(uri: str, where: str) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=CONNECT_TIMEOUT_S):
            pass
    except urllib.error.HTTPError:
        return  # it answered (a proxy's 401 or 404 too): MLflow's own requests tell the rest
    except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, bad hosts
        reason = getattr(e, "reason", None) or e
        raise ConfigError(f"{where}: no MLflow server answers there ({reason})") from None


@contextmanager
def _file_store_allowed(uri: str) -> Iterator[None]:
    """MLflow 3 refuses a folder store unless MLFLOW_ALLOW_FILE_STORE is true; a folder was
    asked for, so it is allowed while the client opens it (MLflow caches the open store). A
    user's own setting of the variable stands."""
    folder = "://" not in uri or uri.startswith("file:")
    if not folder or "MLFLOW_ALLOW_FILE_STORE" in os.environ:
        yield
        return
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        yield
    finally:
        os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)


def config_text(value: Any) -> str:
    """A config value as an override writes it: strings as they are, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def note(diagnosis: list[Any]) -> str:
    """The diagnosis as the Markdown of an MLflow run's description."""
    lines = []
    for finding in diagnosis:
        if isinstance(finding, Mapping):  # as the console prints it: kind (epochs): message; advice
            epochs = f" (epochs {finding['epochs']})" if finding.get("epochs") else ""
            advice = f"; {finding['advice']}" if finding.get("advice") else ""
            lines.append(
                f"- **{finding.get('kind', '?')}**{epochs}: {finding.get('message', '')}{advice}"
            )
    return "\n".join(lines)


def run_files(path: Path) -> Iterator[tuple[Path, str | None]]:
    """(file, artifact folder or None) for every regular file under `path` but its lock; links,
    FIFOs and devices are skipped, never read."""
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        here = Path(folder)
        relative = here.relative_to(path).as_posix()
        for name in sorted(files):
            if here == path and name == LOCK_NAME:
                continue
            try:
                regular = stat.S_ISREG(os.lstat(here / name).st_mode)
            except OSError:
                continue
            if regular:
                yield here / name, None if relative == "." else relative


def _name(key: str) -> str:
    """A key as MLflow names allow: letters, digits, _ - . / and spaces."""
    return re.sub(r"[^\w\-./ ]", "_", str(key))[:250]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _started_ms(run: Any) -> int:
    """When a finished run started: its directory's stamp, else its config.yaml's mtime."""
    try:
        return int(datetime.strptime(run.date, "%Y-%m-%d %H:%M:%S").timestamp() * 1000)
    except (ValueError, TypeError):
        return _mtime_ms(run.path / "config.yaml") or _now_ms()


def _mtime_ms(path: Path) -> int | None:
    try:
        return int(path.stat().st_mtime * 1000)
    except OSError:
        return None
