"""The run directory: <run.dir>/<YYYYmmdd-HHMMSS>-<name>/ and the files written into it.

It takes plain dicts and strings; it knows nothing of the trainer that calls it.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import io
import json
import os
import re
import socket
import time
import weakref
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cnnlab.atomic import remove_stale_temps, write_text_atomic
from cnnlab.config.keys import flatten
from cnnlab.config.names import run_stamp
from cnnlab.errors import ConfigError

# Files that commands over a finished run add to its directory; `cnnlab report` embeds them.
# Their names say what produced them: confusion-<split>[-tta].csv/.png (first row "true\\pred" +
# class names, first column class names); robustness-<split>[-<subset>].csv/.md/.png (first row
# "corruption" + severities, first column corruptions), so no run of one overwrites another's.
CONFUSION = "confusion"
ROBUSTNESS = "robustness"
REPORT_NAME = "report.html"
# Held (fcntl.flock, exclusive) by the one process writing the run; its text names that process.
LOCK_NAME = ".lock"
# The files a training run (re)writes, besides its checkpoints/ and tensorboard/ folders.
WRITTEN = ("config.yaml", "model.txt", "log.txt", "metrics.jsonl", "metrics.csv", "summary.json")
WRITTEN += tuple(f"checkpoints/{name}" for name in ("last.ckpt", "best.safetensors"))

# TensorBoard tag of each per-epoch metric (the names users know from their own loops).
TENSORBOARD_TAGS = {
    "train_loss": "Loss/train",
    "val_loss": "Loss/val",
    "train_acc": "Accuracy/train",
    "val_acc": "Accuracy/val",
    "lr": "LR",
}
# The train loss of each logging point, x = optimizer step. In tensorboard/steps/, a run of its
# own to TensorBoard: a resumed run drops the events after its checkpoint, and TensorBoard
# does that by step for a whole run, which must then count its x in one unit.
STEP_LOSS_TAG = "Loss/train_step"
STEPS_DIR = "steps"
# The summary's numbers that TensorBoard's HPARAMS tab shows beside each run's config.
HPARAM_METRICS = (
    "best_val_acc",
    "final_val_acc",
    "test_acc",
    "best_monitor_value",
    "epochs_run",
    "train_seconds",
    "images_per_second",
)


def hparam(value: Any) -> bool | int | float | str:
    """A config value as a TensorBoard hparam: numbers, bools and strings as they are; lists,
    mappings and None as JSON text ("[2, 2, 2]", "null"), which TensorBoard takes."""
    return value if isinstance(value, bool | int | float | str) else json.dumps(value)


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("_") or "run"


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self.checkpoints = path / "checkpoints"
        self._csv_file = None
        self._csv_writer: csv.DictWriter | None = None
        self._tensorboard = None
        self._purge_step: int | None = None
        self._step_writer = None
        self._purge_optimizer_step: int | None = None
        self._lock: weakref.finalize | None = None

    @classmethod
    def create(cls, root: str | Path, name: str) -> RunDir:
        """A new, empty directory; never reuses one, so no earlier run is overwritten."""
        run = cls(new_folder(root, name))
        run.lock()  # before config.yaml exists, so no listing ever sees it unlocked
        run.checkpoints.mkdir()
        return run

    @classmethod
    def reopen(cls, path: Path, history: list[dict[str, Any]]) -> RunDir:
        """An existing run directory, its metric files cut back to `history` (the epochs its
        checkpoint knows): epochs logged after that checkpoint will be trained again."""
        run = cls(path)
        for name in WRITTEN:  # a folder or a FIFO in a file's place would fail it halfway
            if os.path.lexists(path / name) and not (path / name).is_file():
                raise ConfigError(
                    f"{path / name}: not a regular file, and resuming rewrites it; move it away"
                )
        run.lock()  # a second `--resume` of the same run stops here, before changing a file
        run.rewrite_metrics(history)
        # TensorBoard drops its events from this epoch on, for the same reason; and the step
        # events (their own folder: x = optimizer step) after the last epoch's step.
        run._purge_step = len(history) + 1
        run._purge_optimizer_step = (history[-1]["step"] if history else 0) + 1
        return run

    def rewrite_metrics(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl and metrics.csv hold exactly `history`, one line per epoch."""
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file, self._csv_writer = None, None
        self.write_text("metrics.jsonl", "".join(json.dumps(m) + "\n" for m in history))
        table = io.StringIO()
        if history:
            writer = csv.DictWriter(table, fieldnames=list(history[0]))
            writer.writeheader()
            writer.writerows(history)
        self.write_text("metrics.csv", table.getvalue())

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.path / name, text)

    def write_summary(self, summary: dict[str, Any]) -> None:
        self.write_text("summary.json", json.dumps(summary, indent=2) + "\n")

    def log_epoch(self, metrics: dict[str, Any]) -> None:
        """Append one epoch to metrics.jsonl, metrics.csv and TensorBoard."""
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(metrics) + "\n")
        if self._csv_writer is None:
            self._csv_file = open(self.path / "metrics.csv", "a", newline="")
            self._csv_writer = csv.DictWriter(self._csv_file, fieldnames=list(metrics))
            if self._csv_file.tell() == 0:
                self._csv_writer.writeheader()
        self._csv_writer.writerow(metrics)
        self._csv_file.flush()
        writer = self._tensorboard_writer()
        for key, tag in TENSORBOARD_TAGS.items():
            if key in metrics:
                writer.add_scalar(tag, metrics[key], global_step=metrics["epoch"])
        writer.flush()
        if self._step_writer is not None:
            self._step_writer.flush()

    def log_step(self, info: dict[str, Any]) -> None:
        """A logging point of the training loop: its train loss (the mean since the last one)
        at x = the optimizer step, in tensorboard/steps/. Flushed with the epoch's scalars."""
        if self._step_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._step_writer = SummaryWriter(
                log_dir=str(self.path / "tensorboard" / STEPS_DIR),
                purge_step=self._purge_optimizer_step,
            )
        self._step_writer.add_scalar(STEP_LOSS_TAG, info["loss"], global_step=info["step"])

    def log_hparams(self, config: dict[str, Any], summary: dict[str, Any]) -> None:
        """The run's flattened config and final numbers for TensorBoard's HPARAMS tab, which
        then compares the runs under a logdir by config. Its metric columns are the runs'
        scalars: the per-epoch tags, and summary/<key> for the summary's HPARAM_METRICS."""
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

        start = plugin_data_pb2.SessionStartInfo()
        for key, value in flatten(config).items():
            value = hparam(value)
            if isinstance(value, bool):
                start.hparams[key].bool_value = value
            elif isinstance(value, str):
                start.hparams[key].string_value = value
            else:
                start.hparams[key].number_value = value
        status = {
            "diverged": api_pb2.STATUS_FAILURE,
            "failed": api_pb2.STATUS_FAILURE,
            "interrupted": api_pb2.STATUS_UNKNOWN,
        }.get(summary.get("status"), api_pb2.STATUS_SUCCESS)
        end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
        writer, step = self._tensorboard_writer(), summary.get("epochs_run") or 0
        # The session alone, without the experiment summary torch's add_hparams also writes:
        # TensorBoard then builds the table from every run's session, where one run's
        # experiment summary would decide the columns of all.
        for tag, data in (
            (metadata.SESSION_START_INFO_TAG, {"session_start_info": start}),
            (metadata.SESSION_END_INFO_TAG, {"session_end_info": end}),
        ):
            meta = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(**data))
            event = Summary(value=[Summary.Value(tag=tag, metadata=meta)])
            writer.file_writer.add_summary(event, step)
        for key in HPARAM_METRICS:
            value = summary.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                writer.add_scalar(f"summary/{key}", value, global_step=step)
        writer.flush()

    def _tensorboard_writer(self):
        if self._tensorboard is None:
            # Imported here: TensorBoard costs ~1 s to import and only training writes events.
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(
                log_dir=str(self.path / "tensorboard"), purge_step=self._purge_step
            )
        return self._tensorboard

    def lock(self) -> None:
        """Become the one writer of this run: an exclusive flock on <run>/.lock, whose text says
        who holds it. The kernel drops the lock when the process ends, however it ends, so a
        crashed writer never leaves a stale one (on this host). ConfigError if another holds it."""
        if self._lock is not None:
            return
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise ConfigError(f"{self.path}: cannot write its {LOCK_NAME} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = read_holder(self.path)
            os.close(fd)
            who = holder.describe() if holder else "another process"
            raise ConfigError(
                f"{self.path}: already being written by {who}; wait for it to end (or stop it)"
            ) from None
        try:
            os.ftruncate(fd, 0)  # fails on anything but a regular file
            os.write(fd, Holder.of_this_process().to_json().encode())
        except OSError as e:
            os.close(fd)
            raise ConfigError(f"{self.path}: cannot write its {LOCK_NAME} ({e.strerror})") from None
        # Released by close(), or when this object is garbage-collected without one.
        self._lock = weakref.finalize(self, _release, fd)
        # The one writer now: temporaries a killed writer left behind are nobody's.
        remove_stale_temps(self.path, self.checkpoints)

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
        for writer in (self._tensorboard, self._step_writer):
            if writer is not None:
                writer.close()
        if self._lock is not None:
            self._lock()
            self._lock = None


def _release(fd: int) -> None:
    # LOCK_UN first: a forked child (a DataLoader worker) sharing the descriptor would
    # otherwise keep the lock held after this process closed its copy.
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def _shown(path: Path | str) -> str:
    """A path quoted for a one-line error, its middle cut when it is very long."""
    text = str(path)
    return repr(text if len(text) <= 160 else f"{text[:100]}…{text[-50:]}")


def new_folder(root: str | Path, name: str, kind: str = "runs") -> Path:
    """A new folder <root>/<stamp>-<name>[-2, -3, ...], root made if need be: mkdir is atomic,
    so two processes started in the same second never share one."""
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"run.dir = {_shown(root)}: exists and is not a directory") from None
    except OSError as e:
        raise ConfigError(f"run.dir = {_shown(root)}: cannot create it ({e.strerror})") from None
    stem = f"{run_stamp()}-{_safe_name(name)}"
    for attempt in range(1, 1000):
        path = root / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        except OSError as e:
            raise _name_error(root, path, name, e) from None
        return path
    raise ConfigError(f"run.dir = {_shown(root)}: too many {kind} named {stem}")


