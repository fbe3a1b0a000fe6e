"""Config values in a few words, for run names and tables (no torch: `runs list` stays fast),
and the timestamp that starts every run directory's name."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

RUN_STAMP = "%Y%m%d-%H%M%S"  # <run.dir>/<RUN_STAMP>-<name>/: sorts by start time, survives copies
_STAMP = re.compile(r"^\d{8}-\d{6}(?=-|$)")


def run_stamp() -> str:
    """Now, as the prefix of a new run directory's name."""
    return time.strftime(RUN_STAMP)


def run_started(path: Path) -> datetime | None:
    """When the run in `path` started: from its name (20261123-152246-...), else when its
    config.yaml was written; None when neither can be read (deleted while listing)."""
    stamp = _STAMP.match(path.name)
    if stamp:
        try:
            return datetime.strptime(stamp.group(), RUN_STAMP)
        except ValueError:  # 20261399-...: digits, but not a date
            pass
    try:
        return datetime.fromtimestamp((path / "config.yaml").stat().st_mtime)
    except OSError:
        return None


def without_stamp(name: str) -> str:
    """'20261123-101500-digits-cnn' -> 'digits-cnn'."""
    return _STAMP.sub("", name).removeprefix("-") or name


def backbone_label(spec: str) -> str:
    """model.backbone in a few words: 'torchvision:resnet18', or the run's name without its
    timestamp ('digits-cnn' for runs/20261123-101500-digits-cnn/checkpoints/best.safetensors)."""
    if ":" in spec:
        return spec
    path = Path(spec)
    if path.parent.name == "checkpoints":
        path = path.parent.parent
    return without_stamp(path.name)
