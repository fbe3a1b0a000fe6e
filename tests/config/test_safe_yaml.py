"""The one YAML reader: plain data in, every other input one line out, fast, whatever its size."""

import os

import pytest

from cnnlab.config import load_config
from cnnlab.config.safe_yaml import MAX_DEPTH, YamlSyntaxError, load_yaml, quote
from cnnlab.errors import ConfigError

BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"{c}: &{c} [{', '.join(['*' + p] * 9)}]"
            for p, c in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def refused(text: str, *fragments: str, source: str = "my.yaml") -> str:
    with pytest.raises(ConfigError) as e:
        load_yaml(text, source)
    message = str(e.value)
    assert "\n" not in message and len(message) < 300, message
    assert message.startswith(source)
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize(
    "text, expected",
    [
        ("~", None),
        ("null", None),
        ("", None),
        ("0.05", 0.05),
        ("1e-3", "1e-3"),  # YAML 1.1: no dot, so a string; the schema reads it as a number
        ("-7", -7),
        ("0x10", 16),
        ("true", True),
        ("off", False),
        ("adam", "adam"),
        ("'3'", "3"),
        ("2001-13-45", "2001-13-45"),  # dates are not resolved: no ValueError, just text
        ("2024-01-01", "2024-01-01"),
        ("=", "="),
        ("[1, [2, 3]]", [1, [2, 3]]),
        ("{op: crop, padding: 1}", {"op": "crop", "padding": 1}),
        ("a: &x [1, 2]\nb: *x", {"a": [1, 2], "b": [1, 2]}),  # a few aliases are fine
        (
            "base: &b {lr: 1}\nopt:\n  <<: *b\n  name: sgd",
            {"base": {"lr": 1}, "opt": {"lr": 1, "name": "sgd"}},
        ),
    ],
)
def test_plain_yaml_reads_as_before(text, expected):
    assert load_yaml(text, "x") == expected


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("!!float", "tag '!!float'"),
        ("!!timestamp 2001-13-45", "tag '!!timestamp'"),
        ("!!binary aGk=", "tag '!!binary'"),
        ("!!set {a, b}", "tag '!!set'"),
        ("!custom 3", "tag '!custom'"),
        ("!!str 3", "tag '!!str'"),
        ("a: !!python/object/apply:os.system ['true']", "!!python/object/apply:os.system"),
        ("[!!python/name:os.system '']", "!!python/name:os.system"),
    ],
)
def test_explicit_tags_are_refused_by_name(text, fragment):
    refused(text, fragment, "not accepted")


def test_a_tag_never_runs_its_payload(tmp_path):
    marker = tmp_path / "pwned"
    text = f"a: !!python/object/apply:os.system ['touch {marker}']"
    refused(text, "not accepted")
    assert not marker.exists()


def test_billion_laughs_fails_fast_with_a_short_message():
    message = refused(BILLION_LAUGHS, "expands to more than", "aliases")
    assert "line " in message


def test_an_alias_inside_itself_is_refused():
    refused("a: &x [1, *x]", "alias *x refers to a value it is part of")


def test_deep_nesting_is_refused_not_a_recursion_error():
    refused("[" * 5000 + "]" * 5000, f"nested deeper than {MAX_DEPTH} levels")
    refused("a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 60)), "nested deeper")
    assert load_yaml("[" * MAX_DEPTH + "]" * MAX_DEPTH, "x") is not None


def test_a_key_given_twice_is_refused():
    refused("optim: {lr: 1}\noptim: {name: sgd}\n", "key 'optim' is given twice", "line 1")


def test_syntax_errors_name_the_line_and_stay_yaml_errors():
    import yaml

    with pytest.raises(YamlSyntaxError) as e:
        load_yaml("a: 1\nb: [1, 2\n", "my.yaml")
    assert isinstance(e.value, yaml.YAMLError)  # runs list --filter falls back on the text
    assert str(e.value).startswith("my.yaml line ")


def test_a_number_past_pythons_digit_limit_is_one_line():
    refused("9" * 5000, "cannot be read")


def test_quote_is_short_whatever_the_value():
    big = [list(range(1000))] * 1000
    assert len(quote(big)) <= 100
    assert len(quote("x" * 10**6)) <= 100
    assert quote("abc") == "'abc'"


# ---------------------------------------------------------------- files and overrides


def test_config_file_bomb_ends_in_one_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    with pytest.raises(ConfigError, match=r"bomb\.yaml line \d+: expands to more than"):
        load_config([path])


def test_config_files_that_are_not_regular_files_never_block(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config([fifo])
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config([tmp_path])
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config(["/dev/zero"])


def test_huge_and_binary_config_files_are_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_config([big])
    binary = tmp_path / "weights.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config([binary])


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("optim.lr=!!float", "tag '!!float' is not accepted"),
        ("optim.lr=!!timestamp 2001-13-45", "tag '!!timestamp'"),
        ("optim.lr=" + "[" * 5000 + "]" * 5000, "nested deeper"),
        ("a." * 5000 + "b=1", "a key of 5001 parts"),
    ],
)
def test_bad_override_values_are_one_short_line(override, fragment):
    with pytest.raises(ConfigError) as e:
        load_config(overrides=[override])
    message = str(e.value)
    assert fragment in message and "\n" not in message and len(message) < 300, message


def test_a_huge_value_is_quoted_short_in_the_message():
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["optim.lr=" + "9" * 3000 + "x"])
    assert str(e.value).startswith("optim.lr = '9999")
    assert len(str(e.value)) < 400


def test_control_characters_are_one_line_not_a_reader_traceback():
    refused("\x00\x01\x02", "not valid YAML", "unacceptable character")
