"""One small finished run on the embedded digits set, shared by the analysis tests."""

import pytest

from cnnlab.analyze.trained import load_trained
from cnnlab.config import load_config
from cnnlab.training.experiment import train


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:  # conftest's cache fixture is per-function
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))
        config = load_config(
            overrides=[
                "model.width=8",
                "train.epochs=3",
                "train.device=cpu",
                "train.precision=fp32",
                f"run.dir={root}",
            ]
        )
        return train(config).path


@pytest.fixture(scope="session")
def trained(run_dir):
    return load_trained(run_dir, device="cpu")
