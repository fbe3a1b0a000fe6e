"""config.names: short labels of config values."""

import pytest

from cnnlab.config.names import backbone_label


@pytest.mark.parametrize(
    ("spec", "label"),
    [
        ("torchvision:resnet18", "torchvision:resnet18"),
        ("runs/20261123-101500-digits-cnn", "digits-cnn"),
        ("runs/20261123-101500-digits-cnn/checkpoints/best.safetensors", "digits-cnn"),
        ("/weights/tops.safetensors", "tops.safetensors"),
    ],
)
def test_backbone_label(spec, label):
    assert backbone_label(spec) == label


def test_the_run_stamp_reads_back_and_strips(tmp_path):
    from datetime import datetime

    from cnnlab.config.names import RUN_STAMP, run_stamp, run_started, without_stamp

    stamp = run_stamp()
    run = tmp_path / f"{stamp}-digits-cnn"
    run.mkdir()
    assert run_started(run) == datetime.strptime(stamp, RUN_STAMP)
    assert without_stamp(run.name) == "digits-cnn"
    assert without_stamp("digits-cnn") == "digits-cnn"


def test_a_name_without_a_valid_stamp_falls_back_to_config_mtime(tmp_path):
    from cnnlab.config.names import run_started

    run = tmp_path / "20261399-999999-odd"  # digits, not a date
    run.mkdir()
    assert run_started(run) is None  # no config.yaml either
    (run / "config.yaml").write_text("{}\n")
    assert run_started(run) is not None
