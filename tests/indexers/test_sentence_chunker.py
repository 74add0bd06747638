"""The baseline chunker packs whole sentences under a token budget and records where everything is."""

from __future__ import annotations

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.base import schema
from ragpress.indexers.sentence_chunker import SentenceChunker, pack_sentences
from ragpress.pipelines.loader import load_pipeline

pytestmark = pytest.mark.unit

TEXT = ("The bridge spans the Tarn valley. It opened in 2004. Its tallest mast is 343 metres high. "
        "The deck is 2,460 metres long. It carries the A75 autoroute.")


def test_sentences_are_packed_without_exceeding_the_budget() -> None:
    assert pack_sentences([(0, 1)] * 5, [4, 4, 4, 4, 4], max_tokens=8) == [[0, 1], [2, 3], [4]]


def test_a_sentence_longer_than_the_budget_stands_alone_and_is_kept_whole() -> None:
    assert pack_sentences([(0, 1)] * 3, [2, 50, 2], max_tokens=8) == [[0], [1], [2]]


def test_overlap_repeats_the_last_sentences_of_the_previous_chunk() -> None:
    assert pack_sentences([(0, 1)] * 4, [3, 3, 3, 3], max_tokens=6, overlap_sentences=1) == [[0, 1], [1, 2], [2, 3]]


@pytest.mark.integration
def test_chunks_carry_offsets_sentences_and_stable_ids() -> None:
    doc = Document(content=TEXT, meta={schema.DOC_ID: "d", schema.TENANT: "t", schema.COLLECTION: "c"})
    chunks = SentenceChunker(max_tokens=16).run(documents=[doc])["documents"]
    assert len(chunks) > 1
    for position, chunk in enumerate(chunks):
        meta = chunk.meta
        assert TEXT[meta[schema.START]:meta[schema.END]] == chunk.content
        assert meta[schema.POSITION] == position and meta[schema.LEVEL] == "chunk"
        assert all(chunk.content[s:e].endswith(".") for s, e in meta[schema.SENTENCES])
        assert meta[schema.CONTENT_HASH] == schema.content_hash(TEXT)
    again = SentenceChunker(max_tokens=16).run(documents=[doc])["documents"]
    assert [c.id for c in again] == [c.id for c in chunks]


@pytest.mark.integration
def test_yaml_round_trip_gives_the_same_outputs() -> None:
    pipeline = Pipeline()
    pipeline.add_component("chunker", SentenceChunker(max_tokens=20, overlap_sentences=1))
    loaded = load_pipeline(pipeline.dumps())
    docs = [Document(content=TEXT, meta={schema.DOC_ID: "d"})]
    assert loaded.run({"chunker": {"documents": docs}}) == pipeline.run({"chunker": {"documents": docs}})


def test_invalid_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        SentenceChunker(max_tokens=2)


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(SentenceChunker(), {"max_tokens": 128, "overlap_sentences": 0, "tokenizer_model": "all-MiniLM-L6-v2"})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(SentenceChunker, {"max_tokens": 64, "overlap_sentences": 1,
                                      "tokenizer_model": "embeddinggemma-300m"})
