"""Parse pipeline YAML within bounds, before anything is built from it.

A pipeline is a small document: a few dozen components with scalar parameters. Anything that makes YAML
expensive or surprising is refused while the text is still a stream of parser events, so it never becomes
objects: anchors and aliases (a 490-byte "billion laughs" expands to gigabytes when the pipeline is copied),
explicit tags, and texts over the size, nesting or node limits. What is left is plain JSON-like data in valid
Unicode (a ``"\ud800"`` escape would make a string no response can encode).
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from ragpress.base.input_limits import check_unicode

MAX_YAML_BYTES = 64 * 1024
MAX_YAML_DEPTH = 16
MAX_YAML_NODES = 5_000


class YamlRefused(ValueError):
    """The text is not a bounded, plain YAML document; ``line`` is 1-based where known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def load_bounded(text: str) -> Any:
    """The YAML document as plain data (dicts, lists, str, int, float, bool, None), or YamlRefused."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_YAML_BYTES:
        raise YamlRefused(f"the pipeline YAML is {size:,} bytes; the limit is {MAX_YAML_BYTES:,}")
    try:
        _check_events(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise YamlRefused(f"YAML syntax error: {problem}", mark.line + 1 if mark is not None else None) from None
    _check_plain(data, "")
    return data


def _check_events(text: str) -> None:
    depth = nodes = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise YamlRefused("YAML anchors and aliases (&, *, <<) are not accepted in a pipeline; write each "
                              "value out", line)
        if isinstance(event, yaml.NodeEvent):
            nodes += 1
            if nodes > MAX_YAML_NODES:
                raise YamlRefused(f"the pipeline YAML has more than {MAX_YAML_NODES:,} values", line)
            if _explicit_tag(event):
                raise YamlRefused(f"YAML tags such as {event.tag!r} are not accepted in a pipeline", line)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise YamlRefused(f"the pipeline YAML nests deeper than {MAX_YAML_DEPTH} levels", line)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _explicit_tag(event: yaml.NodeEvent) -> bool:
    tag = getattr(event, "tag", None)
    if tag is None or tag == "!":
        return False
    implicit = getattr(event, "implicit", True)
    # A scalar's tag is only explicit when neither resolution applied; collections carry a bool.
    return not any(implicit) if isinstance(implicit, tuple) else not implicit


def _check_plain(value: Any, where: str) -> None:
    """Only JSON's types: the safe loader still makes dates, bytes and sets from implicit or tagged scalars."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise YamlRefused(f"{where or 'the document'} has a key {key!r} that is not a string")
            check_unicode(key, f"a key of {where or 'the document'}", YamlRefused)
            _check_plain(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif isinstance(value, str):
        check_unicode(value, where, YamlRefused)
    elif isinstance(value, float) and not math.isfinite(value):
        raise YamlRefused(f"{where}: numbers must be finite")
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise YamlRefused(f"{where}: a {type(value).__name__} is not accepted; quote it to make it a string")
