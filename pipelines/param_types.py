"""What a request's ``params`` may hand a component at query time: plain values of the socket's declared type.

A socket typed ``list[Document]``, a callback or the server's ``Scope`` takes no value from a request: JSON
cannot make those objects, and a component given a dict where it expects one fails deep inside its run.
A value of the wrong plain type (``"top_k": "5"``) is the caller's mistake and is said so, before anything runs.
"""

from __future__ import annotations

import math
import types
from typing import Any, Literal, Union, get_args, get_origin

_PLAIN = (bool, int, float, str)


def value_problem(value: Any, annotation: Any) -> str | None:
    """None when ``value`` (decoded JSON) fits ``annotation``, else what the socket takes."""
    if not plain_type(annotation):
        return "this input cannot be set from a request"
    if _fits(value, annotation):
        return None
    return f"expects {_describe(annotation)}, got {type(value).__name__} {_preview(value)}"


def _options(annotation: Any) -> tuple[Any, ...] | None:
    origin = get_origin(annotation)
    return get_args(annotation) if origin in (Union, types.UnionType) else None


def plain_type(annotation: Any) -> bool:
    """Whether JSON can hold a value of this type (so a request or a YAML file may give one)."""
    options = _options(annotation)
    if options is not None:
        return all(plain_type(option) for option in options)
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin is list:
        return all(plain_type(arg) for arg in get_args(annotation))
    if origin is dict:
        return get_args(annotation)[:1] in ((), (str,))
    return annotation in (*_PLAIN, type(None), Any)


def _fits(value: Any, annotation: Any) -> bool:
    options = _options(annotation)
    if options is not None:
        return any(_fits(value, option) for option in options)
    origin = get_origin(annotation)
    if origin is Literal:
        return any(value == arg and type(value) is type(arg) for arg in get_args(annotation))
    if origin is list:
        (item,) = get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is Any:
        return True
    if annotation is type(None):
        return value is None
    if annotation is float:  # JSON writes 1 for 1.0; bool is an int in Python but not a number in JSON
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is int:  # within 64 bits: what a tensor, a database column or the engine can hold
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    return isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    options = _options(annotation)
    if options is not None:
        return " or ".join(_describe(option) for option in options)
    origin = get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in get_args(annotation))
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", None) or str(annotation)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
