"""Multi-scale units: slices ⊂ chunks ⊂ sections ⊂ documents, each locating itself in the document."""

from itertools import pairwise

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.base import schema
from ragpress.indexers.multi_scale_splitter import MultiScaleSplitter, section_spans
from ragpress.pipelines.loader import load_pipeline
from ragpress.scoring.sentences import split_sentences

MARKDOWN = """# Millau Viaduct

The Millau Viaduct is a cable-stayed bridge that spans the valley of the river Tarn near Millau in France.
It was designed by the structural engineer Michel Virlogeux together with the architect Norman Foster.

## Construction

Construction began in December 2001. The deck was launched horizontally from both sides of the valley.
The bridge was formally opened on 14 December 2004 and carried its first traffic two days later.

```
# not a heading: inside a code block
```

## Records

One of its masts reaches 343 metres above the river. The deck is about 2,460 metres long.
"""

PLAIN = " ".join(f"Sentence number {i} talks about the weather in a small mountain town." for i in range(30))


@pytest.fixture(scope="module")
def splitter() -> MultiScaleSplitter:
    component = MultiScaleSplitter(chunk_tokens=40, slice_tokens=16)
    component.warm_up()
    return component


def _units(splitter, text, **meta):
    document = Document(content=text, meta={"doc_id": "d", "tenant": "t", "collection": "c", **meta})
    return splitter.run(documents=[document])["documents"]


def _by_level(units):
    levels = {}
    for unit in units:
        levels.setdefault(unit.meta[schema.LEVEL], []).append(unit)
    return levels


@pytest.mark.unit
def test_markdown_headings_open_sections_but_not_inside_code_blocks():
    sections = section_spans(MARKDOWN)
    assert [MARKDOWN[s:e].splitlines()[0] for s, e in sections] == [
        "# Millau Viaduct", "## Construction", "## Records"]
    assert section_spans(PLAIN) == []
    intro = "Intro text.\n\n# Head\n\nBody."
    assert [intro[s:e] for s, e in section_spans(intro)] == ["Intro text.", "# Head\n\nBody."]


@pytest.mark.integration
def test_every_unit_is_nested_in_its_parent_and_offsets_match_the_text(splitter):
    units = _units(splitter, MARKDOWN)
    by_id = {u.id: u for u in units}
    levels = _by_level(units)
    assert set(levels) == {"document", "section", "chunk", "slice"}
    assert len(levels["section"]) == 3
    expected_parent = {"document": None, "section": "document", "chunk": "section", "slice": "chunk"}
    for unit in units:
        assert unit.content == MARKDOWN[unit.meta["start"]:unit.meta["end"]]
        parent_id = unit.meta[schema.PARENT_ID]
        if expected_parent[unit.meta["level"]] is None:
            assert parent_id is None
            continue
        parent = by_id[parent_id]
        assert parent.meta["level"] == expected_parent[unit.meta["level"]]
        assert parent.meta["start"] <= unit.meta["start"] and unit.meta["end"] <= parent.meta["end"]


@pytest.mark.integration
def test_children_tile_their_parent_in_order(splitter):
    units = _units(splitter, MARKDOWN)
    for parent in units:
        children = [u for u in units if u.meta[schema.PARENT_ID] == parent.id]
        if not children:
            continue
        assert children[0].meta["start"] == parent.meta["start"]
        assert children[-1].meta["end"] == parent.meta["end"]
        gaps = [MARKDOWN[a.meta["end"]:b.meta["start"]] for a, b in pairwise(children)]
        assert all(gap.strip() == "" for gap in gaps)


@pytest.mark.integration
def test_positions_count_units_of_a_level_through_the_whole_document(splitter):
    for level, units in _by_level(_units(splitter, MARKDOWN)).items():
        assert [u.meta["position"] for u in units] == list(range(len(units))), level


@pytest.mark.integration
def test_sentence_spans_are_relative_to_the_unit_and_no_sentence_crosses_a_heading(splitter):
    units = _units(splitter, MARKDOWN)
    sections = section_spans(MARKDOWN)
    for unit in units:
        for start, end in unit.meta["sentences"]:
            sentence = unit.content[start:end]
            assert sentence and sentence == sentence.strip()
            absolute = (unit.meta["start"] + start, unit.meta["start"] + end)
            assert any(a <= absolute[0] and absolute[1] <= b for a, b in sections)
    document = _by_level(units)["document"][0]
    slices = [s.content[a:b] for s in _by_level(units)["slice"] for a, b in s.meta["sentences"]]
    assert slices == [document.content[a:b] for a, b in document.meta["sentences"]]


