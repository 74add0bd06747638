"""What each pipeline component does, declared by the component itself (a ``role`` class attribute).

The service routes a request's ``top_k``, times stages and finds the answer stages by role, never by matching
class names, so a component of any name (a user's own, a Haystack one) takes part by declaring its role.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CONVERTER = "converter"
    CHUNKER = "chunker"
    EMBEDDER = "embedder"
    WRITER = "writer"
    RETRIEVER = "retriever"
    EXPANDER = "expander"
    RANKER = "ranker"
    PRUNER = "pruner"
    GATE = "gate"
    GENERATOR = "generator"
