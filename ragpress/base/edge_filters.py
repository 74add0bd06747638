"""Haystack filter dictionaries translated to Qdrant Edge ``Filter`` objects.

Semantics follow qdrant-haystack's translation for a Qdrant server, so the same filter selects the same points
in both stores (the congruence tests check it):

- ``!=`` and ``not in`` are ``must_not`` clauses, so a point *without* the field matches them;
- a comparison whose value is ``None`` is an error (Qdrant has no "equals null" match);
- ``>``/``>=``/``<``/``<=`` take numbers, or ISO-8601 strings compared as datetimes;
- ``NOT`` is ``must_not`` over its conditions, i.e. *none* of them may hold (qdrant-haystack's reading; Haystack's
  in-memory store reads it as "not all of them"; the two agree for a single condition).

Field names are payload paths: ``meta.tenant``, ``id``, ``content``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import qdrant_edge as edge
from haystack.errors import FilterError

_LOGICAL = ("AND", "OR", "NOT")
_RANGES = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def to_edge_filter(filters: dict[str, Any] | None) -> edge.Filter | None:
    """The Edge filter for a Haystack filter dictionary; ``None`` (or ``{}``) means no filter."""
    if not filters:
        return None
    if not isinstance(filters, dict) or "operator" not in filters:
        raise FilterError("Filters must be a dictionary with an 'operator' key (Haystack 2+ filter syntax).")
    condition = _condition(filters)
    return condition if isinstance(condition, edge.Filter) else edge.Filter(must=[condition])


def _condition(item: dict[str, Any]) -> Any:
    operator = item.get("operator")
    if operator in _LOGICAL:
        return _logical(operator, item)
    if "field" not in item:
        raise FilterError(f"Comparison '{operator}' needs a 'field'.")
    return _comparison(operator, item["field"], item.get("value"))


def _logical(operator: str, item: dict[str, Any]) -> edge.Filter:
    conditions = item.get("conditions")
    if not conditions:
        raise FilterError(f"'{operator}' needs a non-empty 'conditions' list.")
    parts = [_condition(c) for c in conditions]
    if operator == "AND":
        return edge.Filter(must=parts)
    if operator == "OR":
        return edge.Filter(should=parts)
    return edge.Filter(must_not=parts)


def _comparison(operator: str, field: str, value: Any) -> Any:
    if value is None:
        raise FilterError(f"Comparison '{operator}' on '{field}' needs a value; null is not comparable in Qdrant.")
    if operator == "==":
        return _equals(field, value)
    if operator == "!=":
        return edge.Filter(must_not=[_equals(field, value)])
    if operator == "in":
        return _any_of(field, _as_list(operator, value))
    if operator == "not in":
        return edge.Filter(must_not=[_any_of(field, _as_list(operator, value))])
    if operator in _RANGES:
        return _range(field, _RANGES[operator], value)
    raise FilterError(f"Unknown filter operator '{operator}'.")


def _equals(field: str, value: Any) -> Any:
    if isinstance(value, bool):
        # qdrant-edge-py 0.9.0 turns MatchValue(True) into MatchValue(1), which matches no boolean: refuse
        # rather than silently return nothing. Store flags as keywords ("yes"/"no") or integers instead.
        raise FilterError(f"Qdrant Edge (qdrant-edge-py 0.9.0) cannot match booleans ('{field}'); "
                          "store the flag as a keyword or an integer.")
    if isinstance(value, float):
        # MatchValue takes keywords, integers and booleans only; a float equality is a closed range.
        return edge.FieldCondition(key=field, range=edge.RangeFloat(gte=value, lte=value))
    if isinstance(value, (str, int, bool)):
        return edge.FieldCondition(key=field, match=edge.MatchValue(value))
    raise FilterError(f"Cannot compare '{field}' with a {type(value).__name__}.")


def _any_of(field: str, values: list[Any]) -> Any:
    homogeneous = all(isinstance(v, str) for v in values) or all(
        isinstance(v, int) and not isinstance(v, bool) for v in values)
    if values and homogeneous:
        return edge.FieldCondition(key=field, match=edge.MatchAny(values))
    # Mixed, float or boolean lists: one equality per value. An empty list matches nothing, like Qdrant's.
    return edge.Filter(should=[_equals(field, v) for v in values]) if values else edge.Filter(
        must=[edge.HasIdCondition(set())])


def _as_list(operator: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise FilterError(f"'{operator}' needs a list value, got {type(value).__name__}.")
    return value


def _range(field: str, bound: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FilterError(f"'{field}' can only be range-compared with a number or an ISO-8601 date string.")
    if isinstance(value, str):
        try:
            datetime.fromisoformat(value)
        except ValueError as exc:
            raise FilterError(f"'{value}' is neither a number nor an ISO-8601 date.") from exc
        return edge.FieldCondition(key=field, range=edge.RangeDateTime(**{bound: value}))
    return edge.FieldCondition(key=field, range=edge.RangeFloat(**{bound: float(value)}))
