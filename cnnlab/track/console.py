"""What a run shows: a live progress bar on the terminal, epoch lines and an end-of-run table,
the lines and the table also kept in the run's log.txt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table


class RunConsole:
    def __init__(self, log_path: Path, terminal: Console | None = None):
        self.terminal = terminal or Console()
        self._log = open(log_path, "a")
        self._file = Console(file=self._log, width=110, no_color=True, highlight=False)
        self._progress: Progress | None = None
        self._task = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.terminal.print(*objects, **kwargs)
        self._file.print(*objects, **kwargs)
        self._log.flush()

    def log_only(self, text: str) -> None:
        """Into log.txt, not onto the terminal: long lists a user looks up later."""
        self._log.write(text + "\n")
        self._log.flush()

    def start_progress(self, epochs: int, steps_per_epoch: int, done_steps: int = 0) -> None:
        self._progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/" + str(epochs)),
            BarColumn(),
            TextColumn("step {task.completed}/{task.total}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("lr {task.fields[lr]}"),
            TextColumn("{task.fields[speed]} img/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.terminal,
            transient=True,
        )
        self._task = self._progress.add_task(
            "train",
            total=epochs * steps_per_epoch,
            completed=done_steps,
            epoch=1,
            loss="-",
            lr="-",
            speed="-",
        )
        self._progress.start()

    def step(self, info: dict[str, Any]) -> None:
        """log_step hook: move the bar to the reported step."""
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=info["step"],
                epoch=info["epoch"],
                loss=f"{info['loss']:.4f}",
                lr=f"{info['lr']:.2e}",
                speed=f"{info['images_per_second']:,.0f}",
            )

    def epoch(self, m: dict[str, Any]) -> None:
        self.print(
            f"epoch {m['epoch']:>3}  train_loss {m['train_loss']:.4f}  "
            f"train_acc {m['train_acc']:.2%}  val_loss {m['val_loss']:.4f}  "
            f"val_acc {m['val_acc']:.2%}  lr {m['lr']:.2e}  {m['seconds']:.1f}s",
            highlight=False,
            soft_wrap=True,
        )

    def stop_progress(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def final_table(self, summary: dict[str, Any]) -> None:
        table = Table(title="run summary", show_header=False, title_justify="left")
        table.add_column("what", style="bold")
        table.add_column("value")
        rows = [("status", summary["status"]), *summary_rows(summary)]
        for finding in summary["diagnosis"]:
            where = f" (epochs {finding['epochs']})" if finding.get("epochs") else ""
            rows.append((finding["kind"] + where, f"{finding['message']}; {finding['advice']}"))
        for what, value in rows:
            table.add_row(what, value)
        self.print(table)

    def close(self) -> None:
        self.stop_progress()
        self._log.close()


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """The key numbers of a summary.json as (label, text): the end-of-run table and the HTML
    report show the same. Missing keys (a run still going) read "-"."""
    pct = "{:.2%}".format
    best = _maybe(summary.get("best_val_acc"), pct)
    if summary.get("best_epoch") and summary.get("best_val_acc") is not None:
        best += f" (epoch {summary['best_epoch']})"
    return [
        ("best val acc", best),
        ("final val acc", _maybe(summary.get("final_val_acc"), pct)),
        ("test acc", _maybe(summary.get("test_acc"), pct)),
        ("epochs", str(summary.get("epochs_run", "-"))),
        ("train time", _maybe(summary.get("train_seconds"), "{:.1f} s".format)),
        ("images/s", _maybe(summary.get("images_per_second"), "{:,.0f}".format)),
        ("device", str(summary.get("device", "-"))),
    ]


def _maybe(value: float | None, fmt) -> str:
    return "-" if value is None else fmt(value)
