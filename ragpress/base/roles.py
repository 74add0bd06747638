"""What each pipeline component does, declared by the component itself (a ``role`` class attribute).

A query pipeline (``ragpress.pipelines.query_pipeline``) routes a request's ``top_k``, times stages and finds the
answer stages by role, never by matching class names, so a component of any name takes part by declaring its
role; Haystack's own components, which cannot declare one, take theirs from ``ragpress.pipelines.capabilities``.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CONVERTER = "converter"
    CHUNKER = "chunker"
    EMBEDDER = "embedder"
    WRITER = "writer"
    RETRIEVER = "retriever"
    JOINER = "joiner"
    EXPANDER = "expander"
    RANKER = "ranker"
    PRUNER = "pruner"
    GATE = "gate"
    GENERATOR = "generator"
