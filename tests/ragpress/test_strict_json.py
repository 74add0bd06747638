"""Request bodies parsed within bounds: nesting measured before parsing, numbers and strings the index can store."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragpress.base.input_limits import MAX_INT, MAX_JSON_DEPTH, MIN_INT
from ragpress.base.strict_json import JsonRefused, loads, nesting_exceeds

pytestmark = pytest.mark.unit


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def refused(raw: bytes) -> JsonRefused:
    with pytest.raises(JsonRefused) as caught:
        loads(raw)
    return caught.value


@pytest.mark.parametrize(("raw", "status", "code", "words"), [
    (b"", 400, "empty_body", ["empty"]),
    (b'{"a": "caf\xe9"}', 400, "invalid_utf8", ["UTF-8"]),
    (b"{not json", 400, "invalid_json", ["not valid JSON"]),
    (b"[" * 100_000, 400, "json_too_deep", [f"limit is {MAX_JSON_DEPTH}"]),
    (b'{"a": ' * 1000 + b"1" + b"}" * 1000, 400, "json_too_deep", ["more than 32 levels"]),
    (b'{"x": NaN}', 400, "invalid_json", ["NaN is not a JSON number"]),
    (b'{"x": -Infinity}', 400, "invalid_json", ["-Infinity"]),
    (b'{"x": 1e400}', 422, "invalid_request", ["'1e400'", "64-bit float"]),
    (b'{"x": -1.5e999}', 422, "invalid_request", ["64-bit float"]),
    (b'{"x": 9223372036854775808}', 422, "invalid_request", ["beyond signed 64 bits"]),
    (b'{"x": -9223372036854775809}', 422, "invalid_request", ["beyond signed 64 bits"]),
    (b'{"x": ' + b"9" * 5000 + b"}", 422, "invalid_request", ["beyond signed 64 bits"]),
    (b'{"documents": [{"text": "a \\ud800 b"}]}', 422, "invalid_request",
     ["body.documents[0].text", "lone surrogate", "U+D800"]),
    (b'{"meta": {"\\udfff": 1}}', 422, "invalid_request", ["a key of body.meta", "U+DFFF"]),
])
def test_a_body_beyond_a_bound_is_refused_with_its_status_and_code(raw: bytes, status: int, code: str,
                                                                    words: list[str]) -> None:
    error = refused(raw)
    assert (error.status, error.code) == (status, code)
    assert all(word in error.message for word in words), error.message
    error.message.encode("utf-8")


def test_a_body_within_every_bound_parses_as_json_does() -> None:
    body = {"nested": [[[[{"a": 1}]]]], "max": MAX_INT, "min": MIN_INT, "float": 1.7976931348623157e308,
            "tiny": 5e-324, "pair": "😀 \ud83d\ude00", "escapes": 'q"uo\\te [not a bracket] {nor this}'}
    raw = json.dumps(body).encode()
    assert loads(raw) == json.loads(raw)
    deepest = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert loads(deepest) == json.loads(deepest)


def test_brackets_inside_strings_do_not_count_and_unterminated_strings_stay_linear() -> None:
    assert not nesting_exceeds(json.dumps({"t": "[" * 10_000}).encode(), 2)
    # many escaped quotes with no closing one: a backtracking pattern would take minutes here
    assert not nesting_exceeds(b'x"' + b'\\"' * 200_000, 2)
    assert refused(b'{"a": "' + b'\\"' * 200_000).code == "invalid_json"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(MIN_INT, MAX_INT) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.sampled_from('ab"\\[]{}\n é'), max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=30)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(JSON, st.integers(1, 6))
def test_the_nesting_measured_before_parsing_is_the_nesting_json_parses(value: Any, limit: int) -> None:
    raw = json.dumps(value).encode()
    assert nesting_exceeds(raw, limit) == (depth(value) > limit)
