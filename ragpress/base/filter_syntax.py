"""Haystack 2/3 filter syntax, checked before a filter reaches a pipeline or the index.

A filter is a comparison ``{"field", "operator", "value"}`` or a logic node ``{"operator": "AND"|"OR"|"NOT",
"conditions": [...]}``. ``check_filters`` refuses anything else with a ValueError saying what is wrong and where,
so a malformed filter is the caller's 422 instead of an exception deep in a retriever. It also holds filters to
what the index engines take: field paths their JSON-path parser accepts, integers within signed 64 bits,
finite numbers, dates in the ISO-8601 forms Qdrant parses, and the size bounds of ``ragpress.base.input_limits``.
Whether a store can evaluate a valid filter (Qdrant Edge matches no booleans and no null) stays the store's
to say.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from ragpress.base.input_limits import (
    MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH,
    MAX_FILTER_VALUES,
    MAX_INT,
    MAX_META_NESTING,
    MIN_INT,
    check_unicode,
    kind_of,
    shown,
)

COMPARISONS = ("==", "!=", ">", ">=", "<", "<=", "in", "not in")
LOGICAL = ("AND", "OR", "NOT")
TOP_LEVEL_FIELDS = ("id", "content")
_RANGES = (">", ">=", "<", "<=")
_LISTS = ("in", "not in")
# A meta key in a path: plain ASCII, or double-quoted for anything else (dots, spaces, other scripts). Qdrant's
# path parser has no escapes, so a quoted key cannot hold '"' or '\'.
_SEGMENT = r'(?:[A-Za-z0-9_-]+|"[^"\\\x00-\x1f\x7f]+")'
_META_PATH = re.compile(rf"meta(?:\.{_SEGMENT}){{1,{1 + MAX_META_NESTING}}}")
# The ISO-8601 forms Qdrant parses (a zone needs seconds); Python then checks the calendar.
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})?)?)?", re.ASCII)


def check_filters(filters: Any) -> None:
    """Return if ``filters`` is a valid, bounded filter (or None / {} for none); raise ValueError otherwise."""
    if filters is None or filters == {}:
        return
    counts = {"conditions": 0, "values": 0}
    _check_node(filters, "filters", 1, counts)


def _check_node(node: Any, where: str, depth: int, counts: dict[str, int]) -> None:
    if not isinstance(node, dict):
        raise ValueError(f"{where} must be an object (a comparison or AND/OR/NOT), not {kind_of(node)}")
    if "operator" not in node:
        hint = " (Haystack 1.x syntax is not supported)" if "field" not in node and "conditions" not in node else ""
        raise ValueError(f"{where} needs an 'operator': one of {', '.join(LOGICAL + COMPARISONS)}{hint}")
    operator = node["operator"]
    if operator in LOGICAL:
        _check_logic(node, where, depth, counts)
    elif operator in COMPARISONS:
        _check_comparison(node, where, counts)
    else:
        raise ValueError(f"{where}.operator {shown(str(operator))} is not a filter operator; use one of "
                         f"{', '.join(LOGICAL + COMPARISONS)}")


def _check_logic(node: dict[str, Any], where: str, depth: int, counts: dict[str, int]) -> None:
    _only_keys(node, {"operator", "conditions"}, where)
    if depth > MAX_FILTER_DEPTH:
        raise ValueError(f"{where} nests AND/OR/NOT {depth} levels deep; the limit is {MAX_FILTER_DEPTH}")
    conditions = node.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise ValueError(f"{where}: '{node['operator']}' needs 'conditions', a non-empty list of filters")
    for index, condition in enumerate(conditions):
        _check_node(condition, f"{where}.conditions[{index}]", depth + 1, counts)


def _check_comparison(node: dict[str, Any], where: str, counts: dict[str, int]) -> None:
    _only_keys(node, {"field", "operator", "value"}, where)
    counts["conditions"] += 1
    if counts["conditions"] > MAX_FILTER_CONDITIONS:
        raise ValueError(f"filters hold more than {MAX_FILTER_CONDITIONS} comparisons; that is the limit")
    if "field" not in node or "value" not in node:
        missing = [key for key in ("field", "value") if key not in node]
        raise ValueError(f"{where}: a comparison needs 'field', 'operator' and 'value'; missing {missing}")
    _check_field(node["field"], f"{where}.field")
    _check_value(node["operator"], node["value"], f"{where}.value", counts)


def _check_field(field: Any, where: str) -> None:
    if not isinstance(field, str):
        raise ValueError(f"{where} must be a string such as 'meta.year', not {kind_of(field)}")
    check_unicode(field, where)
    if field in TOP_LEVEL_FIELDS or _META_PATH.fullmatch(field):
        return
    raise ValueError(f"{where} {shown(field)} is not a field: use {' or '.join(map(repr, TOP_LEVEL_FIELDS))}, or "
                     f"'meta.' and a key (at most {1 + MAX_META_NESTING} keys deep, e.g. 'meta.source.year'); "
                     "quote a key with characters other than A-Z, a-z, 0-9, '_' and '-': 'meta.\"my key\"'")


def _check_value(operator: str, value: Any, where: str, counts: dict[str, int]) -> None:
    if operator in _LISTS:
        if not isinstance(value, list):
            raise ValueError(f"{where}: '{operator}' needs a list of values, not {kind_of(value)}")
        counts["values"] += len(value)
        if counts["values"] > MAX_FILTER_VALUES:
            raise ValueError(f"filters list more than {MAX_FILTER_VALUES} values in all; that is the limit")
        for index, item in enumerate(value):
            _check_scalar(item, f"{where}[{index}]")
    elif operator in _RANGES:
        _check_range_value(operator, value, where)
    else:
        _check_scalar(value, where)


def _check_range_value(operator: str, value: Any, where: str) -> None:
    if isinstance(value, str):
        check_unicode(value, where)
        if not _DATE.fullmatch(value) or not _is_date(value):
            raise ValueError(f"{where}: '{operator}' compares numbers or ISO-8601 dates such as '2024-05-01' or "
                             f"'2024-05-01T12:00:00+02:00'; {shown(value)} is neither")
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: '{operator}' compares numbers or ISO-8601 date strings, not {kind_of(value)}")
    _check_scalar(value, where)


def _check_scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_unicode(value, where)
    elif isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise ValueError(f"{where} is an integer beyond signed 64 bits, which no stored value can equal")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; filters compare finite numbers")
    else:
        raise ValueError(f"{where} must be a string, number, boolean or null, not {kind_of(value)}")


def _is_date(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _only_keys(node: dict[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(str(key) for key in node.keys() - allowed)
    if extra:
        raise ValueError(f"{where} has unexpected keys {[shown(k) for k in extra[:5]]}; "
                         f"this kind of filter takes {sorted(allowed)}")
