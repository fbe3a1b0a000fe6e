"""The documented inline layer list, [conv(32, 3), bn, ...], works as written: YAML's flow list
splits at the commas inside parentheses and the schema joins the pieces back."""

import pytest

from cnnlab.cli import main
from cnnlab.config import load_config

WRITTEN = "[conv(32, 3, stride=2), bn, relu, maxpool(2), dropout(0.5), gap, linear]"
MEANT = ["conv(32, 3, stride=2)", "bn", "relu", "maxpool(2)", "dropout(0.5)", "gap", "linear"]


def test_on_the_command_line():
    config = load_config(overrides=["model.name=layers", f"model.layers={WRITTEN}"])
    assert config.model.layers == MEANT


def test_in_a_yaml_file_as_spec_py_documents_it(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text(f"model:\n  name: layers\n  layers: {WRITTEN}\n")
    assert load_config([path]).model.layers == MEANT


def test_the_readme_command_builds_the_net(capsys):
    argv = ["summary", "model.name=layers", "model.layers=[conv(32, 3), bn, relu, gap, linear]"]
    assert main(argv) == 0
    assert "Conv2d             32×8×8" in capsys.readouterr().out


@pytest.mark.parametrize("layers", [["conv(32, 3)", "bn"], "[bn, relu, linear]"])
def test_lists_that_need_no_joining_are_kept(layers):
    config = load_config(overrides=["model.name=layers", f"model.layers={layers}"])
    assert config.model.layers == (
        ["conv(32, 3)", "bn"] if isinstance(layers, list) else ["bn", "relu", "linear"]
    )
