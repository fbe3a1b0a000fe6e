"""Command line: parse arguments, call one function per command, map outcomes to exit codes.

Exit codes: 0 success (completed or early-stopped), 2 user error (one line, no traceback unless
--debug), 3 the run diverged, 130 interrupted with Ctrl-C, 1 a bug (traceback shown).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cnnlab.errors import CnnlabError, ConfigError

EXIT_USER_ERROR = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 130


def _config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config file; repeat to layer several (later files win)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override any key, e.g. optim.lr=0.01 model.name=mlp recipe=default",
    )


def _parser() -> argparse.ArgumentParser:
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of errors",
    )
    parser = argparse.ArgumentParser(
        prog="cnnlab",
        parents=[debug],
        description="Train, track and compare image classifiers on small datasets.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", parents=[debug], help="train a model; writes a run dir")
    _config_args(train)
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue that run from its last checkpoint (overrides: train.epochs, "
        "train.max_minutes, train.device)",
    )
    train.set_defaults(func=cmd_train)

    lr_find = commands.add_parser(
        "lr-find",
        parents=[debug],
        help="LR range test: loss vs an exponentially growing lr, plot and suggestion",
    )
    _config_args(lr_find)
    lr_find.add_argument("--start-lr", type=float, default=1e-7, metavar="LR")
    lr_find.add_argument("--end-lr", type=float, default=10.0, metavar="LR")
    lr_find.add_argument("--steps", type=int, default=200, help="steps of the sweep (default 200)")
    lr_find.add_argument(
        "-o", "--output", metavar="DIR", help="for lr_find.png/json (default: <run.dir>/lr-find)"
    )
    lr_find.set_defaults(func=cmd_lr_find)

    config = commands.add_parser("config", help="show resolved configs and recipes")
    config_commands = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = config_commands.add_parser(
        "show", parents=[debug], help="print the resolved config as YAML"
    )
    _config_args(show)
    show.set_defaults(func=cmd_config_show)
    recipes = config_commands.add_parser("recipes", parents=[debug], help="list shipped recipes")
    recipes.set_defaults(func=cmd_config_recipes)
    data = commands.add_parser("data", help="inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    info = data_commands.add_parser(
        "info", parents=[debug], help="classes, counts per split, size, mean/std, sample grid"
    )
    info.add_argument("dataset", metavar="NAME_OR_PATH", help="a data.name or a dataset path")
    info.add_argument(
        "-o", "--output", metavar="PNG", help="sample grid file (default: <name>-samples.png)"
    )
    _config_args(info)
    info.set_defaults(func=cmd_data_info)
    summary = commands.add_parser(
        "summary", parents=[debug], help="per-layer table of the configured model"
    )
    _config_args(summary)
    summary.set_defaults(func=cmd_summary)

    aug = commands.add_parser("augment", help="look at augmentations")
    aug_commands = aug.add_subparsers(dest="augment_command", required=True, metavar="ACTION")
    preview = aug_commands.add_parser(
        "preview", parents=[debug], help="grid of training images × augmented draws"
    )
    preview.add_argument("-o", "--output", metavar="PNG", default="augment-preview.png")
    preview.add_argument("--images", type=int, default=8, help="training images (rows)")
    preview.add_argument("--draws", type=int, default=8, help="augmented draws per image")
    _config_args(preview)
    preview.set_defaults(func=cmd_augment_preview)
    return parser


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)
    from cnnlab import data, models

    info = data.build(config.data).info  # the model's input: channels, size, classes
    model = models.build(config.model, info.num_classes, info.channels, info.image_size)
    print(f"{config.model.name} on {info.name}: {info.num_classes} classes")
    print(models.summarize(model, (info.channels, *info.image_size)).table())
    return 0


def cmd_augment_preview(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)
    import torch

    from cnnlab import augment, data
    from cnnlab.augment.preview import write_preview

    bundle = data.build(config.data)
    info = bundle.info
    pipeline = augment.build(config.augment, info.num_classes, info.channels, info.image_size)
    chosen = torch.randperm(len(bundle.train), generator=torch.Generator().manual_seed(0))
    index = chosen[: max(1, args.images)]
    train = bundle.train
    write_preview(
        train.images[index],
        train.labels[index],
        info.classes,
        pipeline,
        Path(args.output),
        draws=max(1, args.draws),
    )
    print(f"augment preview: {args.output}")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.config import load_config
    from cnnlab.data.detect import guess_source
    from cnnlab.data.registry import SOURCES

    if args.dataset in SOURCES:
        chosen = [f"data.name={args.dataset}"]
    else:
        path = Path(args.dataset)
        chosen = [f"data.name={guess_source(path)}", f"data.root={path}"]
    config = load_config(args.config, [*chosen, *args.overrides])
    from rich.console import Console

    from cnnlab import data
    from cnnlab.data import info

    bundle = data.build(config.data)
    console = Console()
    info.show(bundle, console)
    grid = Path(args.output or f"{config.data.name}-samples.png")
    info.write_sample_grid(bundle, grid)
    console.print(f"sample grid: {grid}", soft_wrap=True, highlight=False, markup=False)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        if args.config:
            raise ConfigError("--resume continues a run with its own config; drop -c/--config")
        from cnnlab.train.experiment import resume

        return _exit_code(resume(args.resume, args.overrides).status)
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)  # before importing torch: errors come fast
    from cnnlab.train.experiment import train

    return _exit_code(train(config).status)


def cmd_lr_find(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)
    from cnnlab.train import lr_find

    print(f"lr sweep {args.start_lr:g} -> {args.end_lr:g} over up to {args.steps} steps ...")
    result = lr_find.find_lr(config, start_lr=args.start_lr, end_lr=args.end_lr, steps=args.steps)
    png_dir = Path(args.output) if args.output else Path(config.run.dir) / "lr-find"
    json_path, png_path = lr_find.write(result, png_dir)
    if result.suggested_lr is None:
        print("no suggestion: the loss never fell over the sweep; widen --start-lr/--end-lr")
    else:
        print(f"suggested lr: {result.suggested_lr:.3g}  (steepest descent of the loss)")
    print(f"lowest loss at lr {result.min_loss_lr:.3g}; plot: {png_path}; data: {json_path}")
    return 0


def _exit_code(status: str) -> int:
    return {"diverged": EXIT_DIVERGED, "interrupted": EXIT_INTERRUPTED}.get(status, 0)


def cmd_config_show(args: argparse.Namespace) -> int:
    from cnnlab.config import dump_yaml, load_config

    print(dump_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def cmd_config_recipes(args: argparse.Namespace) -> int:
    from cnnlab.config import recipe_names

    print("\n".join(recipe_names()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # argparse hands positionals that follow an option (`-o g.png optim.lr=1`) back as extras;
    # key=value ones are overrides wherever they stand.
    if extra and hasattr(args, "overrides") and all("=" in e and e[0] != "-" for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    debug = getattr(args, "debug", False)
    try:
        return args.func(args)
    except CnnlabError as e:
        if debug:
            raise
        print(f"cnnlab: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        if debug:
            raise
        print("cnnlab: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
