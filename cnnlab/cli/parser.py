"""The argument parser: one sub-command per function in the *_commands modules."""

from __future__ import annotations

import argparse

from cnnlab.cli import complete
from cnnlab.cli.inspect_commands import (
    cmd_augment_preview,
    cmd_config_recipes,
    cmd_config_show,
    cmd_data_info,
    cmd_eval,
    cmd_robustness,
    cmd_summary,
    cmd_viz,
)
from cnnlab.cli.list_command import KINDS, cmd_list
from cnnlab.cli.runs_commands import (
    LIST_LIMIT,
    cmd_report,
    cmd_runs_compare,
    cmd_runs_export,
    cmd_runs_list,
    cmd_runs_plot,
)
from cnnlab.cli.sweep_commands import add_parser as add_sweep_parser
from cnnlab.cli.train_commands import cmd_lr_find, cmd_train, cmd_transfer
from cnnlab.config.defaults import EVAL, LR_FIND, RUN_DIR


def _config_args(
    parser: argparse.ArgumentParser, example: str = "optim.lr=0.01 model.name=mlp recipe=default"
) -> None:
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
        help=f"override any key, e.g. {example}",
    ).completer = complete.overrides  # what TAB offers (argcomplete reads .completer)


def build_parser() -> argparse.ArgumentParser:
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
    parser.add_argument("--version", action=_Version, help="show cnnlab's version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # in the order of `cnnlab --help`
    for add in (
        _train_parsers,
        _lr_find_parser,
        _eval_parser,
        _config_parser,
        _augment_parser,
        _list_parser,
        _report_parser,
        _runs_parser,
        _inspect_parser,
        add_sweep_parser,
    ):
        add(commands, debug)
    return parser


def _train_parsers(commands, debug: argparse.ArgumentParser) -> None:
    """train and transfer: a new run, --resume, --seeds, --nproc."""
    for name, summary, func in (
        ("train", "train a model; writes a run dir", cmd_train),
        (
            "transfer",
            "train on model.backbone (a run, checkpoint, torchvision:NAME, timm:NAME) + transfer.*",
            cmd_transfer,
        ),
    ):
        train = commands.add_parser(name, parents=[debug], help=summary)
        if name == "transfer":
            _config_args(train, "model.backbone=runs/RUN transfer.freeze=false")
        else:
            _config_args(train)
        train.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue that run from its last checkpoint (overrides: train.epochs, "
            "train.max_minutes, train.device)",
        )
        train.add_argument(
            "--seeds",
            metavar="N|A,B,C",
            help="train N seeds from train.seed on (or these seeds) into one group folder; "
            "prints each metric's mean ± std",
        )
        train.add_argument(
            "--nproc",
            type=_positive,
            metavar="N",
            help="train on N processes of this machine (data-parallel, one per GPU; torchrun's "
            "agent): train.batch_size is the global batch, split over them",
        )
        train.set_defaults(func=func)


def _lr_find_parser(commands, debug: argparse.ArgumentParser) -> None:
    lr_find = commands.add_parser(
        "lr-find",
        parents=[debug],
        help="LR range test: loss vs an exponentially growing lr, plot and suggestion",
    )
    _config_args(lr_find)
    lr_find.add_argument(
        "--start-lr",
        type=float,
        default=LR_FIND.start_lr,
        metavar="LR",
        help=f"the sweep's first lr (default {LR_FIND.start_lr:g})",
    )
    lr_find.add_argument(
        "--end-lr",
        type=float,
        default=LR_FIND.end_lr,
        metavar="LR",
        help=f"its last lr, grown exponentially (default {LR_FIND.end_lr:g})",
    )
    lr_find.add_argument(
        "--steps",
        type=int,
        default=LR_FIND.steps,
        help=f"optimizer steps of the sweep, >= 10 (default {LR_FIND.steps})",
    )
    lr_find.add_argument(
        "-o", "--output", metavar="DIR", help="for lr_find.png/json (default: <run.dir>/lr-find)"
    )
    lr_find.set_defaults(func=cmd_lr_find)


def _eval_parser(commands, debug: argparse.ArgumentParser) -> None:
    evaluate = commands.add_parser(
        "eval",
        parents=[debug],
        help="a run's best weights on val/test: accuracy, top-k, per-class, confusion, worst",
    )
    evaluate.add_argument("run", metavar="RUN", help="a run directory")
    # No `choices`: a wrong split is a one-line error (from the run), like every other.
    evaluate.add_argument("--split", default="val", help="val or test (default: val)")
    evaluate.add_argument(
        "--tta",
        action="store_true",
        help="average over the run's augment.tta views (a mirror if it trained with flips)",
    )
    evaluate.add_argument(
        "--top-k", type=int, default=EVAL.top_k, metavar="K", help=f"default {EVAL.top_k}"
    )
    evaluate.add_argument(
        "--worst",
        type=int,
        default=EVAL.worst,
        metavar="N",
        help=f"highest-loss images to show ({EVAL.worst})",
    )
    evaluate.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a data.* key of the run's config, e.g. --data data.root=/elsewhere; repeat",
    )
    evaluate.add_argument("--device", help="default: the run's train.device")
    evaluate.set_defaults(func=cmd_eval)


