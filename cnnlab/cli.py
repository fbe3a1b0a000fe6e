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

    for name, summary, func in (
        ("train", "train a model; writes a run dir", cmd_train),
        (
            "transfer",
            "train with model.backbone=RUN|CHECKPOINT|torchvision:NAME|timm:NAME and transfer.*",
            cmd_transfer,
        ),
    ):
        train = commands.add_parser(name, parents=[debug], help=summary)
        _config_args(train)
        train.add_argument(
            "--resume",
            metavar="RUN_DIR",
            help="continue that run from its last checkpoint (overrides: train.epochs, "
            "train.max_minutes, train.device)",
        )
        train.set_defaults(func=func)

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
        help="average over the run's augment.tta views (a mirror if it configured none)",
    )
    evaluate.add_argument("--top-k", type=int, default=5, metavar="K", help="default 5")
    evaluate.add_argument(
        "--worst", type=int, default=16, metavar="N", help="highest-loss images to show (16)"
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
    _runs_parser(commands, debug)
    _inspect_parser(commands, debug)
    return parser


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


def _runs_parser(commands, debug: argparse.ArgumentParser) -> None:
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

    runs = commands.add_parser("runs", help="list, compare, plot and export run directories")
    actions = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    root = argparse.ArgumentParser(add_help=False)
    root.add_argument("--root", default="runs", help="folder of run directories (default: runs)")
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose config or summary key has this value (YAML-parsed; also !=, >, "
        ">=, <, <=); repeat to require all, e.g. --filter optim.name=sgd --filter 'test_acc>0.9'",
    )

    listing = actions.add_parser(
        "list", parents=[debug, root, filters], help="a table of the runs under --root"
    )
    listing.add_argument(
        "--sort",
        default="date",
        metavar="KEY",
        help="a summary key (test_acc), dotted config key (optim.lr) or column (time); "
        "accuracies and date sort best/newest first, others ascending (default: date)",
    )
    listing.add_argument("--reverse", action="store_true", help="flip the sort order")
    listing.add_argument("--limit", type=int, metavar="N", help="show the first N runs only")
    listing.set_defaults(func=cmd_runs_list)

    run_args = argparse.ArgumentParser(add_help=False)
    run_args.add_argument(
        "runs", nargs="+", metavar="RUN", help="run directories (or their names under --root)"
    )
    compare = actions.add_parser(
        "compare",
        parents=[debug, root, run_args],
        help="the config keys that differ and the results, one column per run",
    )
    compare.set_defaults(func=cmd_runs_compare)

    plot = actions.add_parser(
        "plot", parents=[debug, root, run_args], help="per-epoch curves of runs on one figure"
    )
    plot.add_argument(
        "--metric",
        default="loss",
        help="a metrics.jsonl key (val_acc, lr, ...); loss or acc: train and val together "
        "(default: loss)",
    )
    plot.add_argument("--log", action="store_true", help="logarithmic y axis")
    plot.add_argument("-o", "--output", metavar="PNG", default="curves.png")
    plot.set_defaults(func=cmd_runs_plot)

    export = actions.add_parser(
        "export",
        parents=[debug, root, filters],
        help="a CSV/Parquet table: one row per run (config keys and summary)",
    )
    export.add_argument(
        "--format", choices=["csv", "parquet"], help="default: from -o's suffix, else csv"
    )
    export.add_argument(
        "-o", "--output", metavar="FILE", help="default: runs.csv (epochs.csv with --epochs)"
    )
    export.add_argument(
        "--epochs", action="store_true", help="one row per run and epoch: metrics.jsonl rows"
    )
    export.set_defaults(func=cmd_runs_export)


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)
    from cnnlab import data, models
    from cnnlab.train.backbone import build_model, load_backbone

    info = data.build(config.data).info  # the model's input: channels, size, classes
    if config.model.backbone is not None:  # the uncut backbone: where transfer.layer may cut
        source = load_backbone(config.model.backbone, weights=False)
        print(f"backbone {source.name} (transfer.layer: a # or layer of this table)")
        print(models.summarize(source.net, (source.channels, *source.image_size)).table())
        print()
    model = build_model(config, info, weights=False)  # the shape is all a summary needs
    name = "transfer net" if config.model.backbone else config.model.name
    print(f"{name} on {info.name}: {info.num_classes} classes")
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
        from cnnlab.train.resume import resume

        return _exit_code(resume(args.resume, args.overrides).status)
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)  # before importing torch: errors come fast
    from cnnlab.train.experiment import train

    return _exit_code(train(config).status)


def cmd_transfer(args: argparse.Namespace) -> int:
    """`cnnlab train`, for configs that reuse a trained net: saying so catches a forgotten key."""
    if args.resume is None:
        from cnnlab.config import load_config

        if load_config(args.config, args.overrides).model.backbone is None:
            raise ConfigError(
                "cnnlab transfer needs model.backbone=RUN_DIR, a checkpoint file, "
                "torchvision:NAME or timm:NAME (or use cnnlab train)"
            )
    return cmd_train(args)


def _model_cell(name: object, backbone: object) -> str:
    """A transfer run is its backbone ("from digits-cnn"), not the unused model.name."""
    if not backbone:
        return _cell(name)
    from cnnlab.config.names import backbone_label

    return f"from {backbone_label(str(backbone))}"


def cmd_lr_find(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)
    from cnnlab.analyze import lr_find

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


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnlab.analyze import evaluate
    from cnnlab.analyze.trained import load_trained

    overrides = evaluate.data_overrides(args.data)
    run = load_trained(args.run, overrides, args.device)
    result = evaluate.evaluate_run(
        run, args.split, tta=args.tta, top_k=(1, args.top_k), worst=args.worst
    )
    paths = evaluate.write(result, run.path)
    from rich.console import Console

    console = Console()
    for renderable in evaluate.summary_tables(result):
        console.print(renderable)
    for path in paths:
        console.print(f"wrote {path}", soft_wrap=True, highlight=False, markup=False)
    return 0


