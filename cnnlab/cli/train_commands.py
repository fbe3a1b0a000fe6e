"""cnnlab train, transfer (train with a backbone) and lr-find."""

from __future__ import annotations

import argparse

from cnnlab.cli.codes import EXIT_DIVERGED, EXIT_INTERRUPTED, EXIT_USER_ERROR, exit_code
from cnnlab.errors import ConfigError


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume is not None and args.config:
        raise ConfigError("--resume continues a run with its own config; drop -c/--config")
    if args.seeds is not None:
        if args.nproc is not None and args.nproc > 1:
            raise ConfigError("--seeds and --nproc: train each seed with --nproc on its own")
        return _train_seeds(args)
    if args.nproc is not None and args.nproc > 1:
        return _launch(args)
    if args.resume is not None:
        from cnnlab.training.resume import resume

        return _exit_code(resume(args.resume, args.overrides).status)
    from cnnlab.config import load_config

    config = load_config(args.config, args.overrides)  # before importing torch: errors come fast
    from cnnlab.training.experiment import train

    return _exit_code(train(config).status)


def _exit_code(status: str) -> int:
    """Under torchrun only rank 0 reports how the run ended; the others exit 0 once they have
    ended with it, so that the agent stops nobody before rank 0 has written and said it all."""
    from cnnlab.training.distributed import from_env

    return exit_code(status) if from_env().is_main else 0


def _launch(args: argparse.Namespace) -> int:
    """--nproc N: check the config here (one error line, not N), then start N workers that run
    this command without --nproc."""
    from pathlib import Path

    from cnnlab.config import load_config

    if args.resume is not None:
        from cnnlab.training.resume import prepare

        config = prepare(Path(args.resume), args.overrides)[0]
    else:
        config = load_config(args.config, args.overrides)
    config.train.rank_batch(args.nproc)
    argv = [args.command, *[f"--config={c}" for c in args.config]]
    if args.resume is not None:
        argv.append(f"--resume={args.resume}")
    if getattr(args, "debug", False):
        argv.append("--debug")
    from cnnlab.training.launch import launch

    # rank 0's own exits: it has printed why (an error line, a diverged or interrupted run)
    said = (EXIT_USER_ERROR, EXIT_DIVERGED, EXIT_INTERRUPTED)
    return launch(args.nproc, [*argv, *args.overrides], said)


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
