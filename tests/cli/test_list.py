"""cnnlab list: every registry entry with a line about it (timm's list_models), and --version."""

import pytest

from cnnlab.augment.registry import OPS
from cnnlab.cli import main
from cnnlab.cli.list_command import ENTRIES, KINDS
from cnnlab.config import recipe_names
from cnnlab.data.registry import SOURCES
from cnnlab.models.registry import MODELS
from cnnlab.training.optim import OPTIMIZERS
from cnnlab.training.schedule import SCHEDULES

REGISTRIES = {
    "models": MODELS.names(),
    "data": SOURCES.names(),
    "ops": OPS.names(),
    "optimizers": OPTIMIZERS.names(),
    "schedules": SCHEDULES.names(),
    "recipes": recipe_names(),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_entry_is_listed_with_a_line_about_it(kind, capsys):
    assert main(["list", kind]) == 0
    out = capsys.readouterr().out
    _, rows = ENTRIES[kind]()
    listed = [name for name, _, _ in rows]
    assert set(REGISTRIES[kind]) <= set(listed)
    for name, about, _ in rows:
        assert name in out
        assert about, f"{kind} {name} has no description"


def test_models_list_their_options_and_ops_their_parameters(capsys):
    main(["list", "models"])
    out = capsys.readouterr().out
    assert "model.depth" in out and "model.widen" in out  # wrn's options
    main(["list", "ops"])
    assert "padding=4" in capsys.readouterr().out  # crop's default


def test_an_unknown_kind_is_a_one_line_error(capsys):
    assert main(["list", "modles"]) == 2
    err = capsys.readouterr().err
    assert "did you mean models" in err and err.count("\n") == 1


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"cnnlab {version('cnnlab')}"
