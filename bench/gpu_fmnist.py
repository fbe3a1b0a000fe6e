"""Time to a good model on one GPU: cnnlab's fast/best configs vs airbench94 and a hand-written
torchvision ResNet-18 loop, on real Fashion-MNIST, in this one process.

    python bench/gpu_fmnist.py [--data DIR] [--recipes bench/drafts/fast.yaml,...] [--seeds 5]
                               [--airbench-runs 5] [--peer-epochs 10] [--cifar-shaped]

- airbench94 (`pip install airbench`, the CIFAR-10 speed record; the GPU machine has no
  network, so carry its sdist: `pip download airbench --no-deps -d .carry`, then
  `pip install .carry/airbench-*.tar.gz`). It reads ./cifar10/{train,test}.pt, so Fashion-MNIST
  is staged there padded to 32x32 and repeated to 3 channels, as the issue measured it. Its
  time: train94 (whitening init, training) + evaluate with its TTA (level 2), after warmup94.
- torchvision loop: FashionMNIST + PIL RandomCrop/flip/ToTensor/Normalize + DataLoader,
  ResNet-18 with a 1-channel stem, Adam 1e-3, batch 128, fp32.
- cnnlab: `cnnlab train recipe=R` (or `cnnlab train FILE.yaml`) through the API, after one
  untimed warm-up run per recipe (CUDA context, cuDNN autotuning; airbench gets warmup94).
  --recipes defaults to bench/drafts/{fast,best}.yaml: airbench94's settings as cnnlab config,
  not yet run on a GPU, kept out of the shipped recipes until they are measured and tuned.
Seconds exclude reading files from disk and include everything else, evaluation and TTA too.
MFU: the training steps' FLOP/s (torch's FlopCounterMode count x summary.json's training
images/s) over the measured matmul peak in the recipe's precision (bf16 for fast/best).
--cifar-shaped adds each recipe's training images/s on random 32x32x3 data (50k images).
--smoke runs everything on 2,000 training images for one epoch in batches of 256 (fp32 on the
CPU): a check that the script works (e.g. with --device cpu), not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from common import (
    SYSTEM_FMNIST,
    Timed,
    cnnlab_run,
    fmnist_config,
    matmul_peak,
    recipe_train_flops,
    stage_torchvision_fashion_mnist,
)
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from cnnlab.training.device import device_name

MEAN, STD = (0.2860,), (0.3530,)


def load_fmnist(root: Path) -> tuple[torchvision.datasets.FashionMNIST, ...]:
    return tuple(
        torchvision.datasets.FashionMNIST(str(root), train=train) for train in (True, False)
    )


def write_idx_subset(tv_root: Path, out: Path, n_train: int, n_test: int) -> None:
    """The first images of each split as uncompressed IDX files (the format cnnlab reads)."""
    out.mkdir(parents=True)
    train, test = load_fmnist(tv_root)
    for split, ds, n in (("train", train, n_train), ("t10k", test, n_test)):
        images, labels = ds.data[:n].numpy(), ds.targets[:n].numpy().astype(np.uint8)
        with open(out / f"{split}-images-idx3-ubyte", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, *images.shape) + images.tobytes())
        with open(out / f"{split}-labels-idx1-ubyte", "wb") as f:
            f.write(struct.pack(">II", 0x801, len(labels)) + labels.tobytes())


def stage_airbench(tv_root: Path, out: Path) -> None:
    """out/cifar10/{train,test}.pt as airbench's CifarLoader reads them: (N, 32, 32, 3) uint8."""
    (out / "cifar10").mkdir(parents=True)
    for ds, name in zip(load_fmnist(tv_root), ("train", "test"), strict=True):
        images = torch.nn.functional.pad(ds.data, (2, 2, 2, 2))[..., None].expand(-1, -1, -1, 3)
        torch.save(
            {"images": images.contiguous(), "labels": ds.targets, "classes": ds.classes},
            out / "cifar10" / f"{name}.pt",
        )


