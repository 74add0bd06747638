"""Write a document's indexed units and retire the units of its previous content."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.document_stores.types import DuplicatePolicy

from ragpress.base import schema
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.base.meta_limits import check_unit_meta
from ragpress.base.roles import Role


def _document_key(unit: Document) -> tuple[str, str, str]:
    meta = unit.meta
    try:
        return meta[schema.TENANT], meta[schema.COLLECTION], meta[schema.DOC_ID]
    except KeyError as exc:
        raise ValueError(f"Unit {unit.id} lacks meta field {exc}; it cannot be scoped.") from None


@component
class ChunkWriter:
    """Writes units to the process's index; a document's units from older content are then deleted.

    New units are written before old ones are removed, so a reader never finds a replaced document missing.
    Between the write and the retire (one upsert, then one filtered delete per document: milliseconds) a query
    can see both versions side by side. That is the chosen trade: retiring first would make the document vanish
    for the same window, and hiding new units until the old are gone would cost a registry look-up on every
    search. A process that dies between the two leaves both versions until the next start, when
    ``ragpress.workers.recovery`` keeps the registered version and indexes the document again. Unit ids derive from
    content, so re-writing is idempotent.

    Usage:
        >>> ChunkWriter().run(documents=chunks_with_embeddings)
        {'documents_written': 12, 'documents_retired': 0}
    """

    role: ClassVar[Role] = Role.WRITER

    def __init__(self, replace_previous_versions: bool = True) -> None:
        self.replace_previous_versions = replace_previous_versions

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, replace_previous_versions=self.replace_previous_versions)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChunkWriter:
        return default_from_dict(cls, data)

    @component.output_types(documents_written=int, documents_retired=int)
    def run(self, *, documents: list[Document]) -> dict[str, int]:
        """
        :param documents: embedded units, each with its scope, document id and content hash in ``meta``.
        :returns: ``documents_written``, and ``documents_retired``: the units of older versions removed.
        """
        store = shared_store()
        missing = [d.id for d in documents if d.embedding is None]
        if missing:
            raise ValueError(f"{len(missing)} units have no embedding (first: {missing[0]}); embed before writing.")
        for unit in documents:  # whichever engine is behind the store, nothing it cannot read back is written
            check_unit_meta(unit.meta)
        written = store.write_documents(documents, policy=DuplicatePolicy.OVERWRITE) if documents else 0
        retired = 0
        if self.replace_previous_versions:
            by_document: dict[tuple[str, str, str], set[str]] = defaultdict(set)
            for unit in documents:
                by_document[_document_key(unit)].add(unit.meta[schema.CONTENT_HASH])
            for (tenant, collection, doc_id), hashes in by_document.items():
                retired += retire_units(store, tenant, collection, doc_id, keep_hashes=hashes)
        return {"documents_written": int(written), "documents_retired": retired}


def retire_units(store: Any, tenant: str, collection: str, doc_id: str, keep_hashes: set[str] | None = None) -> int:
    """Delete a document's units, except those of the content hashes in ``keep_hashes``."""
    extra: dict[str, Any] = {"field": f"meta.{schema.DOC_ID}", "operator": "==", "value": doc_id}
    if keep_hashes:
        extra = {"operator": "AND", "conditions": [
            extra, {"field": f"meta.{schema.CONTENT_HASH}", "operator": "not in", "value": sorted(keep_hashes)},
        ]}
    return int(store.delete_by_filter(scope_filters(tenant, collection, extra)))
