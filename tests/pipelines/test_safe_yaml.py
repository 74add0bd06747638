"""Pipeline YAML is parsed within bounds: nothing in the text can make parsing or copying it expensive."""

from __future__ import annotations

import pytest

from ragpress.pipelines.safe_yaml import MAX_YAML_BYTES, MAX_YAML_DEPTH, MAX_YAML_NODES, YamlRefused, load_bounded

pytestmark = pytest.mark.unit


def test_plain_yaml_becomes_plain_data() -> None:
    assert load_bounded("a: {b: [1, 2.5, null, true, 'x']}\n") == {"a": {"b": [1, 2.5, None, True, "x"]}}


@pytest.mark.parametrize(("text", "phrase"), [
    ("a: &a [lol, lol]\nb: [*a, *a]\n", "anchors and aliases"),
    ("base: &b {x: 1}\nother:\n  <<: *b\n", "anchors and aliases"),
    ("a: !!binary aGVsbG8=\n", "tags"),
    ("a: !!python/object/apply:os.system ['true']\n", "tags"),
    ("a: 2001-12-14\n", "a date is not accepted"),
    ("a: .inf\n", "finite"),
    ("1: x\n", "not a string"),
    ("a: b: c\n", "YAML syntax error"),
    ('a: "\\ud800"\n', "lone surrogate"),
    ('"\\udfff": 1\n', "lone surrogate"),
])
def test_what_could_expand_surprise_or_not_round_trip_is_refused(text: str, phrase: str) -> None:
    with pytest.raises(YamlRefused, match=phrase):
        load_bounded(text)


def test_the_alias_bomb_is_refused_before_it_expands() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True))
    with pytest.raises(YamlRefused, match="anchors") as info:
        load_bounded(bomb)
    assert info.value.line == 1  # the first anchor, before any alias could expand it


def test_size_depth_and_node_limits_are_named_in_the_refusal() -> None:
    with pytest.raises(YamlRefused, match=f"the limit is {MAX_YAML_BYTES:,}"):
        load_bounded("a: " + "x" * MAX_YAML_BYTES)
    with pytest.raises(YamlRefused, match=f"deeper than {MAX_YAML_DEPTH}"):
        load_bounded("[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1))
    with pytest.raises(YamlRefused, match=f"more than {MAX_YAML_NODES:,} values"):
        load_bounded("[" + ", ".join(["1"] * MAX_YAML_NODES) + "]")
    load_bounded("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH)
