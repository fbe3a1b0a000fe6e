"""The package as users get it: a wheel built from this tree, installed into a fresh virtual
environment, trains from there. Offline: the wheel is built without build isolation and
installed without dependencies; the fresh venv sees this venv's packages (torch, ...) through
a .pth line, but not its copy of cnnlab."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a wheel build, a venv and a training: ~40 s on 2 cores


def run(*args: str | Path, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{args}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this tree, built from a copy of it (a build leaves build/ and egg-info)."""
    from importlib.metadata import version

    from packaging.version import Version

    # no build isolation (offline): the build backend pyproject names must be here; the test
    # extra installs it
    assert 'requires = ["setuptools>=77"]' in (ROOT / "pyproject.toml").read_text()
    assert Version(version("setuptools")) >= Version("77"), "pip install 'setuptools>=77'"
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT / "cnnlab", source / "cnnlab", ignore=ignore)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    pip = (sys.executable, "-m", "pip")
    run(*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", work / "dist", source)
    (built,) = (work / "dist").glob("cnnlab-*.whl")
    return built


def test_the_wheel_ships_the_recipes_license_and_metadata(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(metadata_name).decode()
    assert "cnnlab/config/recipes/default.yaml" in names
    assert "cnnlab/config/recipes/cpu-fast.yaml" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert "Project-URL: Homepage," in metadata
    for extra in ("parquet", "mlflow", "timm"):
        assert f"Provides-Extra: {extra}" in metadata
    assert 'Requires-Dist: pyarrow>=14; extra == "parquet"' in metadata
    assert 'Requires-Dist: mlflow>=2.10; extra == "mlflow"' in metadata
    assert "Requires-Dist: argcomplete>=3" in metadata


def test_a_fresh_venv_with_the_wheel_trains(wheel, tmp_path):
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    packages = Path(
        run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))").stdout.strip()
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    pip = (sys.executable, "-m", "pip", "--python", python)
    # before the .pth below, through which pip would take this venv's cnnlab for installed
    run(*pip, "install", "--no-deps", "--no-index", wheel, env=env)
    # this venv's dependencies, as a plain path (its own .pth files, the editable cnnlab's
    # among them, are not read from there)
    (packages / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    found = run(python, "-c", "import cnnlab; print(cnnlab.__file__)", env=env, cwd=tmp_path)
    assert Path(found.stdout.strip()).is_relative_to(venv)
    assert run(venv / "bin" / "cnnlab", "--version", env=env).stdout.strip() == "cnnlab 0.1.0"

    runs = tmp_path / "runs"
    proc = run(
        venv / "bin" / "cnnlab",
        "train",
        "train.epochs=1",
        "model.width=4",
        f"run.dir={runs}",
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    path = Path(proc.stdout.strip().splitlines()[-1].removeprefix("run: "))
    assert path.parent == runs
    summary = json.loads((path / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["versions"]["cnnlab"] == "0.1.0"
