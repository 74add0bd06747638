"""Filter syntax: what check_filters lets through, what it refuses and why, and that the engine takes all it allows."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from haystack.errors import FilterError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragpress.base.edge_filters import to_edge_filter
from ragpress.base.filter_syntax import check_filters
from ragpress.base.input_limits import MAX_FILTER_CONDITIONS, MAX_FILTER_DEPTH, MAX_FILTER_VALUES, MAX_INT

pytestmark = pytest.mark.unit
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def eq(field: str = "meta.year", value: Any = 2024, operator: str = "==") -> dict[str, Any]:
    return {"field": field, "operator": operator, "value": value}


def nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = eq()
    for _ in range(depth):
        node = {"operator": "AND", "conditions": [node]}
    return node


VALID = [
    None, {}, eq(), eq("id", "doc-1"), eq("content", "exact text"), eq("meta.score", 0.5, ">="),
    eq("meta.tags", ["a", "b"], "in"), eq("meta.tags", [1, 2.5, "x", True], "not in"), eq("meta.x", None, "!="),
    eq("meta.when", "2024-05-01", "<"), eq("meta.when", "2024-05-01T12:30:00.123+02:00", ">"),
    eq("meta.when", "2024-05-01 12:30", "<="), eq("meta.when", "2024-05-01T12:30:00Z", ">"),
    eq("meta.source.year"), eq('meta."key with spaces.and dots"'), eq('meta."Zürich".plz'), eq("meta.a-b_C9"),
    eq("meta.n", MAX_INT), eq("meta.n", -(2**63)),
    {"operator": "OR", "conditions": [eq(), {"operator": "NOT", "conditions": [eq("meta.level", "chunk")]}]},
    nested(MAX_FILTER_DEPTH),
    {"operator": "AND", "conditions": [eq() for _ in range(MAX_FILTER_CONDITIONS)]},
    eq("meta.tags", list(range(MAX_FILTER_VALUES)), "in"),
]


@pytest.mark.parametrize("filters", VALID)
def test_a_valid_filter_passes_and_the_engine_builds_it(filters: Any) -> None:
    check_filters(filters)
    with contextlib.suppress(FilterError):  # a valid filter Edge cannot evaluate (null, booleans): its own refusal
        to_edge_filter(filters)


@pytest.mark.parametrize(("filters", "words"), [
    ({"conditions": "abc"}, ["filters needs an 'operator'"]),
    ({"operator": "AND", "conditions": "abc"}, ["'AND' needs 'conditions', a non-empty list"]),
    ({"operator": "AND", "conditions": []}, ["non-empty list"]),
    ({"operator": "AND", "conditions": ["abc"]}, ["filters.conditions[0] must be an object", "a string"]),
    (eq(field=5), ["filters.field must be a string", "an integer"]),
    ({"meta.year": 2024}, ["Haystack 1.x syntax"]),
    (eq(operator="~"), ["'~' is not a filter operator"]),
    (eq(operator=["=="]), ["is not a filter operator"]),
    ({"field": "meta.x", "operator": "=="}, ["missing ['value']"]),
    ({**eq(), "extra": 1}, ["unexpected keys", "'extra'"]),
    ({"operator": "OR", "conditions": [eq()], "field": "x"}, ["unexpected keys", "'field'"]),
    (nested(MAX_FILTER_DEPTH + 1), [f"{MAX_FILTER_DEPTH + 1} levels deep; the limit is {MAX_FILTER_DEPTH}"]),
    ({"operator": "OR", "conditions": [eq() for _ in range(MAX_FILTER_CONDITIONS + 1)]},
     [f"more than {MAX_FILTER_CONDITIONS} comparisons"]),
    (eq("meta.t", list(range(MAX_FILTER_VALUES + 1)), "in"), [f"more than {MAX_FILTER_VALUES} values"]),
    (eq("meta.t", "a", "in"), ["'in' needs a list of values"]),
    (eq("meta.t", [[1]], "in"), ["filters.value[0] must be a string, number"]),
    (eq("meta.t", {"a": 1}), ["must be a string, number", "an object"]),
    (eq("meta.n", MAX_INT + 1), ["beyond signed 64 bits"]),
    (eq("meta.n", float("inf")), ["finite"]),
    (eq("meta.n", [1], ">"), ["compares numbers or ISO-8601 date strings, not a list"]),
    (eq("meta.n", True, ">"), ["not a boolean"]),
    (eq("meta.s", "x\ud800"), ["filters.value", "lone surrogate"]),
    (eq("meta.\ud800"), ["filters.field", "lone surrogate"]),
])
def test_a_malformed_filter_is_refused_saying_what_and_where(filters: Any, words: list[str]) -> None:
    with pytest.raises(ValueError) as refused:
        check_filters(filters)
    message = str(refused.value)
    assert all(word in message for word in words), message
    message.encode("utf-8")


@pytest.mark.parametrize("field", [
    "", "meta", "meta.", "meta..x", ".meta", "meta.a b", "meta.a.b.c", 'meta."a\\b"', 'meta."a"b"', 'meta.""',
    "meta.x[]", "meta.x\n", "meta.é", "embedding", "score", "blob", "Meta.x", "meta.*",
])
def test_a_field_the_engine_cannot_parse_or_no_payload_has_is_refused(field: str) -> None:
    with pytest.raises(ValueError, match="is not a field"):
        check_filters(eq(field))


@pytest.mark.parametrize("value", [
    "20240101", "2024-W01-1", "2024-01-01T00", "2024-01-01T00:00Z", "2024-13-01", "2024-02-30", "not a date",
    "2024-01-01T00:00:00.1234567890", "٢٠٢٤-٠١-٠١",
])
def test_a_range_over_a_string_takes_only_the_dates_the_engine_parses(value: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        check_filters(eq("meta.when", value, ">="))


_SEGMENT = st.one_of(st.from_regex(r"[A-Za-z0-9_-]{1,12}", fullmatch=True),
                     st.text(st.characters(exclude_characters='"\\', exclude_categories=["Cc", "Cs"]),
                             min_size=1, max_size=12).map(lambda key: f'"{key}"'))


@FUZZ
@given(st.lists(_SEGMENT, min_size=1, max_size=2))
def test_every_meta_path_the_check_allows_the_engine_parses(segments: list[str]) -> None:
    field = "meta." + ".".join(segments)
    check_filters(eq(field))
    to_edge_filter(eq(field))  # raises ValueError("invalid JSON path") for a path Qdrant cannot parse


@FUZZ
@given(st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,9})?"
                     r"(Z|[+-][0-9]{2}:[0-9]{2})?)?)?", fullmatch=True))
def test_every_date_the_check_allows_the_engine_parses(value: str) -> None:
    try:
        check_filters(eq("meta.when", value, ">="))
    except ValueError:
        return  # not a calendar date: refused before the engine sees it
    to_edge_filter(eq("meta.when", value, ">="))


@FUZZ
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["field", "operator", "value", "conditions", "x"]) | st.text(
                        max_size=4), inner, max_size=4), max_leaves=20))
def test_anything_the_check_allows_builds_an_engine_filter_or_a_filter_error(filters: Any) -> None:
    try:
        check_filters(filters)
    except ValueError:
        return
    with contextlib.suppress(FilterError):
        to_edge_filter(filters)