def _name_error(root: Path, path: Path, name: str, error: OSError) -> ConfigError:
    """A run directory that cannot be made, as one line naming the key to change."""
    if error.errno != errno.ENAMETOOLONG:
        return ConfigError(
            f"run.dir = {_shown(root)}: cannot create {path.name} ({error.strerror})"
        )
    try:
        name_max = os.pathconf(root, "PC_NAME_MAX")  # bytes in one name, 255 on ext4
    except (OSError, ValueError):
        name_max = 255
    size = len(os.fsencode(path.name))
    if size > name_max:
        return ConfigError(
            f"run.name = {_shown(name)}: the run directory's name would be {size} bytes, more than "
            f"the {name_max} the file system allows; use a shorter run.name"
        )
    return ConfigError(
        f"run.dir = {_shown(root)}: the run directory's path would be too long for the file "
        f"system ({len(os.fsencode(str(path)))} bytes); use a shorter run.dir or run.name"
    )


@dataclass(frozen=True)
class Holder:
    """Who holds a run's lock, from the text of its .lock file."""

    pid: int
    host: str
    since: str  # "2026-11-23 12:25:13", local time of the holder

    @classmethod
    def of_this_process(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), f"{datetime.now():%Y-%m-%d %H:%M:%S}")

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "since": self.since}) + "\n"

    @property
    def here(self) -> bool:
        """On this host, where flock tells whether the holder still runs."""
        return self.host == socket.gethostname()

    def describe(self) -> str:
        return f"pid {self.pid}@{self.host} (since {self.since})"


def read_holder(path: Path) -> Holder | None:
    """The last writer named in <path>/.lock, None when there is none or it is not ours."""
    try:
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = json.loads(os.read(fd, 4096))  # a few dozen bytes when cnnlab wrote it
        return Holder(int(data["pid"]), str(data["host"]), str(data["since"]))
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return None
    finally:
        os.close(fd)


def writer_alive(path: Path) -> bool | None:
    """Whether a process on this host holds the run's lock now; None without a .lock file."""
    try:
        # O_NONBLOCK: a .lock that is a FIFO must not block the listing
        fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock just taken
    return False
