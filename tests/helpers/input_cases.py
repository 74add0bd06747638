"""Inputs at the limits of ``ragpress.base.input_limits``, shared by the unit tests and the API round trip."""

from __future__ import annotations

import json
from typing import Any

from ragpress.base.input_limits import MAX_INT, MAX_META_BYTES, MAX_META_KEY_CHARS, MAX_META_KEYS, MIN_INT


def meta_size(meta: dict[str, Any]) -> int:
    """Bytes of ``meta`` as the limit counts them: compact UTF-8 JSON."""
    return len(json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


def meta_at_every_limit() -> dict[str, Any]:
    """Meta at each bound at once: as many keys as allowed (nested ones included), the longest key, one level
    of nesting, the extreme integers and finite floats, unicode (astral too), padded to exactly the size limit."""
    meta: dict[str, Any] = {
        "k" * MAX_META_KEY_CHARS: "longest key",
        "nested": {"a": 1, "b": [1, 2.5, "x", True, None]},
        "largest": MAX_INT, "smallest": MIN_INT, "big_float": 1.7976931348623157e308, "tiny_float": 5e-324,
        "negative_float": -1.7976931348623157e308, "unicode": "Zürich, 東京, emoji 😀, RTL שלום",
        "flag": False, "nothing": None, "list": ["a", 1, 2.0],
        "Ключ с пробелами.и точками": "any printable key",
    }
    for index in range(MAX_META_KEYS - len(meta) - 3):  # "nested" holds 2 keys of its own; "pad" comes last
        meta[f"f{index}"] = index
    meta["pad"] = ""
    meta["pad"] = "p" * (MAX_META_BYTES - meta_size(meta))
    return meta
