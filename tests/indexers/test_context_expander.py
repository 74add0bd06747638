"""MultiScaleExpander: neighbouring hits merge, hits grow into their chunk/section/document within the budget."""

from __future__ import annotations

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.base import schema
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.indexers.context_expander import MultiScaleExpander, estimate_tokens, merge_adjacent
from ragpress.indexers.multi_scale_splitter import MultiScaleSplitter
from ragpress.pipelines.loader import load_pipeline

SCOPE = schema.Scope("t-expand", "c-expand")
TEXT = (
    "# Bridges\n\nThe Millau Viaduct spans the Tarn valley. It opened in December 2004. "
    "Its tallest mast rises 343 metres. Norman Foster designed it with Michel Virlogeux.\n\n"
    "# Tunnels\n\nThe Gotthard Base Tunnel is 57 kilometres long. It opened in 2016. "
    "It runs under the Swiss Alps. Trains cross it at up to 250 km/h."
)


@pytest.fixture(scope="module")
def units() -> list[Document]:
    splitter = MultiScaleSplitter(chunk_tokens=24, slice_tokens=8)
    document = Document(content=TEXT, meta={schema.DOC_ID: "engineering", schema.TENANT: SCOPE.tenant,
                                               schema.COLLECTION: SCOPE.collection})
    made = splitter.run(documents=[document])["documents"]
    store = shared_store()
    store.delete_by_filter(scope_filters(SCOPE.tenant, SCOPE.collection))
    store.write_documents([Document(id=u.id, content=u.content, meta=u.meta, embedding=[0.1] * 384)
                           for u in made])
    return made


def level(units: list[Document], name: str) -> list[Document]:
    return sorted((u for u in units if u.meta[schema.LEVEL] == name), key=lambda u: u.meta[schema.POSITION])


def hit(unit: Document, score: float) -> Document:
    return Document(id=unit.id, content=unit.content, meta=unit.meta, score=score)


@pytest.mark.unit
def test_adjacent_units_merge_into_one_span_with_exact_sentence_offsets(units: list[Document]) -> None:
    first, second = level(units, "slice")[:2]
    merged = merge_adjacent(first, second)
    start = first.meta[schema.START]
    assert merged.content == TEXT[start:second.meta[schema.END]].replace("\n", " ")
    for s, e in merged.meta[schema.SENTENCES]:
        assert merged.content[s:e] == TEXT[start + s:start + e]


@pytest.mark.unit
def test_a_merged_unit_names_the_indexed_units_it_is_made_of_so_their_cached_states_can_be_reused(
        units: list[Document]) -> None:
    first, second, third = level(units, "slice")[:3]
    merged = merge_adjacent(merge_adjacent(first, second), third)
    assert merged.meta[schema.PARTS] == [[u.meta[schema.START], u.meta[schema.END]] for u in (first, second, third)]


@pytest.mark.integration
def test_a_slice_hit_grows_into_its_chunk_when_the_budget_allows(units: list[Document]) -> None:
    target = level(units, "slice")[1]
    out = MultiScaleExpander(token_budget=200, max_level="chunk").run(documents=[hit(target, 0.9)], scope=SCOPE)
    (unit,) = out["documents"]
    assert unit.meta[schema.LEVEL] == "chunk"
    assert unit.id == target.meta[schema.PARENT_ID]
    assert target.content in unit.content
    assert unit.meta["expanded_from"] == [target.id]
    assert unit.score == 0.9


@pytest.mark.integration
def test_hits_in_one_section_climb_to_the_section_once_and_keep_the_best_score(units: list[Document]) -> None:
    slices = [s for s in level(units, "slice") if "Gotthard" in TEXT[s.meta[schema.START]:s.meta[schema.END]]
              or "Trains" in (s.content or "")]
    hits = [hit(slices[0], 0.4), hit(slices[-1], 0.8)]
    out = MultiScaleExpander(token_budget=200, max_level="section").run(documents=hits, scope=SCOPE)["documents"]
    assert len(out) == 1
    assert out[0].meta[schema.LEVEL] == "section"
    assert out[0].content.startswith("# Tunnels")
    assert sorted(out[0].meta["expanded_from"]) == sorted(h.id for h in hits)
    assert out[0].score == 0.8


