"""The metadata every indexed unit carries, shared by chunkers, writers, retrievers, pruner and generator.

Each Haystack ``Document`` that ragpress indexes is one unit at one scale. Its ``meta`` holds:

- ``tenant``, ``collection``: scope, enforced by the server on every read and write.
- ``doc_id``: the user's document id; ``content_hash``: sha256 of the document text it came from.
- ``level``: one of ``LEVELS`` (finest last); ``parent_id``: the id of the enclosing unit (None for
  documents); ``position``: index among the units of the same level in the document.
- ``start``, ``end``: character offsets of this unit's text in the document text.
- ``sentences``: ``[[start, end], ...]`` character spans of its sentences, relative to this unit's text.
- ``strategy``: the chunking strategy that produced the unit's vector (``fixed``, ``late``, ``situated``).

The pruner adds three keys at query time (never stored): ``pruned_text``, the kept sentences the generator
reads instead of the text; ``kept_sentences``, their indices into ``sentences``; ``sentence_scores``, every
sentence's keep score, which the relevance gate reads.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

LEVELS: tuple[str, ...] = ("document", "section", "chunk", "slice")

TENANT = "tenant"
COLLECTION = "collection"
DOC_ID = "doc_id"
CONTENT_HASH = "content_hash"
LEVEL = "level"
PARENT_ID = "parent_id"
POSITION = "position"
START = "start"
END = "end"
SENTENCES = "sentences"
STRATEGY = "strategy"
PRUNED_TEXT = "pruned_text"
KEPT_SENTENCES = "kept_sentences"
SENTENCE_SCORES = "sentence_scores"
# the document's title on each of its units (the caller's meta["title"], else its first heading): a chunk far from
# the heading often never names its subject, and the pruner reads it under this title
TITLE = "title"
# a unit merged from indexed neighbours: their [start, end] spans in the document, so cached states of those
# units can be laid out one after another instead of encoding the merged text anew
PARTS = "parts"

DEFAULT_TENANT = "default"

# The payload fields every read or write filters on, in qdrant-haystack's ``payload_fields_to_index`` format: each
# index keeps a payload index of them, and the tenant index co-locates each tenant's points.
INDEXED_FIELDS: tuple[dict[str, Any], ...] = (
    {"field_name": f"meta.{TENANT}", "field_schema": {"type": "keyword", "is_tenant": True}},
    *({"field_name": f"meta.{name}", "field_schema": "keyword"}
      for name in (COLLECTION, DOC_ID, LEVEL, CONTENT_HASH, STRATEGY)),
)


@dataclass(frozen=True)
class Scope:
    """The tenant and collection one query is confined to, made by the server from the caller's credentials.

    Components that read the index take only this type, never a mapping: nothing a tenant's pipeline can
    build (a template's output, a request's ``params``, a JSON value) is a ``Scope``, so a scope that did not
    come from the server is refused even if a connection or parameter ever slipped past validation.
    """

    tenant: str
    collection: str

    def __post_init__(self) -> None:
        if not (isinstance(self.tenant, str) and self.tenant and isinstance(self.collection, str)
                and self.collection):
            raise ValueError("a Scope names a tenant and a collection")

    def to_dict(self) -> dict[str, str]:
        """For Haystack's tracing of component inputs. There is deliberately no ``from_dict``: a Scope is made by
        the server, never read back from data."""
        return {TENANT: self.tenant, COLLECTION: self.collection}


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def unit_id(tenant: str, collection: str, doc_id: str, digest: str, level: str, position: int,
            strategy: str = "fixed") -> str:
    """A stable UUID for one unit: the same content always lands on the same point (idempotent writes), and
    the same span embedded by two strategies lands on two points, so one collection can hold both."""
    key = "\x1f".join((tenant, collection, doc_id, digest, level, str(position), strategy))
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "ragpress:" + key))


def unit_id_of(meta: dict[str, Any]) -> str:
    """The unit id its meta calls for (scope, content hash, level, position and strategy)."""
    return unit_id(str(meta.get(TENANT, "")), str(meta.get(COLLECTION, "")), str(meta.get(DOC_ID, "")),
                   str(meta[CONTENT_HASH]), str(meta[LEVEL]), int(meta[POSITION]), str(meta[STRATEGY]))
