"""Document meta: what the API accepts and the index writer stores, and the message for what it refuses."""

from __future__ import annotations

from typing import Any

import pytest
from input_cases import meta_at_every_limit, meta_size

from ragpress.base.input_limits import MAX_INT, MAX_META_BYTES, MAX_META_KEY_CHARS, MAX_META_KEYS, MIN_INT
from ragpress.base.meta_limits import MetaError, check_meta, check_payload, check_unit_meta

pytestmark = pytest.mark.unit


def test_meta_at_every_limit_is_accepted() -> None:
    meta = meta_at_every_limit()
    assert meta_size(meta) == MAX_META_BYTES
    assert len(meta) + len(meta["nested"]) == MAX_META_KEYS
    check_meta(meta)
    with pytest.raises(MetaError, match="bytes as JSON"):
        check_meta({**meta, "pad": meta["pad"] + "p"})


@pytest.mark.parametrize(("meta", "words"), [
    ({f"k{i}": i for i in range(MAX_META_KEYS + 1)}, ["65 keys", f"limit is {MAX_META_KEYS}"]),
    ({**{f"k{i}": i for i in range(MAX_META_KEYS - 1)}, "n": {"a": 1}}, ["counting those of nested", "65"]),
    ({"k" * (MAX_META_KEY_CHARS + 1): 1}, ["129 characters", f"limit is {MAX_META_KEY_CHARS}"]),
    ({"big": "x" * MAX_META_BYTES}, [f"limit is {MAX_META_BYTES:,}", "bytes"]),
    ({"a": {"b": {"c": 1}}}, ["meta['a']['b']", "object inside an object"]),
    ({"a": [[1]]}, ["meta['a'][0]", "a list inside a list"]),
    ({"a": [{"b": 1}]}, ["meta['a'][0]", "an object inside a list"]),
    ({"n": MAX_INT + 1}, ["meta['n']", "beyond signed 64 bits"]),
    ({"n": MIN_INT - 1}, ["meta['n']", "beyond signed 64 bits"]),
    ({"x": float("inf")}, ["meta['x']", "inf", "finite"]),
    ({"x": float("nan")}, ["meta['x']", "nan", "finite"]),
    ({"x": [float("-inf")]}, ["meta['x'][0]", "finite"]),
    ({"s": "ok \ud800"}, ["meta['s']", "lone surrogate", "U+D800"]),
    ({"\udfff": 1}, ["lone surrogate", "U+DFFF"]),
    ({"": 1}, ["empty key"]),
    ({"tab\tkey": 1}, ["control character"]),
    ({"x": {1, 2}}, ["meta['x']", "a set"]),
    ({"x": b"bytes"}, ["meta['x']", "a bytes"]),
    ({1: "int key"}, ["keys are strings"]),
])
def test_meta_beyond_a_limit_is_refused_naming_the_key_and_the_limit(meta: dict[Any, Any],
                                                                      words: list[str]) -> None:
    with pytest.raises(MetaError) as refused:
        check_meta(meta)
    message = str(refused.value)
    assert all(word in message for word in words), message
    message.encode("utf-8")  # the message itself is always writable in a response


def test_a_deeply_nested_meta_is_refused_at_the_first_level_too_deep_without_recursing() -> None:
    deep: dict[str, Any] = {"x": 1}
    for _ in range(5000):  # deeper than Python's recursion limit: the check must stop at level two
        deep = {"n": deep}
    with pytest.raises(MetaError, match="object inside an object"):
        check_meta({"deep": deep})


def test_a_units_reserved_fields_must_have_ragpress_types() -> None:
    unit = {"tenant": "t", "collection": "c", "doc_id": "d", "content_hash": "h", "level": "chunk",
            "parent_id": None, "position": 0, "start": 0, "end": 9, "sentences": [[0, 4], [5, 9]],
            "strategy": "fixed", "title": "user meta"}
    check_unit_meta(unit)
    for field, bad in [("doc_id", 5), ("position", "1"), ("sentences", [[1]]), ("parent_id", 3), ("start", True),
                       ("tenant", "t\ud800")]:
        with pytest.raises(MetaError, match=f"meta\\['{field}'\\]"):
            check_unit_meta({**unit, field: bad})


@pytest.mark.parametrize(("field", "value"), [
    ("pruned_text", "text the generator would read instead of the unit's"),
    ("parts", [[0, 10], [10, 5000]]),  # spans whose cached states the KV generator would lay out for the unit
])
def test_query_time_annotations_are_never_stored(field: str, value: object) -> None:
    with pytest.raises(MetaError, match=rf"\['{field}'\] are written by query stages"):
        check_unit_meta({"tenant": "t", field: value})


def test_the_reserved_fields_do_not_count_towards_the_callers_limits() -> None:
    user = {f"k{i}": i for i in range(MAX_META_KEYS)}
    check_unit_meta({**user, "tenant": "t", "sentences": [[0, 1]] * 5000})


@pytest.mark.parametrize(("payload", "words"), [
    ({"id": "a", "content": "x", "meta": {}, "extra": 1}, ["unexpected payload fields", "extra"]),
    ({"id": 5, "content": "x", "meta": {}}, ["id must be a string"]),
    ({"id": "a\ud800", "content": "x", "meta": {}}, ["document id", "lone surrogate"]),
    ({"id": "a", "content": "x\udc00", "meta": {}}, ["content", "lone surrogate"]),
    ({"id": "a", "content": "x", "score": float("nan"), "meta": {}}, ["score", "finite"]),
    ({"id": "a", "content": "x", "blob": {"data": [300]}, "meta": {}}, ["blob's data must be bytes"]),
    ({"id": "a", "content": "x", "meta": {"a": {"b": {"c": 1}}}}, ["object inside an object"]),
])
def test_a_payload_the_engine_must_not_store_is_refused(payload: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(MetaError) as refused:
        check_payload(payload)
    assert all(word in str(refused.value) for word in words), str(refused.value)


def test_a_haystack_documents_payload_passes() -> None:
    check_payload({"id": "a", "content": "text", "blob": {"data": [1, 2], "meta": {}, "mime_type": "text/plain"},
                   "meta": {"tenant": "t", "position": 3, "title": "x"}, "score": 0.5})
