"""A request's params hand a component only plain values of the type its input declares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytest
from haystack import Document

from ragpress.base.schema import Scope
from ragpress.pipelines.param_types import value_problem

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("value", "annotation"), [
    (5, int | None), (None, int | None), (0.5, float | None), (3, float), ("input", Literal["input", "fused"]),
    (["a", "b"], list[str]), ({"x": 1}, dict[str, Any]), (True, bool | None), (2**63 - 1, int),
])
def test_values_of_the_declared_type_are_taken(value: Any, annotation: Any) -> None:
    assert value_problem(value, annotation) is None


@pytest.mark.parametrize(("value", "annotation", "said"), [
    ("5", int | None, "expects int or null, got str '5'"),
    (True, int | None, "got bool"),
    (2**63, int, "expects int"),
    (float("inf"), float, "expects float"),
    ("other", Literal["input", "fused"], "one of 'input', 'fused'"),
    ([1], list[str], "expects list"),
])
def test_values_of_another_type_are_refused_saying_what_the_input_takes(value: Any, annotation: Any,
                                                                         said: str) -> None:
    assert said in value_problem(value, annotation)


@pytest.mark.parametrize("annotation", [list[Document], Scope, Callable[[str], None] | None, dict[int, str]])
def test_inputs_that_take_objects_take_nothing_from_a_request(annotation: Any) -> None:
    assert value_problem([], annotation) == "this input cannot be set from a request"