@pytest.mark.integration
def test_a_document_without_headings_has_no_sections(splitter):
    levels = _by_level(_units(splitter, PLAIN))
    assert "section" not in levels
    document = levels["document"][0]
    assert all(c.meta[schema.PARENT_ID] == document.id for c in levels["chunk"])
    assert len(levels["chunk"]) > 3 and len(levels["slice"]) > len(levels["chunk"])
    assert len(document.meta["sentences"]) == len(split_sentences(PLAIN))


@pytest.mark.integration
def test_ids_are_stable_and_scope_meta_is_passed_through(splitter):
    first, second = _units(splitter, MARKDOWN), _units(splitter, MARKDOWN)
    assert [u.id for u in first] == [u.id for u in second]
    assert len({u.id for u in first}) == len(first)
    assert all(u.meta["tenant"] == "t" and u.meta["collection"] == "c" for u in first)
    changed = _units(splitter, MARKDOWN.replace("2004", "2005"))
    assert not {u.id for u in changed} & {u.id for u in first}


@pytest.mark.integration
def test_empty_documents_give_no_units(splitter):
    assert _units(splitter, "") == []
    assert _units(splitter, "   \n\n ") == []


@pytest.mark.integration
def test_budgets_can_be_overridden_at_run_time_and_are_validated(splitter):
    document = Document(content=PLAIN, meta={"doc_id": "d"})
    coarse = splitter.run(documents=[document], chunk_tokens=400, slice_tokens=400)["documents"]
    assert len(_by_level(coarse)["chunk"]) == 1
    with pytest.raises(ValueError):
        splitter.run(documents=[document], chunk_tokens=8, slice_tokens=16)
    with pytest.raises(ValueError):
        MultiScaleSplitter(slice_tokens=2)


@pytest.mark.integration
def test_the_document_level_can_be_left_out():
    units = MultiScaleSplitter(chunk_tokens=40, slice_tokens=16, include_document=False).run(
        documents=[Document(content=MARKDOWN, meta={"doc_id": "d"})])["documents"]
    levels = _by_level(units)
    assert "document" not in levels
    assert all(s.meta[schema.PARENT_ID] is None for s in levels["section"])


@pytest.mark.integration
def test_yaml_round_trip_gives_the_same_units():
    pipeline = Pipeline()
    pipeline.add_component("splitter", MultiScaleSplitter(chunk_tokens=40, slice_tokens=12))
    loaded = load_pipeline(pipeline.dumps())
    document = Document(content=MARKDOWN, meta={"doc_id": "d"})
    before = pipeline.run({"splitter": {"documents": [document]}})["splitter"]["documents"]
    after = loaded.run({"splitter": {"documents": [document]}})["splitter"]["documents"]
    assert [(u.id, u.meta) for u in after] == [(u.id, u.meta) for u in before]


@pytest.mark.unit
def test_every_unit_carries_the_heading_its_document_opens_with_as_title(splitter):
    units = _units(splitter, MARKDOWN)
    assert {u.meta[schema.TITLE] for u in units} == {"Millau Viaduct"}


@pytest.mark.unit
def test_the_callers_title_wins_and_a_document_without_an_opening_heading_has_none(splitter):
    assert {u.meta[schema.TITLE] for u in _units(splitter, MARKDOWN, title="  The  viaduct ")} == {"The viaduct"}
    assert all(schema.TITLE not in u.meta for u in _units(splitter, PLAIN))
    assert all(schema.TITLE not in u.meta for u in _units(splitter, "Intro first.\n\n## Later heading\n\nText."))


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(MultiScaleSplitter(), {"chunk_tokens": 128, "slice_tokens": 32, "include_document": True,
                                         "tokenizer_model": "all-MiniLM-L6-v2"})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(MultiScaleSplitter, {"chunk_tokens": 64, "slice_tokens": 16, "include_document": False,
                                         "tokenizer_model": "all-MiniLM-L6-v2"})
