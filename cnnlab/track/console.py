"""What a run shows: a live progress bar on the terminal, epoch lines and an end-of-run table,
the lines and the table also kept in the run's log.txt.

When stdout is not a terminal (piped to a file, as on a cluster) there is no live bar: a plain
progress line every PLAIN_EVERY seconds takes its place, and nothing is folded at rich's default
80 columns."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

# Columns of a console that is not a terminal: a file or a pipe has no width to fit, and rich's
# 80 would fold the header line and the tables mid-word.
WIDE = 250
# A quiet run (cnnlab.train(..., quiet=True): a notebook, a sweep worker) prints nothing; its
# lines go to this logger at INFO instead, for an application that wants them.
LOG = logging.getLogger("cnnlab")


def output_console() -> Console:
    """A console for a command's output: the terminal's width, or WIDE columns when piped."""
    console = Console()
    return console if console.is_terminal else Console(width=WIDE)


class RunConsole:
    # Seconds between plain progress lines when the terminal is not one (a file in a cluster
    # job): often enough to see a run is alive, rare enough that a day's log stays readable.
    PLAIN_EVERY = 30.0

    def __init__(
        self,
        log_path: Path,
        terminal: Console | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.terminal = terminal or output_console()
        # rich animates a bar only on a terminal (or in Jupyter); elsewhere it shows nothing
        # until the end, and a transient bar not even then.
        self.live = self.terminal.is_terminal or self.terminal.is_jupyter
        self._log = open(log_path, "a")
        self._file = Console(file=self._log, width=WIDE, no_color=True, highlight=False)
        self._clock = clock  # seconds, monotonic; a test steps it by hand
        self._progress: Progress | None = None
        self._task = None
        self._plain: _PlainProgress | None = None

    def print(self, *objects: Any, **kwargs: Any) -> None:
        text = all(isinstance(o, str) for o in objects)
        # A line of text is never folded in a file: grep and a wide editor window see it whole.
        self.terminal.print(*objects, **({"soft_wrap": text} if not self.live else {}) | kwargs)
        self._file.print(*objects, **{"soft_wrap": text} | kwargs)
        self._log.flush()
        if text and self.terminal.quiet:
            LOG.info(" ".join(objects))

    def log_only(self, text: str) -> None:
        """Into log.txt, not onto the terminal: long lists a user looks up later."""
        self._log.write(text + "\n")
        self._log.flush()

    def start_progress(self, epochs: int, steps_per_epoch: int, done_steps: int = 0) -> None:
        if not self.live:
            self._plain = _PlainProgress(epochs, epochs * steps_per_epoch, last=self._clock())
            return
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
        """log_step hook: move the bar to the reported step, or, when not on a terminal, print
        a plain progress line once PLAIN_EVERY seconds have passed since the last one."""
        if self._progress is not None:
            self._progress.update(
                self._task,
                completed=info["step"],
                epoch=info["epoch"],
                loss=f"{info['loss']:.4f}",
                lr=f"{info['lr']:.2e}",
                speed=f"{info['images_per_second']:,.0f}",
            )
        elif self._plain is not None:
            line = self._plain.report(info, self._clock(), self.PLAIN_EVERY)
            if line is not None:
                # Onto the terminal only, like the live bar: log.txt keeps what a run concluded
                # (epoch lines, the table), the same whether or not stdout was a terminal.
                self.terminal.print(line, soft_wrap=True, highlight=False, markup=False)

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
        self._plain = None

    def final_table(self, summary: dict[str, Any]) -> None:
        """The key numbers as a table, and the diagnosis: in the table's rows on a terminal,
        as a line per finding below it in a file (log.txt, a piped stdout), where a line is
        never folded and grep finds a finding whole."""
        numbers = [("status", summary["status"]), *summary_rows(summary)]
        findings = [
            (
                f"{f['kind']} (epochs {f['epochs']})" if f.get("epochs") else f["kind"],
                f"{f['message']}; {f['advice']}",
            )
            for f in summary["diagnosis"]
        ] or [("diagnosis", "no findings")]
        lines = [f"{what}: {text}" for what, text in findings]
        plain = {"soft_wrap": True, "highlight": False, "markup": False}
        if self.live:
            self.terminal.print(_table(numbers + findings))
        else:
            self.terminal.print(_table(numbers))
            for line in lines:
                self.terminal.print(line, **plain)
        self._file.print(_table(numbers))
        for line in lines:
            self._file.print(line, **plain)
        self._log.flush()

    def close(self) -> None:
        self.stop_progress()
        self._log.close()


@dataclass
class _PlainProgress:
    """The plain stand-in for the bar; times in seconds of the console's clock."""

    epochs: int
    total: int  # steps of the whole run
    last: float  # when the last line was printed (or the progress started)
    # The first reported (step, time): the pace is measured from there, so that neither the
    # start-up nor the steps before a resume count.
    first: tuple[int, float] | None = None

    def report(self, info: dict[str, Any], now: float, every: float) -> str | None:
        """The progress line, once `every` seconds have passed since the last one."""
        if self.first is None:
            self.first = (info["step"], now)
        if now - self.last < every:
            return None
        self.last = now
        step, (step0, time0) = info["step"], self.first
        eta = "-"
        if step > step0:
            eta = str(
                timedelta(seconds=round((self.total - step) * (now - time0) / (step - step0)))
            )
        return (
            f"epoch {info['epoch']}/{self.epochs}  step {step}/{self.total}  "
            f"loss {info['loss']:.4f}  lr {info['lr']:.2e}  "
            f"{info['images_per_second']:,.0f} img/s  ETA {eta}"
        )


def _table(rows: list[tuple[str, str]]) -> Table:
    table = Table(title="run summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    for what, value in rows:
        table.add_row(what, Text(value))  # not markup: advice holds [lists]
    return table


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