def _config_parser(commands, debug: argparse.ArgumentParser) -> None:
    """config show|recipes, data info, summary: what a config resolves to, before training."""
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


def _augment_parser(commands, debug: argparse.ArgumentParser) -> None:
    aug = commands.add_parser("augment", help="look at augmentations")
    aug_commands = aug.add_subparsers(dest="augment_command", required=True, metavar="ACTION")
    preview = aug_commands.add_parser(
        "preview", parents=[debug], help="grid of training images × augmented draws"
    )
    preview.add_argument(
        "-o",
        "--output",
        metavar="PNG",
        default="augment-preview.png",
        help="the grid's file (default: augment-preview.png)",
    )
    preview.add_argument("--images", type=int, default=8, help="training images (rows)")
    preview.add_argument("--draws", type=int, default=8, help="augmented draws per image")
    _config_args(preview)
    preview.set_defaults(func=cmd_augment_preview)


def _list_parser(commands, debug: argparse.ArgumentParser) -> None:
    listing = commands.add_parser(
        "list",
        parents=[debug],
        help="what there is to choose from: models, data, ops, optimizers, schedules, recipes",
    )
    kind = listing.add_argument(
        "kind", nargs="?", metavar="KIND", help=f"one of {', '.join(KINDS)}"
    )
    kind.completer = lambda **_: list(KINDS)
    listing.set_defaults(func=cmd_list)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


class _Version(argparse.Action):
    """--version, read from the installed package's metadata only when asked (importlib.metadata
    is ~40 ms of every start otherwise)."""

    def __init__(self, option_strings, dest, help=None):  # noqa: A002 (argparse's name)
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("cnnlab")
        except PackageNotFoundError:  # run from a source tree that was never installed
            text = "unknown"
        print(f"cnnlab {text}")
        parser.exit()


def _inspect_parser(commands, debug: argparse.ArgumentParser) -> None:
    """robustness and viz: commands over a finished run's best weights."""
    robust = commands.add_parser(
        "robustness",
        parents=[debug],
        help="accuracy under 13 corruptions at severities 1-5, mean corruption error",
    )
    robust.add_argument("run", metavar="RUN", help="a run directory")
    robust.add_argument("--split", help="val or test (default: test if the dataset has one)")
    robust.add_argument("--device", help="default: the run's train.device")
    robust.add_argument("--only", metavar="A,B", help="just these corruptions, comma-separated")
    robust.add_argument(
        "--limit", type=int, metavar="N", help="the first N images only (quicker, noisier)"
    )
    robust.add_argument("--batch-size", type=int, metavar="N", help="default: eval.batch_size")
    robust.add_argument(
        "--precision",
        default="auto",
        metavar="P",
        help="fp32, bf16 or fp16 autocast (default auto: the run's, bf16 on an AMX CPU)",
    )
    robust.set_defaults(func=cmd_robustness)

    viz = commands.add_parser("viz", help="look inside a trained model (PNGs in the run dir)")
    what = viz.add_subparsers(dest="viz_command", required=True, metavar="WHAT")
    filters = what.add_parser("filters", parents=[debug], help="first-layer filters as a grid")
    gradcam = what.add_parser(
        "gradcam", parents=[debug], help="Grad-CAM overlays for the predicted class"
    )
    gradcam.add_argument("--n", type=int, default=16, help="validation images (default 16)")
    gradcam.add_argument("--layer", metavar="NAME", help="default: the last Conv2d")
    acts = what.add_parser("activations", parents=[debug], help="a layer's feature maps")
    acts.add_argument("--layer", metavar="NAME", required=True, help="as in `cnnlab summary`")
    acts.add_argument("--n", type=int, default=4, help="validation images (default 4)")
    for sub in (filters, gradcam, acts):
        sub.add_argument("run", metavar="RUN", help="a run directory")
        sub.add_argument("--device", help="default: the run's train.device")
        sub.set_defaults(func=cmd_viz)


