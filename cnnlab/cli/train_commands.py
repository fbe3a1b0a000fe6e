"""cnnlab train, transfer (train with a backbone) and lr-find."""

from __future__ import annotations

import argparse

from cnnlab.cli.codes import EXIT_DIVERGED, EXIT_INTERRUPTED, exit_code
from cnnlab.errors import ConfigError


def cmd_train(args: argparse.Namespace) -> int:
    if args.seeds is not None:
        return _train_seeds(args)
    if args.resume is not None:
        if args.config:
            raise ConfigError("--resume continues a run with its own config; drop -c/--config")
        from cnnlab.training.resume import resume

        return exit_code(resume(args.resume, args.overrides).status)
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)  # before importing torch: errors come fast
    from cnnlab.training.experiment import train

    return exit_code(train(config).status)


def _train_seeds(args: argparse.Namespace) -> int:
    """--seeds: one run per seed in a group folder, then each metric's mean ± std."""
    if args.resume is not None:
        raise ConfigError("--seeds starts new runs; --resume continues one run (without --seeds)")
    from cnnlab.sweeps.repeats import parse_seeds

    parse_seeds(args.seeds)  # a bad --seeds fails before the config is read
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)
    from cnnlab.sweeps.repeats import train_seeds

    group = train_seeds(config, parse_seeds(args.seeds, config.train.seed))
    for line in group.lines():
        print(line)
    print(f"group: {group.path}")
    codes = {exit_code(r.status) for r in group.results}
    return next((c for c in (EXIT_INTERRUPTED, EXIT_DIVERGED) if c in codes), 0)


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
