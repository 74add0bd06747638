"""Bounds on what a caller may send, in one place (docs/security.md lists them).

Every request body and every document a tenant sends is held to these before it is parsed into objects, runs
a pipeline or reaches the index. They are fixed, not settings: they protect the engine and the parser, and
each is far above what a real document's metadata or a real filter needs.

- JSON bodies: nested at most ``MAX_JSON_DEPTH`` arrays/objects deep; numbers finite, integers within signed
  64 bits; strings valid Unicode (no lone surrogates).
- A document's ``meta``: ``MAX_META_KEYS`` keys (nested ones included), each at most ``MAX_META_KEY_CHARS``
  characters, ``MAX_META_BYTES`` as compact UTF-8 JSON, objects nested at most ``MAX_META_NESTING`` level.
  The embedded engine cannot read back a payload nested about 128 levels deep (its decoders' recursion
  limit), so nesting is the one bound that keeps the index readable.
- Query filters: ``MAX_FILTER_DEPTH`` levels of AND/OR/NOT, ``MAX_FILTER_CONDITIONS`` comparisons and
  ``MAX_FILTER_VALUES`` values in all ``in``/``not in`` lists together.
- Pipeline versions: ``0..MAX_VERSION`` (the registry stores them as SQL integers).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MAX_JSON_DEPTH = 32

MAX_META_KEYS = 64
MAX_META_KEY_CHARS = 128
MAX_META_BYTES = 16 * 1024
MAX_META_NESTING = 1

MAX_FILTER_DEPTH = 8
MAX_FILTER_CONDITIONS = 64
MAX_FILTER_VALUES = 1024

MAX_VERSION = 2**31 - 1

# The engine's integers are signed 64-bit: a larger one is silently stored as a float, or refused by a filter.
MIN_INT = -(2**63)
MAX_INT = 2**63 - 1

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone UTF-16 surrogate, or None. Python's JSON parser joins a valid pair into one
    character, so any surrogate left in a parsed string is half of one, and no UTF-8 encoder can write it."""
    found = _SURROGATE.search(text)
    return None if found is None else found.start()


def surrogate_problem(text: str, what: str) -> str | None:
    """Why ``text`` (named ``what``) is not valid Unicode, or None."""
    index = lone_surrogate(text)
    if index is None:
        return None
    return (f"{what} holds a lone surrogate (U+{ord(text[index]):04X} at character {index}); send valid Unicode "
            "(a character above U+FFFF is a surrogate pair in JSON, never half of one)")


def check_unicode(text: str, what: str, error: Callable[[str], Exception] = ValueError) -> None:
    """Raise ``error`` with the reason when ``text`` holds a lone surrogate."""
    problem = surrogate_problem(text, what)
    if problem is not None:
        raise error(problem)


def kind_of(value: Any) -> str:
    """A JSON value's kind, for a message ("an object", "a string", ...)."""
    kinds = {dict: "an object", list: "a list", tuple: "a list", str: "a string", bool: "a boolean",
             int: "an integer", float: "a number", type(None): "null"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), f"a {type(value).__name__}")


def shown(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message: escaped (so a surrogate or control character cannot break the
    response) and cut to ``limit`` characters."""
    cut = text if len(text) <= limit else text[:limit] + "…"
    return repr(cut)