@contextlib.contextmanager
def working_directory(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def airbench_runs(staged: Path, runs: int, smoke: bool) -> list[Timed] | str:
    """airbench94's accuracy with TTA and seconds per run; a reason string when it cannot run."""
    if not torch.cuda.is_available():
        return "needs CUDA"
    try:
        import airbench
        from airbench.lib_airbench94 import hyp
    except ImportError:
        return "not installed (pip install airbench)"
    results = []
    with working_directory(staged):
        loader = airbench.CifarLoader(
            "cifar10", train=True, batch_size=hyp["opt"]["batch_size"], aug=hyp["aug"],
            altflip=True,
        )  # fmt: skip
        test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        epochs = 1 if smoke else hyp["opt"]["train_epochs"]
        airbench.warmup94(train_loader=loader, epochs=epochs)
        for seed in range(runs):
            torch.manual_seed(seed)
            torch.cuda.synchronize()
            start = time.perf_counter()
            model = airbench.train94(train_loader=loader, epochs=epochs, verbose=False)
            accuracy = airbench.evaluate(model, test, tta_level=hyp["net"]["tta_level"])
            torch.cuda.synchronize()
            results.append(Timed(accuracy, time.perf_counter() - start))
    return results


def resnet18_gray() -> nn.Module:
    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
    return model


def peer_run(tv_root: Path, seed: int, epochs: int, device: torch.device, n: int) -> Timed:
    """The hand-written loop: PIL transforms in DataLoader workers, fp32."""
    torch.manual_seed(seed)
    augment = transforms.Compose(
        [
            transforms.RandomCrop(28, padding=2),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    plain = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    train = torchvision.datasets.FashionMNIST(str(tv_root), train=True, transform=augment)
    test = torchvision.datasets.FashionMNIST(str(tv_root), train=False, transform=plain)
    if n < len(train):
        train = torch.utils.data.Subset(train, range(n))
    pin = device.type == "cuda"
    start = time.perf_counter()
    loader = DataLoader(train, batch_size=128, shuffle=True, num_workers=4, pin_memory=pin)
    model = resnet18_gray().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=1000, num_workers=4, pin_memory=pin):
            correct += (model(x.to(device)).argmax(1).cpu() == y).sum().item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return Timed(correct / len(test), time.perf_counter() - start)


def cifar_shaped_rate(recipe: str, tmp: Path, n: int, *overrides: str) -> float:
    """Training images/s of one epoch of `recipe` on random 32x32x3 uint8 images."""
    import cnnlab

    path = tmp / "random32.npz"
    if not path.exists():
        rng = np.random.default_rng(0)
        np.savez(
            path,
            x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            y=rng.integers(0, 10, n),
        )
    config = fmnist_config(
        recipe, path, tmp / "runs-random", "data.name=arrays", "train.epochs=1", *overrides
    )
    return cnnlab.train(config).summary["images_per_second"]


def row(name: str, results: list[Timed] | str, reference: float | None) -> list[str]:
    if isinstance(results, str):
        return [name, "not run: " + results, "", "", ""]
    accs = [100 * r.accuracy for r in results]
    spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
    seconds = statistics.median(r.seconds for r in results)
    ratio = f"{reference / seconds:.2f}×" if reference else ""
    return [name, f"{statistics.mean(accs):.2f} ± {spread:.2f}", f"{seconds:.2f}",
            str(len(accs)), ratio]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SYSTEM_FMNIST, help="the 4 IDX files")
    drafts = Path(__file__).parent / "drafts"
    parser.add_argument("--recipes", default=f"{drafts / 'fast.yaml'},{drafts / 'best.yaml'}")
    parser.add_argument("--seeds", type=int, default=5, help="cnnlab runs per recipe")
    parser.add_argument("--airbench-runs", type=int, default=5)
    parser.add_argument("--peer-seeds", type=int, default=1)
    parser.add_argument("--peer-epochs", type=int, default=10)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cifar-shaped", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="2,000 images, 1 epoch: no numbers")
    args = parser.parse_args()
    device = torch.device(args.device)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    label = {r: Path(r).stem if r.endswith(".yaml") else r for r in recipes}
    extra = [f"train.device={args.device}"]
    if args.smoke:  # plumbing only: small batches so that 2,000 images make steps
        extra += ["train.epochs=1", "train.batch_size=256"]
        if device.type == "cpu":  # bf16 without AVX512-BF16 is ~8x slower than fp32
            extra += ["train.precision=fp32"]
    n_train = 2000 if args.smoke else 60000

    results: dict[str, list[Timed] | str] = {}
    mfu: dict[str, str] = {}
    cifar: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        stage_torchvision_fashion_mnist(args.data, tmp / "tv")
        raw = args.data
        if args.smoke:
            write_idx_subset(tmp / "tv", tmp / "subset", n_train, 1000)
            stage_torchvision_fashion_mnist(tmp / "subset", tmp / "tv-subset")
            raw = tmp / "subset"
        tv_root = tmp / ("tv-subset" if args.smoke else "tv")
        stage_airbench(tv_root, tmp / "airbench")
        results["airbench94"] = airbench_runs(tmp / "airbench", args.airbench_runs, args.smoke)
        peer_epochs = 1 if args.smoke else args.peer_epochs
        results[f"torchvision loop, ResNet-18, {peer_epochs} epochs"] = [
            peer_run(tv_root, s, peer_epochs, device, n_train) for s in range(args.peer_seeds)
        ]
        for recipe in recipes:
            runs = tmp / f"runs-{recipe}"
            cnnlab_run(recipe, raw, 0, runs, *extra)  # warm-up, untimed
            timed = [cnnlab_run(recipe, raw, s, runs, *extra) for s in range(args.seeds)]
            results[f"cnnlab {label[recipe]}"] = timed
            config = fmnist_config(recipe, raw, runs, *extra)
            dtype = torch.bfloat16 if config.train.precision == "bf16" else torch.float32
            peak = matmul_peak(device, dtype, 1024 if args.smoke else None)
            flops = recipe_train_flops(config)
            rate = statistics.median(r.train_images_per_second for r in timed)
            mfu[recipe] = (
                f"{label[recipe]}: {flops / 1e6:.0f} MFLOP/image x {rate:,.0f} images/s = "
                f"{flops * rate / 1e12:.2f} TFLOP/s, {100 * flops * rate / peak:.1f}% of the "
                f"measured {str(dtype).removeprefix('torch.')} matmul peak "
                f"({peak / 1e12:.1f} TFLOP/s)"
            )
            if args.cifar_shaped:
                cifar[recipe] = cifar_shaped_rate(recipe, tmp, n_train, *extra)

    reference = results["airbench94"]
    ref_seconds = (
        None if isinstance(reference, str) else statistics.median(r.seconds for r in reference)
    )
    table = Table(title=f"Fashion-MNIST test accuracy and time on {device_name(device)}")
    for col in ["", "test acc % (mean ± std)", "seconds (median)", "runs", "vs airbench94"]:
        table.add_column(col, justify="left" if col == "" else "right")
    for name, result in results.items():
        table.add_row(*row(name, result, ref_seconds))
    console = Console(width=130)
    if args.smoke:
        console.print("[bold]--smoke: 2,000 training images, 1 epoch; not a measurement[/]")
    console.print(table)
    console.print(
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, python "
        f"{sys.version.split()[0]}, {time.strftime('%Y-%m-%d')}; seconds exclude reading files"
    )
    for line in mfu.values():
        console.print("MFU " + line)
    for recipe, rate in cifar.items():
        console.print(f"{label[recipe]} on random 32x32x3 data: {rate:,.0f} training images/s")


if __name__ == "__main__":
    main()
