"""The bounded recipe reader: size, depth, aliases, duplicate keys, exotic types, encodings."""

from __future__ import annotations

import os
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prunekit.errors import ConfigError
from prunekit.experiment.recipe_file import MAX_BYTES, MAX_DEPTH, parse_yaml, read_recipe_text


def _bomb(levels: int, width: int = 9) -> str:
    lines = ["a0: &a0 [" + ",".join(["1"] * width) + "]"]
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_plain_values_are_read():
    assert parse_yaml("a: {b: [1, 2.5, true, null, text]}\nlr: 1e-3\n", "r") == {"a": {"b": [1, 2.5, True, None, "text"]}, "lr": 0.001}


def test_small_aliases_still_work():
    assert parse_yaml("base: &b {lr: 0.1}\nother: *b\n", "r") == {"base": {"lr": 0.1}, "other": {"lr": 0.1}}


@pytest.mark.parametrize("levels", [7, 9, 20])
def test_alias_bomb_is_refused_fast(levels):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than 100,000 values"):
        parse_yaml(_bomb(levels), "r")
    assert time.perf_counter() - start < 2


def test_deep_nesting_is_refused_without_recursion_error():
    with pytest.raises(ConfigError, match=f"nesting deeper than {MAX_DEPTH} levels"):
        parse_yaml("x: " + "[" * 3000 + "]" * 3000, "r")
    with pytest.raises(ConfigError, match="nesting deeper"):
        parse_yaml("".join(" " * i + f"k{i}:\n" for i in range(100)), "r")


def test_duplicate_keys_are_refused_with_both_lines():
    with pytest.raises(ConfigError, match=r"duplicate key 'seed' at line 3 \(first at line 1\)"):
        parse_yaml("seed: 1\nname: x\nseed: 2\n", "r")


@pytest.mark.parametrize("text, what", [
    ("name: !!binary aGVsbG8=", "binary data"),
    ("name: 2020-01-01", "a date or time"),
    ("b: !!set {a, b}", "a set"),
    ("b: !!omap [{a: 1}]", "an ordered map"),
    ("b: !!pairs [{a: 1}]", "a list of pairs"),
    ("b: !!python/object:os.system {}", "could not determine a constructor"),
])
def test_exotic_types_are_refused(text, what):
    with pytest.raises(ConfigError, match=what):
        parse_yaml(text, "r")


def test_huge_integers_are_refused():
    with pytest.raises(ConfigError, match="an integer of 4400 digits"):
        parse_yaml("seed: " + "9" * 4400, "r")
    with pytest.raises(ConfigError, match=r"seed: .* is too large"):
        parse_yaml("seed: " + "9" * 20, "r")


def test_non_text_keys_are_refused():
    with pytest.raises(ConfigError, match=r"prune.overrides: key '1' is a int"):
        parse_yaml("prune: {overrides: {1: 0.5}}", "r")


def test_file_checks(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        read_recipe_text(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="not a regular file"):
        read_recipe_text(fifo)
    assert time.perf_counter() - start < 1
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * (MAX_BYTES + 1))
    with pytest.raises(ConfigError, match="limited to"):
        read_recipe_text(big)
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: ok\nseed: \xff\n")
    with pytest.raises(ConfigError, match="not UTF-8 text: byte 0xff at line 2"):
        read_recipe_text(bad)
    with pytest.raises(ConfigError, match="cannot read recipe"):
        read_recipe_text(tmp_path / "missing.yaml")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_gives_a_value_or_a_config_error(text):
    try:
        parse_yaml(text, "r")
    except ConfigError as exc:
        assert len(str(exc)) < 2000