def _report_parser(commands, debug: argparse.ArgumentParser) -> None:
    report = commands.add_parser(
        "report", parents=[debug], help="one self-contained HTML page for runs or a sweep"
    )
    report.add_argument("targets", nargs="+", metavar="RUN_OR_SWEEP")
    report.add_argument(
        "-o",
        "--output",
        metavar="HTML",
        help="default: <run>/report.html for one run, ./report.html for several",
    )
    report.set_defaults(func=cmd_report)


def _runs_parser(commands, debug: argparse.ArgumentParser) -> None:
    """runs list|compare|plot|export: over a folder of run directories (--root)."""
    runs = commands.add_parser("runs", help="list, compare, plot and export run directories")
    actions = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument(
        "--root",
        default=RUN_DIR,
        help=f"folder of run directories (default: run.dir's default, {RUN_DIR})",
    )
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose config or summary key has this value (YAML-parsed; also !=, >, "
        ">=, <, <=); repeat to require all, e.g. --filter optim.name=sgd --filter 'test_acc>0.9'",
    ).completer = complete.overrides

    _runs_list_parser(actions, [debug, root, filters])
    _runs_compare_parsers(actions, [debug, root])
    _runs_export_parser(actions, [debug, root, filters])


def _runs_compare_parsers(actions, parents: list[argparse.ArgumentParser]) -> None:
    run_args = argparse.ArgumentParser(add_help=False)
    run_args.add_argument(
        "runs", nargs="+", metavar="RUN", help="run directories (or their names under --root)"
    )
    compare = actions.add_parser(
        "compare",
        parents=[*parents, run_args],
        help="the config keys that differ and the results, one column per run",
        description="The config keys that differ and the results, one column per run. Runs "
        "whose configs are equal apart from train.seed, run.name and run.dir (seeds of one "
        "experiment) share one column: its numbers are mean ± std (sample std) over them, "
        "its header gives their count (n=3), its train.seed row the seeds.",
    )
    compare.add_argument(
        "--each", action="store_true", help="one column per run, even for seeds of one config"
    )
    compare.set_defaults(func=cmd_runs_compare)

    plot = actions.add_parser(
        "plot", parents=[*parents, run_args], help="per-epoch curves of runs on one figure"
    )
    plot.add_argument(
        "--metric",
        default="loss",
        help="a metrics.jsonl key (val_acc, lr, ...); loss or acc: train and val together "
        "(default: loss)",
    )
    plot.add_argument("--log", action="store_true", help="logarithmic y axis")
    plot.add_argument(
        "-o", "--output", metavar="PNG", default="curves.png", help="in an existing folder"
    )
    plot.set_defaults(func=cmd_runs_plot)


def _runs_export_parser(actions, parents: list[argparse.ArgumentParser]) -> None:
    export = actions.add_parser(
        "export",
        parents=parents,
        help="a CSV/Parquet table: one row per run (config keys and summary)",
    )
    export.add_argument(
        "--format", choices=["csv", "parquet"], help="default: from -o's suffix, else csv"
    )
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="in an existing folder (default: runs.csv, epochs.csv with --epochs); CSV is "
        "written row by row",
    )
    export.add_argument(
        "--epochs", action="store_true", help="one row per run and epoch: metrics.jsonl rows"
    )
    export.add_argument(
        "--mlflow",
        metavar="URI",
        help="upload the runs to MLflow instead, as track.mlflow logs a run: a folder, "
        "sqlite:///FILE or http://HOST:PORT (pip install cnnlab[mlflow]); runs already there "
        "are skipped",
    )
    export.set_defaults(func=cmd_runs_export)


def _runs_list_parser(actions, parents: list[argparse.ArgumentParser]) -> None:
    listing = actions.add_parser("list", parents=parents, help="a table of the runs under --root")
    listing.add_argument(
        "--sort",
        default="date",
        metavar="KEY",
        help="a summary key (test_acc), dotted config key (optim.lr) or column (time); "
        "accuracies and date sort best/newest first, others ascending (default: date)",
    )
    listing.add_argument("--reverse", action="store_true", help="flip the sort order")
    listing.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help=f"show the first N rows, 0 for all (default: {LIST_LIMIT} on a terminal, all when "
        "piped)",
    )
    listing.add_argument(
        "--group",
        action="store_true",
        help="one row per experiment: runs whose configs are equal apart from train.seed, "
        "run.name and run.dir, with mean ± std of their accuracies",
    )
    listing.set_defaults(func=cmd_runs_list)
