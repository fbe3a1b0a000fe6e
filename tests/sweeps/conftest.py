"""Sweep specs for tiny real trainings on digits (one epoch, a 4-wide net, runs under
tmp_path), and a throwaway PostgreSQL server: Debian's initdb and pg_ctl (the `postgresql`
package) in a temp directory, on 127.0.0.1 and a free port, trusting local connections; as root
the server runs as the postgres user (PostgreSQL refuses root). Tests that need it are skipped,
with the reason, where no server can be had."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

TINY = {"train.epochs": 1, "model.width": 4}


@pytest.fixture
def spec_file(tmp_path: Path):
    """spec_file(**keys) -> the path of a spec whose base trains tiny runs under tmp_path/runs
    (base: {...} in keys replaces the base's overrides' values it names)."""

    def write(stem: str = "sweep", **keys: Any) -> Path:
        base = keys.pop("base", {})
        overrides = {**TINY, "run.dir": str(tmp_path / "runs"), **base.pop("overrides", {})}
        spec = {"base": {"overrides": overrides, **base}, **keys}
        path = tmp_path / f"{stem}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        return path

    return write


def _bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """postgresql://cnnlab@127.0.0.1:PORT/postgres of a server running for this module."""
    pytest.importorskip("psycopg", reason="psycopg is in the test extra")
    bindir = _bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl): apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="cnnlab-pg-"))  # /tmp: the postgres user can enter it
    runner: list[str] = []
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and no postgres user to run the server as")
        os.chown(root, user.pw_uid, user.pw_gid)
        runner = ["runuser", "-u", "postgres", "--"]
    data, log, port = root / "data", root / "server.log", _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    commands = [
        [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "cnnlab", "--no-sync"],
        [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60"]
        + ["-o", options, "start"],
    ]
    for command in commands:
        done = subprocess.run(runner + command, capture_output=True, text=True)
        if done.returncode != 0:
            why = (done.stderr or done.stdout).strip().splitlines()
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip(f"no PostgreSQL server could be started: {why[-1] if why else '?'}")
    try:
        yield f"postgresql://cnnlab@127.0.0.1:{port}/postgres"
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]
        subprocess.run(runner + stop, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