def cmd_robustness(args: argparse.Namespace) -> int:
    from cnnlab.analyze import robustness
    from cnnlab.analyze.trained import load_trained

    robustness.select(args.only)  # a misspelt name fails before the model loads
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: expected a number of images >= 1")
    run = load_trained(args.run, device=args.device)
    split = args.split or robustness.default_split(run)
    n = len(run.images(split)) if args.limit is None else min(args.limit, len(run.images(split)))
    print(f"robustness of {run.path.name} on {n} {split} images ({run.device}) ...", flush=True)
    result = robustness.robustness(
        run,
        split,
        only=args.only,
        limit=args.limit,
        batch_size=args.batch_size,
        progress=lambda line: print(f"  {line}", flush=True),
    )
    paths = robustness.write(result, run.path)
    print()
    print(result.markdown(), end="")
    print(f"took {result.seconds:.1f} s; wrote {', '.join(map(str, paths.values()))}")
    return 0


def cmd_viz(args: argparse.Namespace) -> int:
    from cnnlab.analyze import visualize
    from cnnlab.analyze.trained import load_trained

    run = load_trained(args.run, device=args.device)
    if args.viz_command == "filters":
        path = visualize.write_filters(run)
    elif args.viz_command == "gradcam":
        path = visualize.write_gradcam(run, n=args.n, layer=args.layer)
    else:
        path = visualize.write_activations(run, args.layer, n_images=args.n)
    print(f"wrote {path}")
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


def cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnnlab.report import write_report

    path = write_report(args.targets, Path(args.output) if args.output else None)
    print(f"report: {path}")
    return 0


def cmd_runs_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from cnnlab.track import runs

    rows = runs.index_runs(args.root)
    total = len(rows)
    rows = runs.sort_rows(runs.filter_rows(rows, args.filter), args.sort, args.reverse)
    shown = rows if args.limit is None else rows[: max(0, args.limit)]
    console = Console()
    if not console.is_terminal:  # piped into grep or a file: whole lines, never folded cells
        console = Console(width=250)
    if not shown:
        why = "match the filters" if total else "yet (cnnlab train writes them)"
        console.print(f"no runs in {args.root} {why}", highlight=False, markup=False)
        return 0
    table = Table(box=None, pad_edge=False, collapse_padding=True)
    table.add_column("name", overflow="fold")
    for header in ("date", "data", "model", "optim", "lr"):
        table.add_column(header)
    for header in ("epochs", "best val", "test", "time"):
        table.add_column(header, justify="right")
    table.add_column("status")
    colours = {"completed": "green", "running": "yellow", "diverged": "red", "failed": "red"}
    for row in shown:
        epochs = _cell(row.get("epochs_run"))
        if row.get("train.epochs") is not None:
            epochs += f"/{row.get('train.epochs')}"
        status = str(row.get("status"))
        table.add_row(
            Text(row.name),
            Text(row.date[:16]),  # seconds add width, not information
            Text(_cell(row.get("data.name"))),
            Text(_model_cell(row.get("model.name"), row.get("model.backbone"))),
            Text(_cell(row.get("optim.name"))),
            Text(_cell(row.get("optim.lr"))),
            Text(epochs),
            Text(_cell(row.get("best_val_acc"), "{:.2%}")),
            Text(_cell(row.get("test_acc"), "{:.2%}")),
            Text(_duration(row.get("train_seconds"))),
            Text(status, style=colours.get(status, "")),
        )
    console.print(table)
    console.print(
        f"{len(shown)} of {total} runs in {args.root}", style="dim", highlight=False, markup=False
    )
    return 0


def cmd_runs_compare(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from cnnlab.track import runs

    rows = [runs.read_row(runs.resolve_run(r, args.root)) for r in args.runs]
    result = runs.compare(rows)
    table = Table(box=None, pad_edge=False)
    table.add_column("key", style="bold")
    for name in result.names:
        table.add_column(name, overflow="fold")
    for key, values in result.config:
        table.add_row(Text(key), *[Text(_cell(v)) for v in values])
    if not result.config:
        table.add_row(Text("(configs identical)"), *["" for _ in result.names])
    table.add_section()
    for key, values in result.summary:
        style = "{:.2%}" if key.endswith("acc") else None
        cells = [_duration(v) if key == "train_seconds" else _cell(v, style) for v in values]
        table.add_row(Text(key), *[Text(c) for c in cells])
    Console().print(table)
    return 0


def cmd_runs_plot(args: argparse.Namespace) -> int:
    from cnnlab.track import runs

    paths = [runs.resolve_run(r, args.root) for r in args.runs]
    figure = runs.plot_runs(paths, args.metric, log=args.log)
    from cnnlab.track.curves import save_png

    print(f"curves: {save_png(figure, args.output)}")
    return 0


def cmd_runs_export(args: argparse.Namespace) -> int:
    from cnnlab.track import runs

    output = args.output or f"{'epochs' if args.epochs else 'runs'}.{args.format or 'csv'}"
    rows = runs.filter_rows(runs.index_runs(args.root), args.filter)
    frame = runs.export_frame(rows, epochs=args.epochs)
    path = runs.write_frame(frame, output, args.format)
    print(f"{len(frame)} rows: {path}")
    return 0


def _cell(value, fmt: str | None = None) -> str:
    if value is None:
        return "-"
    if fmt and isinstance(value, int | float) and not isinstance(value, bool):
        return fmt.format(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _duration(seconds) -> str:
    if not isinstance(seconds, int | float):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


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
