"""Read run directories back: what every command other than `train` works from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cnnlab.errors import CnnlabError


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any]  # the resolved config.yaml
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]  # one entry per epoch


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not (path / "config.yaml").is_file():
        raise CnnlabError(f"{path}: not a run directory (no config.yaml)")
    try:
        config = yaml.safe_load((path / "config.yaml").read_text())
        summary_file = path / "summary.json"
        summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
        metrics_file = path / "metrics.jsonl"
        lines = metrics_file.read_text().splitlines() if metrics_file.exists() else []
        metrics = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise CnnlabError(f"{path}: unreadable run directory ({e})") from None
    return Run(path=path, config=config, summary=summary, metrics=metrics)
