"""Issue 27's suite: generated bad inputs (config overrides, config files, `runs list --filter`
values, dataset files, run directories, checkpoints and run indexes) through the real CLI, every
outcome classified; none may end in a traceback, a hang, a payload that ran, or a failing
command that changed files.

The full set is slow (about 3,300 cases, counted in README's reliability section); a sample of
about 50, spread over every kind, runs with the fast tests."""

from __future__ import annotations

from collections import Counter

import pytest
import reliability_array_cases
import reliability_cifar_cases
import reliability_config_cases
import reliability_idx_cases
import reliability_rundir_cases
from reliability_harness import FAILURES, by_kind, failures, generate, run_cases, summary
from reliability_payloads import PAYLOADS, hostile

# Every kind of input the suite tries; a new kind is one more module with its own GENERATORS.
GENERATORS = [
    *reliability_config_cases.GENERATORS,
    *reliability_idx_cases.GENERATORS,
    *reliability_cifar_cases.GENERATORS,
    *reliability_array_cases.GENERATORS,
    *reliability_rundir_cases.GENERATORS,
]
SAMPLE = 50


def sample(cases: list, n: int = SAMPLE) -> list:
    """About n cases, the same number from every kind, spread evenly over each kind's list;
    accepted dataset cases are left out (they read and tabulate a whole set)."""
    quick = [c for c in cases if c.expect != "accept" or c.argv[0] == "config"]
    kinds = sorted({c.kind for c in quick})
    per_kind = max(1, n // len(kinds))
    picked = []
    for kind in kinds:
        of_kind = [c for c in quick if c.kind == kind]
        picked += of_kind[:: max(1, len(of_kind) // per_kind)][:per_kind]
    return picked


def check(results: list, capsys) -> None:
    line = summary(results)
    with capsys.disabled():
        print(f"\nreliability: {line}\nby kind: {by_kind(results)}")
    counts = Counter(r.outcome for r in results)
    assert not any(counts[f] for f in FAILURES), "\n".join([line, *failures(results)])


def test_a_sample_of_generated_inputs_ends_cleanly(tmp_path, capsys):
    check(run_cases(sample(generate(GENERATORS)), tmp_path), capsys)


@pytest.mark.slow
def test_every_generated_input_ends_cleanly(tmp_path, capsys):
    cases = generate(GENERATORS)
    assert len(cases) >= 3000
    check(run_cases(cases, tmp_path), capsys)


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.__name__)
def test_the_hostile_payloads_are_live(tmp_path, payload):
    """What the suite feeds cnnlab really runs code when loaded the unsafe way, so "0 payloads
    run" means refused, not harmless."""
    import pickle

    import numpy as np
    import yaml
    from reliability_harness import MARKER

    marker = tmp_path / MARKER
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        pickle.loads(hostile(payload, protocol)(tmp_path / "x", marker))
        assert marker.exists()
        marker.unlink()
    npz = tmp_path / "evil.npz"
    npz.write_bytes(reliability_array_cases.hostile_npz(payload)(npz, marker))
    np.load(npz, allow_pickle=True)["y"]
    assert marker.exists()
    marker.unlink()
    tag = "!!python/object/apply:os.system ['touch {marker}']".replace("{marker}", str(marker))
    yaml.unsafe_load(tag)
    assert marker.exists()


def test_the_harness_tells_every_outcome_apart(tmp_path, monkeypatch):
    """Each class of issue 27, produced on purpose by a stand-in for cnnlab's main."""
    import sys
    import time
    from pathlib import Path

    import reliability_harness
    from reliability_harness import MARKER, Case, run_case

    import cnnlab.cli

    def fake_main(argv):
        where, what = Path(argv[0]), argv[1]
        if what == "crash":
            raise ValueError("a bug")
        if what == "hang":
            time.sleep(5)
        if what == "payload":
            (where / MARKER).touch()
        if what == "write":
            (where / "left-behind").write_text("x")
        if what in ("two lines", "write", "payload"):
            print("cnnlab: error: x\nmore", file=sys.stderr)
            return 2
        if what in ("clean", "wrong name"):
            print("cnnlab: error: optim.lr = 'x': not a number", file=sys.stderr)
            return 2
        return 0

    monkeypatch.setattr(cnnlab.cli, "main", fake_main)
    monkeypatch.setattr(reliability_harness, "HANG_SECONDS", 0.5)
    expected = {
        ("crash", "error"): "traceback",
        ("hang", "error"): "hang",
        ("payload", "error"): "payload ran",
        ("write", "error"): "files changed",
        ("two lines", "error"): "wrong outcome",
        ("wrong name", "error"): "wrong outcome",
        ("ok", "error"): "wrong outcome",
        ("clean", "accept"): "wrong outcome",
        ("clean", "error"): "clean error",
        ("ok", "accept"): "accepted",
    }
    for i, ((what, expect), outcome) in enumerate(expected.items()):
        names = ("nowhere",) if what == "wrong name" else ("optim.lr",) * (expect == "error")
        case = Case("test", what, ("{tmp}", what), {"f": b"1"}, expect, names)
        assert run_case(case, tmp_path / str(i)).outcome == outcome, (what, expect)
