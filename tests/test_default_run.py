"""The acceptance run: `cnnlab train` with no arguments on the embedded digits set."""

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_default_recipe_reaches_95_percent_on_digits(tmp_path):
    # Run from an empty directory exactly as a user would: no arguments at all.
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab", "train"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    run = Path(proc.stdout.strip().splitlines()[-1].removeprefix("run: "))
    assert run.parent == Path("runs")  # default run.dir, relative to where the user stands
    summary = json.loads((tmp_path / run / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["final_val_acc"] >= 0.95 and summary["best_val_acc"] >= 0.95
