"""What a document's ``meta`` may hold, checked by the API on arrival and by the index writer before a write.

A value is a string, a finite number, an integer within signed 64 bits, a bool, null, a list of those, or
(one level only) an object of those. Keys are 1 to ``MAX_META_KEY_CHARS`` characters without control
characters. Strings and keys are valid Unicode. The numbers are in ``ragpress.base.input_limits``.

Why each rule: the embedded engine cannot decode a payload nested ~128 levels deep and, once it stored one,
fails every read of it, its delete, every later write and its own restart; it cannot take NaN, infinities or
lone surrogates at all, and silently turns an integer beyond 64 bits into a float. Key count and size keep
one document's payload, read on every query that returns it, small.

The index writer also checks the payload fields ragpress itself writes (``PAYLOAD_FIELDS``, and the reserved
meta fields of ``ragpress.base.schema``), which a caller can never set.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from ragpress.base import schema
from ragpress.base.input_limits import (
    MAX_INT,
    MAX_META_BYTES,
    MAX_META_KEY_CHARS,
    MAX_META_KEYS,
    MAX_META_NESTING,
    MIN_INT,
    check_unicode,
    kind_of,
    shown,
)


class MetaError(ValueError):
    """The meta (or payload) breaks a rule; the message names the key and the limit."""


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and MIN_INT <= value <= MAX_INT


def _is_spans(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(span, list | tuple) and len(span) == 2 and all(_is_int(x) for x in span) for span in value)


_STRING = (_is_str, "a string")
_INTEGER = (_is_int, "an integer within signed 64 bits")
# ragpress's own meta fields (ragpress/schema.py) and the type each must have; callers may not send them.
RESERVED_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    schema.TENANT: _STRING, schema.COLLECTION: _STRING, schema.DOC_ID: _STRING, schema.CONTENT_HASH: _STRING,
    schema.LEVEL: _STRING, schema.STRATEGY: _STRING, schema.PARENT_ID: (_is_optional_str, "a string or null"),
    schema.POSITION: _INTEGER, schema.START: _INTEGER, schema.END: _INTEGER,
    schema.SENTENCES: (_is_spans, "a list of [start, end] integer pairs"),
}
# Annotations the query stages add to a retrieved unit (pruner, context expander) and later stages trust: the
# generator reads `pruned_text` in place of the unit's text, and lays a unit out from the cached states of the
# `parts` it names. Stored, they would be read as if a stage wrote them.
QUERY_TIME_FIELDS = frozenset({schema.PRUNED_TEXT, schema.KEPT_SENTENCES, schema.SENTENCE_SCORES, schema.PARTS,
                               "expanded_from"})
RESERVED_META = frozenset(RESERVED_FIELDS) | QUERY_TIME_FIELDS
# The top-level payload of a point: Haystack's Document.to_dict() without its vectors.
PAYLOAD_FIELDS = frozenset({"id", "content", "blob", "meta", "score"})


def check_meta(meta: Any) -> None:
    """Raise MetaError saying what is wrong with a caller's ``meta``, or return."""
    if not isinstance(meta, Mapping):
        raise MetaError(f"meta must be an object, not {kind_of(meta)}")
    if len(meta) > MAX_META_KEYS:  # before walking: a huge object is refused at its size, not item by item
        raise MetaError(f"meta has {len(meta)} keys; the limit is {MAX_META_KEYS}. Keep fewer fields.")
    keys = _check_object(meta, "meta", MAX_META_NESTING)
    if keys > MAX_META_KEYS:
        raise MetaError(f"meta has {keys} keys counting those of nested objects; the limit is {MAX_META_KEYS}. "
                        "Keep fewer fields.")
    size = len(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_META_BYTES:
        raise MetaError(f"meta is {size:,} bytes as JSON; the limit is {MAX_META_BYTES:,}. Put long values in the "
                        "document's text instead.")


def check_unit_meta(meta: Any) -> None:
    """An indexed unit's meta: ragpress's reserved fields with their types, the rest as a caller's meta."""
    if not isinstance(meta, Mapping):
        raise MetaError(f"meta must be an object, not {kind_of(meta)}")
    annotations = sorted(QUERY_TIME_FIELDS & meta.keys())
    if annotations:
        raise MetaError(f"meta {annotations} are written by query stages and never stored")
    for name, (valid, expected) in RESERVED_FIELDS.items():
        if name in meta and not valid(meta[name]):
            raise MetaError(f"meta[{name!r}] is ragpress's own field and must be {expected}")
        if name in meta and isinstance(meta[name], str):
            check_unicode(meta[name], f"meta[{name!r}]", MetaError)
    check_meta({key: value for key, value in meta.items() if key not in RESERVED_FIELDS})


def check_payload(payload: Mapping[str, Any]) -> None:
    """A point's whole payload, as the index writer is about to store it."""
    unknown = sorted(str(key) for key in payload.keys() - PAYLOAD_FIELDS)
    if unknown:
        raise MetaError(f"unexpected payload fields {unknown[:5]}; a point holds {sorted(PAYLOAD_FIELDS)}")
    if not isinstance(payload.get("id"), str):
        raise MetaError(f"the document id must be a string, not {kind_of(payload.get('id'))}")
    check_unicode(payload["id"], "the document id", MetaError)
    content = payload.get("content")
    if content is not None:
        if not isinstance(content, str):
            raise MetaError(f"the document content must be a string, not {kind_of(content)}")
        check_unicode(content, "the document content", MetaError)
    score = payload.get("score")
    if score is not None:
        _check_scalar(score, "the document score")
    _check_blob(payload.get("blob"))
    check_unit_meta(payload.get("meta") or {})


def _check_blob(blob: Any) -> None:
    if blob is None:
        return
    if not isinstance(blob, Mapping) or not blob.keys() <= {"data", "meta", "mime_type"}:
        raise MetaError("the document blob must be a ByteStream's dictionary (data, meta, mime_type)")
    data = blob.get("data")
    if not isinstance(data, list | bytes) or not all(_is_int(b) and 0 <= b < 256 for b in data):
        raise MetaError("the document blob's data must be bytes")
    if not _is_optional_str(blob.get("mime_type")):
        raise MetaError("the document blob's mime_type must be a string")
    check_meta(blob.get("meta") or {})


def _check_object(mapping: Mapping[Any, Any], where: str, nesting_left: int) -> int:
    """Check an object's keys and values; returns how many keys it holds, nested ones included."""
    keys = len(mapping)
    for key, value in mapping.items():
        _check_key(key, where)
        path = f"{where}[{shown(key)}]"
        if isinstance(value, Mapping):
            if nesting_left <= 0:
                raise MetaError(f"{path} is an object inside an object; meta allows objects nested "
                                f"{MAX_META_NESTING} level deep. Flatten it (e.g. 'a_b' instead of a.b).")
            keys += _check_object(value, path, nesting_left - 1)
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                _check_scalar(item, f"{path}[{index}]")
        else:
            _check_scalar(value, path)
    return keys


def _check_key(key: Any, where: str) -> None:
    if not isinstance(key, str):
        raise MetaError(f"{where} has a key that is {kind_of(key)}; keys are strings")
    if not key:
        raise MetaError(f"{where} has an empty key; name each field")
    if len(key) > MAX_META_KEY_CHARS:
        raise MetaError(f"{where} key {shown(key)} is {len(key)} characters; the limit is {MAX_META_KEY_CHARS}")
    check_unicode(key, f"{where} key {shown(key)}", MetaError)
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in key):
        raise MetaError(f"{where} key {shown(key)} holds a control character; keys are printable text")


def _check_scalar(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_unicode(value, path, MetaError)
    elif isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise MetaError(f"{path} is an integer beyond signed 64 bits ({MIN_INT}..{MAX_INT}); send it as a "
                            "string")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise MetaError(f"{path} is {value}, not a finite number; send finite numbers only")
    elif isinstance(value, Mapping | list | tuple):
        raise MetaError(f"{path} is {kind_of(value)} inside a list; list items are strings, numbers, booleans or "
                        "null")
    else:
        raise MetaError(f"{path} is {kind_of(value)}; a value is a string, number, boolean, null, a list of those "
                        "or an object of those")
