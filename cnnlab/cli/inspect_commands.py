"""Commands that look at a config, a dataset or a finished run: config, data, summary, augment,
eval, robustness, viz."""

from __future__ import annotations

import argparse

from cnnlab.atomic import check_writable
from cnnlab.errors import ConfigError


def cmd_config_show(args: argparse.Namespace) -> int:
    from cnnlab.config import dump_yaml, load_config

    print(dump_yaml(load_config(args.config, args.overrides)), end="")
    return 0


def cmd_config_recipes(args: argparse.Namespace) -> int:
    from cnnlab.config import recipe_names

    print("\n".join(recipe_names()))
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
    grid = Path(args.output or f"{config.data.name}-samples.png")
    if grid.is_dir() or not grid.absolute().parent.is_dir():  # before the data is read
        problem = "is a directory" if grid.is_dir() else "is in a directory that does not exist"
        raise ConfigError(f"-o {grid}: {problem}; expected a PNG file name")
    from rich.console import Console

    from cnnlab import data
    from cnnlab.data import info

    bundle = data.build(config.data)
    console = Console()
    info.show(bundle, console)  # its first line: where the data was read from
    info.write_sample_grid(bundle, grid)
    console.print(f"sample grid: {grid}", soft_wrap=True, highlight=False, markup=False)
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)
    from cnnlab import data, models
    from cnnlab.models.transfer import TransferNet, load_backbone

    info = data.build(config.data).info  # the model's input: channels, size, classes
    if config.model.backbone is not None:  # the uncut backbone: where transfer.layer may cut
        source = load_backbone(config.model.backbone, weights=False)
        print(f"backbone {source.name} (transfer.layer: a # or layer of this table)")
        print(models.summarize(source.net, (source.channels, *source.image_size)).table())
        print()
    model = models.build(config, info, weights=False)  # the shape is all a summary needs
    if isinstance(model, TransferNet):  # trainable params as the run starts
        from cnnlab.training import finetune

        finetune.freeze(model, config)
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


def cmd_eval(args: argparse.Namespace) -> int:
    from cnnlab.analyze import evaluate
    from cnnlab.analyze.trained import load_trained

    overrides = evaluate.data_overrides(args.data)
    run = load_trained(args.run, overrides, args.device)
    check_writable(run.path)  # before the work, not after it
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

    robustness.select(args.only)  # misspelt names fail before the model loads
    robustness.check_precision(args.precision)
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit {args.limit}: expected a number of images >= 1")
    run = load_trained(args.run, device=args.device)
    check_writable(run.path)  # before the work, not after it
    split = args.split or robustness.default_split(run)
    n = len(run.images(split)) if args.limit is None else min(args.limit, len(run.images(split)))
    precision = robustness.suite_precision(run, args.precision)
    print(
        f"robustness of {run.path.name} on {n} {split} images ({run.device}, {precision}) ...",
        flush=True,
    )
    result = robustness.robustness(
        run,
        split,
        only=args.only,
        limit=args.limit,
        batch_size=args.batch_size,
        progress=lambda line: print(f"  {line}", flush=True),
        precision=precision,
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
    check_writable(run.path)  # before the work, not after it
    if args.viz_command == "filters":
        path = visualize.write_filters(run)
    elif args.viz_command == "gradcam":
        path = visualize.write_gradcam(run, n=args.n, layer=args.layer)
    else:
        path = visualize.write_activations(run, args.layer, n_images=args.n)
    print(f"wrote {path}")
    return 0
