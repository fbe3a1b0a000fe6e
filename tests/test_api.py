"""The public API a user's script sees: cnnlab.training / load_config / load_run."""

import pytest

import cnnlab


def test_train_accepts_a_plain_dict_and_load_run_reads_it_back(tmp_path):
    result = cnnlab.train(
        {"train": {"epochs": 1}, "model": {"width": 8}, "run": {"dir": str(tmp_path)}}
    )
    run = cnnlab.load_run(result.path)
    assert run.summary["status"] == "completed"
    assert len(run.metrics) == 1 and run.config["train"]["epochs"] == 1
    assert cnnlab.load_config(overrides=["train.epochs=1"]).train.epochs == 1


def test_importing_cnnlab_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, cnnlab; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "False"


@pytest.mark.slow
def test_resume_is_public(tmp_path):
    import cnnlab

    first = cnnlab.train(
        {"train": {"epochs": 1}, "model": {"width": 8}, "run": {"dir": str(tmp_path)}}
    )
    more = cnnlab.resume(first.path, ["train.epochs=2"])
    assert more.path == first.path and more.summary["epochs_run"] == 2
