"""`cnnlab runs list` / `runs export` over thousands of runs: this checkout vs the base commit.

Makes one real run (`cnnlab train train.epochs=1 model.width=8`), copies it N times into a root
(each copy with its own name, date, optim.lr and accuracies; every 100th without summary.json,
as a killed run), and times the whole command as a user runs it, output piped:

    python bench/runs_index.py [--sizes 1000,10000] [--repeats 3] [--base cd03c0d]

cold = no index in the root (the first listing; the files are in the OS page cache), warm =
median of --repeats listings after one that filled the index; wall-clock seconds, and for warm
also CPU seconds (user + sys), which a machine shared with other work inflates less. "old" is
the package at --base (extracted with `git archive` into a temp folder), "new" this checkout;
both run as `python -m cnnlab` subprocesses on the same root, one after the other, each package
byte-compiled first as `pip install` leaves it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
COPIED = ("config.yaml", "summary.json", "metrics.jsonl", "metrics.csv", "log.txt", "model.txt")
CASES = {
    "list": ["runs", "list"],
    "list --sort": ["runs", "list", "--sort", "test_acc"],
    "list --filter": ["runs", "list", "--filter", "optim.lr<0.01"],
    "export --epochs": ["runs", "export", "--epochs"],
}


def real_run(folder: Path) -> Path:
    """One real, tiny training: the run every copy is made from."""
    cmd = [sys.executable, "-m", "cnnlab", "train", "train.epochs=1", "model.width=8"]
    out = subprocess.run(
        [*cmd, f"run.dir={folder}"], env=_env(REPO), capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip().splitlines()[-1].removeprefix("run: "))


def generate(run: Path, root: Path, n: int) -> None:
    """n copies of `run` under `root`, differing in name, date, optim.lr and accuracies."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["optim"]["lr"] = 0.123456789  # a placeholder replaced per copy
    config_text = yaml.safe_dump(config, sort_keys=False)
    summary = json.loads((run / "summary.json").read_text())
    others = {name: (run / name).read_bytes() for name in COPIED[2:] if (run / name).exists()}
    start = datetime(2026, 1, 1)
    for i in range(n):
        stamp = (start + timedelta(seconds=i)).strftime("%Y%m%d-%H%M%S")
        path = root / f"{stamp}-bench-{i:05d}"
        path.mkdir(parents=True)
        lr = 10 ** -(1 + (i % 30) / 10)
        (path / "config.yaml").write_text(config_text.replace("0.123456789", repr(lr)))
        if i % 100 != 99:
            acc = 0.5 + (i * 7919 % 1000) / 2000
            summary.update(best_val_acc=acc, final_val_acc=acc, test_acc=acc)
            (path / "summary.json").write_text(json.dumps(summary, indent=2))
        for name, data in others.items():
            (path / name).write_bytes(data)


def _env(package_root: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(package_root), "COLUMNS": "200"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode as installed (see compile_package)
    return env


def compile_package(package_root: Path) -> None:
    """Byte-compile the package, as `pip install` does: without it every command would compile
    cnnlab's sources again where PYTHONDONTWRITEBYTECODE is set (~50 ms a start)."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(package_root / "cnnlab")], check=True
    )


def timed(package_root: Path, args: list[str], cwd: Path) -> tuple[float, float, int]:
    """Wall seconds and CPU seconds (user + sys, its worker processes included) of one whole
    command, and the lines it printed (piped)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "cnnlab", *args],
        env=_env(package_root),
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} (PYTHONPATH={package_root}): {out.stderr}")
    return seconds, cpu, len(out.stdout.splitlines())


def drop_index(root: Path) -> None:
    for f in root.glob(".cnnlab-index*"):
        f.unlink()


def measure(impls: dict[str, Path], root: Path, case: str, repeats: int, tmp: Path) -> dict:
    """{impl: (cold s, warm median s, warm median CPU s, lines)} for one command."""
    args = [*CASES[case], "--root", str(root)]
    if case.startswith("export"):
        args += ["-o", str(tmp / "epochs.csv")]
    result = {}
    for name, package_root in impls.items():
        drop_index(root)
        cold, _, lines = timed(package_root, args, tmp)
        warm = [timed(package_root, args, tmp) for _ in range(repeats)]
        result[name] = (
            cold,
            statistics.median(w[0] for w in warm),
            statistics.median(w[1] for w in warm),
            lines,
        )
    drop_index(root)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="run counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="warm listings per median")
    parser.add_argument("--base", default="cd03c0d", help="the commit measured as 'old'")
    parser.add_argument("--run", type=Path, help="copy this run instead of training one")
    parser.add_argument("--only", choices=["old", "new"], help="measure one side only")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-runs-") as folder:
        tmp = Path(folder)
        base = tmp / "base"
        base.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", args.base, "cnnlab"],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
        impls = {"old": base, "new": REPO}
        if args.only:
            impls = {args.only: impls[args.only]}
        for package_root in impls.values():
            compile_package(package_root)
        run = args.run or real_run(tmp / "seed")
        empty = tmp / "empty"
        empty.mkdir()
        floor = {}
        for name, package_root in impls.items():
            starts = [
                timed(package_root, ["runs", "list", "--root", str(empty)], tmp) for _ in range(3)
            ]
            floor[name] = tuple(statistics.median(s[i] for s in starts) for i in range(2))
        print(
            "start-up floor (runs list over an empty root, median of 3): "
            f"{_pair({k: v[0] for k, v in floor.items()})} wall, "
            f"{_pair({k: v[1] for k, v in floor.items()})} CPU"
        )
        sides = " → ".join(impls)
        print(
            f"{'runs':>6}  {'command':<16} {'cold ' + sides:>20} {'warm ' + sides:>20}"
            f" {'warm CPU ' + sides:>22}  lines"
        )
        for n in [int(s) for s in args.sizes.split(",")]:
            root = tmp / f"runs-{n}"
            generate(run, root, n)
            for case in CASES:
                if case.startswith("export") and n > 1000:
                    continue  # the target is set for 1,000 runs; old takes minutes at 10,000
                r = measure(impls, root, case, args.repeats, tmp)
                cold, warm, cpu = (_pair({k: v[i] for k, v in r.items()}) for i in range(3))
                lines = "/".join(str(v[3]) for v in r.values())
                print(f"{n:>6}  {case:<16} {cold:>20} {warm:>20} {cpu:>22}  {lines}", flush=True)
            shutil.rmtree(root)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?"
    )
    print(f"machine: {model}, {os.cpu_count()} cores; python {sys.version.split()[0]}")


def _pair(seconds: dict[str, float]) -> str:
    return " → ".join(f"{s:.2f}" for s in seconds.values()) + " s"


if __name__ == "__main__":
    main()
