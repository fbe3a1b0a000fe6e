"""The run directory: <run.dir>/<YYYYmmdd-HHMMSS>-<name>/ and the files written into it.

It takes plain dicts and strings; it knows nothing of the trainer that calls it.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from cnnlab.atomic import write_text_atomic
from cnnlab.config.names import run_stamp
from cnnlab.errors import ConfigError

# Files that commands over a finished run add to its directory; `cnnlab report` embeds them.
CONFUSION_CSV = "confusion.csv"  # first row "true\\pred" + class names, first column class names
CONFUSION_PNG = "confusion.png"
ROBUSTNESS_CSV = "robustness.csv"  # first row "corruption" + severities, first column corruptions
ROBUSTNESS_MD = "robustness.md"
ROBUSTNESS_PNG = "robustness.png"
REPORT_NAME = "report.html"

# TensorBoard tag of each per-epoch metric (the names users know from their own loops).
TENSORBOARD_TAGS = {
    "train_loss": "Loss/train",
    "val_loss": "Loss/val",
    "train_acc": "Accuracy/train",
    "val_acc": "Accuracy/val",
    "lr": "LR",
}


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

    @classmethod
    def create(cls, root: str | Path, name: str) -> RunDir:
        """A new, empty directory; never reuses one, so no earlier run is overwritten."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ConfigError(f"run.dir = {str(root)!r}: exists and is not a directory")
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"run.dir = {str(root)!r}: cannot create it ({e.strerror})") from None
        stem = f"{run_stamp()}-{_safe_name(name)}"
        for attempt in range(1, 1000):
            path = root / (stem if attempt == 1 else f"{stem}-{attempt}")
            try:
                path.mkdir()
            except FileExistsError:
                continue
            (path / "checkpoints").mkdir()
            return cls(path)
        raise ConfigError(f"run.dir = {str(root)!r}: too many runs named {stem}")

    @classmethod
    def reopen(cls, path: Path, history: list[dict[str, Any]]) -> RunDir:
        """An existing run directory, its metric files cut back to `history` (the epochs its
        checkpoint knows): epochs logged after that checkpoint will be trained again."""
        run = cls(path)
        run.rewrite_metrics(history)
        # TensorBoard drops its events from this epoch on, for the same reason.
        run._purge_step = len(history) + 1
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

    def _tensorboard_writer(self):
        if self._tensorboard is None:
            # Imported here: TensorBoard costs ~1 s to import and only training writes events.
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(
                log_dir=str(self.path / "tensorboard"), purge_step=self._purge_step
            )
        return self._tensorboard

    def close(self) -> None:
        if self._csv_file is not None:
            self._csv_file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
