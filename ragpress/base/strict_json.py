"""Request bodies parsed as JSON within bounds, before any of it becomes objects a route works with.

- Nesting is measured on the raw bytes (brackets outside strings) before parsing, so a body of 100,000 ``[``
  is refused in linear time instead of ending in a RecursionError inside the parser.
- ``NaN``/``Infinity`` (not JSON) and numbers no 64-bit float or signed 64-bit integer holds (``1e400``,
  ``2**70``) are refused while parsing: Python would read them as inf or as an arbitrarily large int, which no
  index engine stores and which a 4,300-digit integer turns into a ValueError.
- A string holding a lone surrogate (``"\\ud800"``), which no UTF-8 encoder can write, is refused with its
  place in the body.

Every refusal is a ``JsonRefused`` carrying the HTTP status, error code and a message saying what to change.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ragpress.base.input_limits import MAX_INT, MAX_JSON_DEPTH, MIN_INT, shown, surrogate_problem

# A JSON string, or an unterminated one running to the end. Possessive quantifiers and the end-of-input
# alternative keep it linear: a plain backtracking pattern is quadratic on many escaped quotes.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_OPENERS = frozenset(b"[{")
# A \uD800-\uDFFF escape: the only way a lone surrogate gets into a body that is valid UTF-8.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_INT64_DIGITS = 19


class JsonRefused(Exception):
    """The body is not bounded, valid JSON; ``status`` and ``code`` are what the API answers."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def loads(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The body's JSON value, or JsonRefused saying why not."""
    if not raw:
        raise JsonRefused(400, "empty_body", "The request body is empty; send a JSON object.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JsonRefused(400, "invalid_utf8", f"The request body is not valid UTF-8 (byte {exc.start}). "
                          "Encode documents as UTF-8 before sending.") from None
    if nesting_exceeds(raw, max_depth):
        raise JsonRefused(400, "json_too_deep", f"The request body nests arrays and objects more than {max_depth} "
                          f"levels deep; the limit is {max_depth}. Send flatter data.")
    try:
        data = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as exc:
        raise JsonRefused(400, "invalid_json", f"The request body is not valid JSON: {exc.msg} at line "
                          f"{exc.lineno}, column {exc.colno}.") from None
    if _SURROGATE_ESCAPE.search(raw):
        _check_strings(data)
    return data


def nesting_exceeds(raw: bytes, limit: int) -> bool:
    """Whether the JSON text in ``raw`` nests arrays/objects deeper than ``limit``, without parsing it.

    Malformed text may stop the count early (a closing bracket with nothing open): the parser then fails at or
    before that point, having gone no deeper than counted so far."""
    depth = 0
    for byte in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if byte in _OPENERS else -1
        if depth > limit:
            return True
        if depth < 0:
            return False
    return False


def _constant(name: str) -> Any:
    raise JsonRefused(400, "invalid_json", f"The request body is not valid JSON: {name} is not a JSON number. "
                      "Send finite numbers (or null).")


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise JsonRefused(422, "invalid_request", f"The number {shown(literal)} is beyond what a 64-bit float "
                          "holds; send finite numbers.")
    return value


def _int(literal: str) -> int:
    # Counting digits first: int() of a 5,000-digit literal raises ValueError, and a huge one costs time.
    value = int(literal) if len(literal.lstrip("-")) <= _INT64_DIGITS else None
    if value is None or not MIN_INT <= value <= MAX_INT:
        raise JsonRefused(422, "invalid_request", f"The integer {shown(literal)} is beyond signed 64 bits "
                          f"({MIN_INT}..{MAX_INT}); send a smaller number, or a string.")
    return value


def _check_strings(data: Any) -> None:
    """Refuse the first key or string holding a lone surrogate, naming where it is in the body."""
    stack: list[tuple[Any, str]] = [(data, "body")]
    while stack:  # iterative: the depth is already bounded, but a stack costs nothing
        value, where = stack.pop()
        if isinstance(value, str):
            _refuse_surrogate(value, where)
        elif isinstance(value, dict):
            for key, item in value.items():
                _refuse_surrogate(key, f"a key of {where}")
                stack.append((item, f"{where}.{key}" if key.isidentifier() else f"{where}[{shown(key)}]"))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{index}]") for index, item in enumerate(value))


def _refuse_surrogate(text: str, where: str) -> None:
    problem = surrogate_problem(text, where)
    if problem is not None:
        raise JsonRefused(422, "invalid_request", problem + ".")