@pytest.mark.integration
def test_expansion_stops_at_the_budget_and_never_exceeds_it(units: list[Document]) -> None:
    slice_hit = level(units, "slice")[0]
    budget = estimate_tokens(slice_hit.content) + 1
    out = MultiScaleExpander(token_budget=budget, max_level="document").run(
        documents=[hit(slice_hit, 0.5)], scope=SCOPE)["documents"]
    assert [u.id for u in out] == [slice_hit.id]
    assert sum(estimate_tokens(u.content) for u in out) <= budget


@pytest.mark.integration
def test_max_level_caps_the_climb_even_with_budget_to_spare(units: list[Document]) -> None:
    slice_hit = level(units, "slice")[0]
    out = MultiScaleExpander(token_budget=10_000, max_level="chunk").run(
        documents=[hit(slice_hit, 0.5)], scope=SCOPE)["documents"]
    assert out[0].meta[schema.LEVEL] == "chunk"
    out = MultiScaleExpander(token_budget=10_000, max_level="document").run(
        documents=[hit(slice_hit, 0.5)], scope=SCOPE)["documents"]
    assert out[0].meta[schema.LEVEL] == "document"
    assert out[0].content == TEXT


@pytest.mark.integration
def test_adjacent_slice_hits_are_merged_when_their_chunk_does_not_fit(units: list[Document]) -> None:
    first, second = level(units, "slice")[:2]
    assert first.meta[schema.PARENT_ID] == second.meta[schema.PARENT_ID]
    budget = estimate_tokens(TEXT[first.meta[schema.START]:second.meta[schema.END]]) + 1
    out = MultiScaleExpander(token_budget=budget, max_level="chunk").run(
        documents=[hit(second, 0.7), hit(first, 0.3)], scope=SCOPE)["documents"]
    (merged,) = out
    assert merged.meta[schema.START] == first.meta[schema.START]
    assert merged.meta[schema.END] == second.meta[schema.END]
    assert merged.score == 0.7


@pytest.mark.integration
def test_another_tenants_units_are_never_used_to_expand(units: list[Document]) -> None:
    slice_hit = level(units, "slice")[0]
    out = MultiScaleExpander(token_budget=10_000, max_level="document").run(
        documents=[hit(slice_hit, 0.5)], scope=schema.Scope("someone-else", "c-expand"))["documents"]
    assert [u.id for u in out] == [slice_hit.id]


@pytest.mark.unit
def test_documents_without_hierarchy_pass_through_best_first() -> None:
    plain = [Document(content="a" * 40, score=0.2), Document(content="b" * 40, score=0.6)]
    out = MultiScaleExpander(token_budget=100).run(documents=plain, scope=SCOPE)["documents"]
    assert [d.content[0] for d in out] == ["b", "a"]


@pytest.mark.unit
@pytest.mark.parametrize("kwargs", [{"token_budget": 0}, {"max_level": "slice"}, {"max_level": "paragraph"}])
def test_invalid_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        MultiScaleExpander(**kwargs)


@pytest.mark.unit
def test_yaml_round_trip_keeps_parameters_and_outputs() -> None:
    pipeline = Pipeline()
    pipeline.add_component("expander", MultiScaleExpander(token_budget=300, max_level="section",
                                                          merge_neighbours=False))
    again = load_pipeline(pipeline.dumps()).get_component("expander")
    assert again.to_dict() == pipeline.get_component("expander").to_dict()
    docs = [Document(content="x" * 40, score=0.3)]
    assert again.run(documents=docs, scope=SCOPE) == pipeline.get_component("expander").run(documents=docs,
                                                                                              scope=SCOPE)


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(MultiScaleExpander(), {"token_budget": 1024, "max_level": "chunk", "merge_neighbours": True})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(MultiScaleExpander, {"token_budget": 300, "max_level": "document", "merge_neighbours": False})
