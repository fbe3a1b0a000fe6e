"""cnnlab list [models|data|ops|optimizers|schedules|recipes]: what each registry holds, with a
line about each entry and the options it takes (like timm's list_models)."""

from __future__ import annotations

import argparse
import inspect

KINDS = ("models", "data", "ops", "optimizers", "schedules", "recipes")


def cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from cnnlab.errors import ConfigError
    from cnnlab.registry import did_you_mean

    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(
                f"cnnlab list {kind}: unknown kind{did_you_mean(kind, list(KINDS))}"
                f" (valid: {', '.join(KINDS)})"
            )
    console = Console() if Console().is_terminal else Console(width=250)
    for kind in kinds:
        key, rows = ENTRIES[kind]()
        table = Table(title=f"{kind} ({key})", title_justify="left", box=None, pad_edge=False)
        for column in ("name", "about", "options"):
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*map(Text, row))  # Text: "[i]" in a docstring is not markup
        console.print(table)
        console.print()
    return 0


def _about(obj: object) -> str:
    """The first sentence of an entry's docstring."""
    doc = inspect.getdoc(obj) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.split(". ")[0].rstrip(".")


def _about_and_keys(obj: object) -> tuple[str, str]:
    """A docstring "What it is: the keys it reads." as (about, keys)."""
    about, _, keys = _about(obj).partition(": ")
    return about, keys


def _models() -> tuple[str, list[tuple[str, str, str]]]:
    from cnnlab import models
    from cnnlab.config.schema import ModelConfig

    rows = []
    for name in models.MODELS:
        builder = models.MODELS.get(name)
        options = [
            p for p in inspect.signature(builder).parameters if p in ModelConfig.model_fields
        ]
        rows.append((name, _about(builder), ", ".join(f"model.{o}" for o in options)))
    rows.append(("torchvision:NAME", "a torchvision classifier, untrained", ""))
    rows.append(("timm:NAME", "a timm model, untrained", "model.dropout"))
    return "model.name", rows


def _data() -> tuple[str, list[tuple[str, str, str]]]:
    from cnnlab import data

    return "data.name", [(n, _about(data.SOURCES.get(n)), "") for n in data.SOURCES]


def _ops() -> tuple[str, list[tuple[str, str, str]]]:
    from cnnlab import augment  # noqa: F401  (registers the ops)
    from cnnlab.augment.registry import OPS

    rows = []
    for name in OPS:
        op = OPS.get(name)
        params = [
            f"{p.name}={p.default!r}"
            for p in inspect.signature(op).parameters.values()
            if p.default is not inspect.Parameter.empty
        ]
        rows.append((name, _about(op), ", ".join(params)))
    return "augment.train[].op", rows


def _optimizers() -> tuple[str, list[tuple[str, str, str]]]:
    from cnnlab.training.optim import OPTIMIZERS

    rows = []
    for name in OPTIMIZERS:
        rows.append((name, *_about_and_keys(OPTIMIZERS.get(name))))
    return "optim.name", rows


def _schedules() -> tuple[str, list[tuple[str, str, str]]]:
    from cnnlab.training.schedule import SCHEDULES

    rows = []
    for name in SCHEDULES:
        shape = SCHEDULES.get(name)
        per = "per epoch" if shape.per_epoch else "per step"
        about, keys = _about_and_keys(shape.lr)
        rows.append((name, f"{about} ({per})", keys))
    return "schedule.name", rows


def _recipes() -> tuple[str, list[tuple[str, str, str]]]:
    from importlib import resources

    from cnnlab.config import recipe_names

    rows = []
    for name in recipe_names():
        text = (resources.files("cnnlab.config") / "recipes" / f"{name}.yaml").read_text()
        head = []  # the comment block the recipe starts with
        for line in text.splitlines():
            if not line.startswith("#"):
                break
            head.append(line.lstrip("# "))
        about = " ".join(head).removeprefix(f"{name}: ").split(". ")[0].split("; ")[0]
        rows.append((name, about.rstrip("."), ""))
    return "recipe", rows


ENTRIES = {
    "models": _models,
    "data": _data,
    "ops": _ops,
    "optimizers": _optimizers,
    "schedules": _schedules,
    "recipes": _recipes,
}
