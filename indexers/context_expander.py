"""Turn fine-grained hits into readable context: merge neighbours, climb to enclosing units under a budget.

Retrieval at the finest scale (slices) finds the right place precisely, but a slice alone is often too
little to answer from. MacRAG's answer, followed here: merge hits that sit next to each other in one
document, then replace hits by their enclosing unit (chunk, section, whole document) as long as the total
context stays within a token budget, best-ranked hits first. A parent absorbs every selected unit inside
it, so nothing is sent twice. The hierarchy comes from the multi-scale index's payload (``level``,
``parent_id``, ``position``, ``start``/``end``, ``sentences``; see ``ragpress/schema.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base import schema
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.base.roles import Role
from ragpress.indexers.retrievers import validate_scope

CLIMBABLE = ("chunk", "section", "document")
# Budgets are in estimated tokens: about four characters per token for English subword vocabularies. The
# generator still applies its own exact limit; the estimate only has to keep expansion proportionate.
CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(eq=False)  # identity: two units with equal text are still different picks
class _Unit:
    document: Document
    hits: list[str] = field(default_factory=list)
    score: float = 0.0

    @property
    def meta(self) -> dict[str, Any]:
        return self.document.meta

    @property
    def tokens(self) -> int:
        return estimate_tokens(self.document.content or "")

    def covers(self, other: _Unit) -> bool:
        """Whether ``other`` lies inside this unit (same document, character span within ours)."""
        same = self.meta.get(schema.DOC_ID) == other.meta.get(schema.DOC_ID)
        return same and self.meta[schema.START] <= other.meta[schema.START] and (
            other.meta[schema.END] <= self.meta[schema.END])


def merge_adjacent(first: Document, second: Document) -> Document:
    """One unit spanning two neighbours of the same document (``first`` ends before ``second`` starts).

    The gap between them is filled with as many spaces as it had characters, so offsets and sentence spans
    stay exact relative to the merged text."""
    gap = second.meta[schema.START] - first.meta[schema.END]
    shift = second.meta[schema.START] - first.meta[schema.START]
    content = (first.content or "") + " " * gap + (second.content or "")
    sentences = [*first.meta.get(schema.SENTENCES, []),
                 *[[s + shift, e + shift] for s, e in second.meta.get(schema.SENTENCES, [])]]
    parts = [*_parts(first), *_parts(second)]
    meta = {**first.meta, schema.END: second.meta[schema.END], schema.SENTENCES: sentences, schema.PARTS: parts}
    return Document(id=f"{first.id}+{second.id}", content=content, meta=meta, score=first.score)


def _parts(unit: Document) -> list[list[int]]:
    return unit.meta.get(schema.PARTS) or [[unit.meta[schema.START], unit.meta[schema.END]]]


def _is_neighbour(a: Document, b: Document) -> bool:
    keys = (schema.DOC_ID, schema.LEVEL, schema.PARENT_ID)
    return all(a.meta.get(k) == b.meta.get(k) for k in keys) and (
        b.meta.get(schema.POSITION, -2) - a.meta.get(schema.POSITION, -9) == 1)


@component
class MultiScaleExpander:
    """Merges adjacent hits and expands them to their chunk, section or document while ``token_budget`` allows.

    Input documents are ranked hits from the multi-scale index (any level); the output is the context to
    read, best first, each unit's ``score`` the best score of the hits it holds and ``meta["expanded_from"]``
    their ids. Units without hierarchy payload pass through unchanged.

    Usage:
        >>> expander = MultiScaleExpander(token_budget=1024, max_level="section")
        >>> expander.run(documents=hits, scope=Scope("default", "docs"))["documents"]
    """

    role: ClassVar[Role] = Role.EXPANDER

    def __init__(self, token_budget: int = 1024, max_level: str = "chunk", merge_neighbours: bool = True) -> None:
        """
        :param token_budget: estimated tokens (about 4 characters each) the expanded context may use.
        :param max_level: the largest unit a hit may grow into: ``chunk``, ``section`` or ``document``.
        :param merge_neighbours: join hits that are adjacent units of one parent before climbing.
        """
        _check(token_budget, max_level)
        self.token_budget = token_budget
        self.max_level = max_level
        self.merge_neighbours = merge_neighbours

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(self, token_budget=self.token_budget, max_level=self.max_level,
                               merge_neighbours=self.merge_neighbours)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MultiScaleExpander:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(self, *, documents: list[Document], scope: schema.Scope, token_budget: int | None = None,
            max_level: str | None = None) -> dict[str, list[Document]]:
        """
        :param documents: retrieved units, best first by score.
        :param scope: the server's scope for this query; parents are looked up inside it only.
        :param token_budget: overrides the init value for this run.
        :param max_level: overrides the init value for this run.
        :returns: ``documents``: merged and expanded units within the budget, best first.
        """
        budget, ceiling = token_budget or self.token_budget, max_level or self.max_level
        _check(budget, ceiling)
        if not documents:
            return {"documents": []}
        tenant, collection = validate_scope(scope)
        units = [_Unit(d, [d.id], d.score or 0.0) for d in sorted(documents, key=lambda d: -(d.score or 0.0))]
        if self.merge_neighbours:
            units = _merge_neighbours(units)
        units = _fit(units, budget)
        ancestors = _ancestors(units, tenant, collection, ceiling)
        units = _climb(units, ancestors, budget)
        return {"documents": [_as_output(u) for u in units]}


def _check(token_budget: int, max_level: str) -> None:
    if token_budget < 1:
        raise ValueError("token_budget must be at least 1.")
    if max_level not in CLIMBABLE:
        raise ValueError(f"max_level must be one of {CLIMBABLE}, got {max_level!r}.")


def _has_hierarchy(unit: _Unit) -> bool:
    return all(k in unit.meta for k in (schema.DOC_ID, schema.LEVEL, schema.START, schema.END))


def _merge_neighbours(units: list[_Unit]) -> list[_Unit]:
    """Join runs of adjacent hits; the merged unit takes the rank of its best member."""
    in_order = sorted((u for u in units if _has_hierarchy(u) and schema.POSITION in u.meta),
                      key=lambda u: (str(u.meta[schema.DOC_ID]), str(u.meta[schema.LEVEL]), u.meta[schema.POSITION]))
    absorbed: set[int] = set()
    run: _Unit | None = None
    last: Document | None = None  # the run's last member: adjacency is judged against it, not the merge
    for unit in in_order:
        if run is not None and last is not None and _is_neighbour(last, unit.document):
            run.document = merge_adjacent(run.document, unit.document)
            run.hits += unit.hits
            run.score = max(run.score, unit.score)
            absorbed.add(id(unit))
        else:
            run = unit
        last = unit.document
    return [u for u in units if id(u) not in absorbed]


def _fit(units: list[_Unit], budget: int) -> list[_Unit]:
    """Best-ranked units that fit the budget (the best one always, so there is something to read)."""
    kept, used = [], 0
    for unit in units:
        if not kept or used + unit.tokens <= budget:
            kept.append(unit)
            used += unit.tokens
    return kept


def _ancestors(units: list[_Unit], tenant: str, collection: str, ceiling: str) -> dict[str, Document]:
    """Every unit above the hits' levels up to ``ceiling`` in the hits' documents, by id (one store read)."""
    doc_ids = sorted({str(u.meta[schema.DOC_ID]) for u in units if _has_hierarchy(u)})
    top = schema.LEVELS.index(ceiling)
    lowest = max((schema.LEVELS.index(u.meta[schema.LEVEL]) for u in units if _has_hierarchy(u)), default=0)
    levels = [level for i, level in enumerate(schema.LEVELS) if top <= i < lowest]
    if not doc_ids or not levels:
        return {}
    extra = {"operator": "AND", "conditions": [
        {"field": f"meta.{schema.DOC_ID}", "operator": "in", "value": doc_ids},
        {"field": f"meta.{schema.LEVEL}", "operator": "in", "value": levels},
    ]}
    found = shared_store().filter_documents(filters=scope_filters(tenant, collection, extra))
    return {d.id: d for d in found}


def _climb(units: list[_Unit], ancestors: dict[str, Document], budget: int) -> list[_Unit]:
    """Best-ranked first, replace a unit by its parent while the whole context stays within the budget."""
    selected: list[_Unit] = list(units)
    for unit in units:
        if unit not in selected:
            continue  # absorbed by a better-ranked unit's parent
        current = unit
        while (parent := ancestors.get(str(current.meta.get(schema.PARENT_ID)))) is not None:
            grown = _Unit(parent, list(current.hits), current.score)
            others = [u for u in selected if u is not current]
            inside = [u for u in others if grown.covers(u)]
            if sum(u.tokens for u in others if u not in inside) + grown.tokens > budget:
                break
            for other in inside:
                grown.hits += other.hits
                grown.score = max(grown.score, other.score)
            selected = [grown if u is current else u for u in selected if u not in inside]
            current = grown
    return sorted(selected, key=lambda u: -u.score)


def _as_output(unit: _Unit) -> Document:
    meta = {**unit.meta, "expanded_from": unit.hits}
    return Document(id=unit.document.id, content=unit.document.content, meta=meta, score=unit.score)
