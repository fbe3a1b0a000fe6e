"""Shell completion: the completers of KEY=VALUE words, and TAB as bash asks for it (argcomplete's
environment-variable protocol) in a real `cnnlab` process."""

import os
import subprocess
import sys

import pytest

from cnnlab.cli import complete
from cnnlab.config.schema import valid_keys

BASH_WORDBREAKS = " \t\n\"'><=;|&(:"  # bash's default COMP_WORDBREAKS


def test_keys_complete_one_level_at_a_time():
    top = complete.overrides("")
    assert "recipe=" in top and "optim." in top and "train." in top
    assert not any(k.startswith("optim.l") for k in top)  # sections stay folded
    assert complete.overrides("t") == ["train.", "transfer.", "track."]
    assert complete.overrides("optim.l") == ["optim.lr=", "optim.lr_mult="]
    assert complete.overrides("train.early_stopping.p") == ["train.early_stopping.patience="]


def test_a_single_section_opens_into_its_keys():
    # one match "optim." would get a space after it from the shell; its keys do not
    assert complete.overrides("opt") == complete.overrides("optim.")
    assert "optim.lr=" in complete.overrides("opt")
    assert complete.overrides("train.early") == complete.overrides("train.early_stopping.")


def test_every_key_is_reachable():
    leaves = {k for k in valid_keys() if not any(o.startswith(f"{k}.") for o in valid_keys())}
    reached, todo = set(), [""]
    while todo:
        for word in complete.overrides(todo.pop()):
            if word.endswith("."):
                todo.append(word)
            else:
                reached.add(word.removesuffix("="))
    assert reached == leaves


def test_values_of_fixed_sets():
    assert complete.overrides("train.precision=") == [
        f"train.precision={p}" for p in ("auto", "fp32", "bf16", "fp16")
    ]
    assert complete.overrides("train.precision=b") == ["train.precision=bf16"]
    assert complete.overrides("model.se=") == ["model.se=true", "model.se=false"]
    assert complete.overrides("data.channels=") == ["data.channels=1", "data.channels=3"]
    assert complete.overrides("optim.lr=") == []  # a free number: nothing to offer
    assert complete.overrides("no.such=") == []


@pytest.mark.parametrize(
    "key,registry",
    [
        ("model.name", "cnnlab.models:MODELS"),
        ("data.name", "cnnlab.data:SOURCES"),
        ("optim.name", "cnnlab.training.optim:OPTIMIZERS"),
        ("schedule.name", "cnnlab.training.schedule:SCHEDULES"),
    ],
)
def test_registry_names_are_the_values_of_name_keys(key, registry):
    import importlib

    module, _, table = registry.partition(":")
    names = list(getattr(importlib.import_module(module), table))
    assert complete.overrides(f"{key}=") == [f"{key}={n}" for n in names]
    first = names[0]
    assert f"{key}={first}" in complete.overrides(f"{key}={first[:2]}")


def test_recipes_are_the_values_of_recipe():
    from cnnlab.config import recipe_names

    assert complete.overrides("recipe=") == [f"recipe={n}" for n in recipe_names()]


@pytest.mark.slow
def test_completing_a_key_does_not_import_torch():
    code = (
        "import sys; from cnnlab.cli import complete; from cnnlab.cli.parser import build_parser;"
        "build_parser(); complete.overrides('optim.'); complete.overrides('train.precision=');"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def tab(line: str, tmp_path) -> list[str]:
    """What `cnnlab` answers when bash asks for the completions of `line` (cursor at its end),
    as `eval "$(register-python-argcomplete cnnlab)"` makes it ask."""
    answer = tmp_path / "completions"
    env = {
        **os.environ,
        "_ARGCOMPLETE": "1",
        "_ARGCOMPLETE_SHELL": "bash",
        "_ARGCOMPLETE_SUPPRESS_SPACE": "1",
        "COMP_LINE": line,
        "COMP_POINT": str(len(line)),
        "COMP_TYPE": "9",
        "_ARGCOMPLETE_COMP_WORDBREAKS": BASH_WORDBREAKS,
        "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "cnnlab"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return answer.read_text().split("\013")


@pytest.mark.slow
def test_tab_completes_commands_options_keys_and_names(tmp_path):
    assert tab("cnnlab ru", tmp_path) == ["runs"]
    assert tab("cnnlab runs ex", tmp_path) == ["export"]
    assert "--resume" in tab("cnnlab train --re", tmp_path)
    assert tab("cnnlab train optim.l", tmp_path) == ["optim.lr=", "optim.lr_mult="]
    assert tab("cnnlab config show train.ep", tmp_path) == ["train.epochs="]
    assert tab("cnnlab runs list --filter optim.na", tmp_path) == ["optim.name="]
    assert tab("cnnlab list sch", tmp_path) == ["schedules"]
    # bash splits the word at '=': the answer is the value alone
    assert "resnet18" in tab("cnnlab train model.name=res", tmp_path)
    assert tab("cnnlab train train.precision=f", tmp_path) == ["fp32", "fp16"]
