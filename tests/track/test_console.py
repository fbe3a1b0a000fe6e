"""track.console.RunConsole: what a run prints when stdout is a file (plain progress lines on
a clock, nothing folded at 80 columns) and what log.txt keeps."""

import io
import re

import pytest
from rich.console import Console

from cnnlab.config import load_config
from cnnlab.track.console import RunConsole

STEP = {"epoch": 1, "loss": 0.61234, "lr": 2e-3, "images_per_second": 1234.5}
SUMMARY = {
    "status": "completed",
    "best_val_acc": 0.9,
    "best_epoch": 2,
    "epochs_run": 2,
    "diagnosis": [
        {
            "kind": "overfitting",
            "epochs": "3-9",
            "message": "val_loss rose from 0.31 (epoch 3) to 0.45 (epoch 9) " + "x" * 100,
            "advice": "add augmentation (augment.train, e.g. [{op: crop, padding: 4}])",
        }
    ],
}


class Clock:
    """Seconds that move only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def piped(tmp_path, clock=None) -> tuple[RunConsole, io.StringIO]:
    out = io.StringIO()  # not a terminal, as stdout redirected to a file
    console = RunConsole(tmp_path / "log.txt", Console(file=out, width=80), clock or Clock())
    return console, out


def test_piped_output_gets_a_plain_progress_line_every_30_s(tmp_path):
    clock = Clock()
    console, out = piped(tmp_path, clock)
    console.start_progress(epochs=2, steps_per_epoch=100)
    for step, seconds in [(10, 5), (20, 29.9), (50, 30), (60, 45), (90, 60.5)]:
        clock.now = 1000.0 + seconds
        console.step(STEP | {"step": step})
    console.stop_progress()
    console.close()
    lines = out.getvalue().splitlines()
    # the pace from the first report (step 10 at 5 s): at 30 s, 40 steps in 25 s, so the 150
    # steps left take 94 s; at 60.5 s, 80 steps in 55.5 s, 110 left: 76 s
    assert lines == [
        "epoch 1/2  step 50/200  loss 0.6123  lr 2.00e-03  1,234 img/s  ETA 0:01:34",
        "epoch 1/2  step 90/200  loss 0.6123  lr 2.00e-03  1,234 img/s  ETA 0:01:16",
    ]
    assert RunConsole.PLAIN_EVERY == 30.0
    assert (tmp_path / "log.txt").read_text() == ""  # the live bar's stand-in stays out of it


def test_a_resumed_run_estimates_from_its_own_steps(tmp_path):
    clock = Clock()
    console, out = piped(tmp_path, clock)
    console.start_progress(epochs=4, steps_per_epoch=100, done_steps=200)
    clock.now += 10
    console.step(STEP | {"epoch": 3, "step": 210})  # the first report after the resume
    clock.now += 30
    console.step(STEP | {"epoch": 3, "step": 240})  # 30 steps in 30 s, 160 left
    assert (
        out.getvalue()
        .strip()
        .endswith("step 240/400  loss 0.6123  lr 2.00e-03  1,234 img/s  ETA 0:02:40")
    )


def test_a_terminal_gets_the_live_bar_and_no_plain_lines(tmp_path):
    clock = Clock()
    out = io.StringIO()
    terminal = Console(file=out, force_terminal=True, width=120)
    console = RunConsole(tmp_path / "log.txt", terminal, clock)
    console.start_progress(epochs=2, steps_per_epoch=100)
    clock.now += 100
    console.step(STEP | {"step": 50})
    console.stop_progress()
    # the bar's columns are one space apart; the plain line's two
    assert "step 50/200 loss" in out.getvalue() and "  step 50/200  loss" not in out.getvalue()


def test_nothing_is_folded_at_80_columns_when_piped(tmp_path, capsys):
    console = RunConsole(tmp_path / "log.txt")  # stdout is captured: not a terminal
    header = "fashion-mnist: 60000 train / 10000 val images, 10 classes, 1×28×28 | " + "y" * 60
    console.print(header, highlight=False)
    console.final_table(SUMMARY)
    console.close()
    finding = (
        f"overfitting (epochs 3-9): {SUMMARY['diagnosis'][0]['message']}; "
        + (SUMMARY["diagnosis"][0]["advice"])
    )
    for text in (capsys.readouterr().out, (tmp_path / "log.txt").read_text()):
        lines = text.splitlines()
        assert header in lines and finding in lines, text  # each whole, on one line
        assert any(re.match(r"│ best val acc\s+│ 90.00% \(epoch 2\)\s+│", line) for line in lines)


def test_a_run_without_findings_says_so(tmp_path):
    console, out = piped(tmp_path)
    console.final_table(SUMMARY | {"diagnosis": []})
    console.close()
    assert "diagnosis: no findings" in out.getvalue().splitlines()
    assert "diagnosis: no findings" in (tmp_path / "log.txt").read_text().splitlines()


@pytest.mark.slow
def test_a_short_training_piped_shows_progress_and_says_it_is_too_short(
    tmp_path, capsys, monkeypatch
):
    from cnnlab.training.experiment import train

    monkeypatch.setattr(RunConsole, "PLAIN_EVERY", 0.0)  # a line at every logging point
    config = load_config(overrides=["train.epochs=2", "model.width=8", f"run.dir={tmp_path}"])
    result = train(config)
    shown = capsys.readouterr().out.splitlines()
    progress = [line for line in shown if re.match(r"epoch [12]/2  step \d+/\d+  loss ", line)]
    # the first report is where the pace is measured from: no estimate yet
    assert progress[0].endswith("img/s  ETA -") and len(progress) > 2
    assert all(re.search(r"img/s  ETA \d+:\d\d:\d\d$", p) for p in progress[1:])
    log = (result.path / "log.txt").read_text().splitlines()
    assert not [line for line in log if "ETA" in line]
    too_short = [line for line in log if line.startswith("too_short (epochs 1-2): only 2 epochs")]
    assert len(too_short) == 1 and too_short[0] in shown
    assert result.summary["diagnosis"][-1]["kind"] == "too_short"
