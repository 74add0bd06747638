"""Situated chunking: a short chunk embedded inside a wider window of its document, returned short."""

import numpy as np
import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.indexers.late_chunker import LateChunker
from ragpress.indexers.situated_chunker import SituatedChunker, situating_windows
from ragpress.pipelines.loader import load_pipeline

TEXT = ("The Millau Viaduct is a cable-stayed bridge in southern France. It spans the valley of the Tarn. "
        "Its deck was launched from both sides of the valley. The structure opened in December 2004. "
        "One of its masts reaches 343 metres above the river.")


def _long_text() -> str:
    return " ".join(f"Plot {i} of the orchard trial produced {i * 5 % 11} crates of pears in the dry year."
                    for i in range(50))


@pytest.fixture(scope="module")
def chunker() -> SituatedChunker:
    component = SituatedChunker(max_tokens=20, context_weight=0.25, local_weight=0.0)
    component.warm_up()
    return component


@pytest.mark.unit
def test_each_chunk_is_read_in_the_shared_window_where_it_sits_most_centrally():
    windows = situating_windows([(0, 10), (50, 60), (70, 80), (990, 1000)], 1000, 40)
    assert windows[0] == (0, 40)
    assert windows[1] == (40, 80)
    assert windows[2] == (60, 100)
    assert windows[3] == (960, 1000)
    assert situating_windows([(0, 5), (5, 12)], 12, 40) == [(0, 12), (0, 12)]
    long_chunk = situating_windows([(5, 100)], 1000, 40)[0]
    assert long_chunk[0] <= 5 < long_chunk[1]


@pytest.mark.integration
def test_each_chunk_returns_its_short_text_with_a_unit_vector(chunker):
    chunks = chunker.run(documents=[Document(content=TEXT, meta={"doc_id": "a"})])["documents"]
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.content == TEXT[chunk.meta["start"]:chunk.meta["end"]]
        assert len(chunk.content) < len(TEXT)
        assert chunk.meta["strategy"] == "situated"
        assert np.linalg.norm(chunk.embedding) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.integration
def test_without_context_weight_a_short_document_gives_the_late_chunking_vectors(chunker):
    document = Document(content=TEXT, meta={"doc_id": "a"})
    situated = chunker.run(documents=[document], context_weight=0.0)["documents"]
    late = LateChunker(max_tokens=20, local_weight=0.0).run(documents=[document])["documents"]
    assert np.allclose([c.embedding for c in situated], [c.embedding for c in late], atol=1e-5)


@pytest.mark.integration
def test_the_window_weight_pulls_chunks_of_one_document_together(chunker):
    document = Document(content=TEXT, meta={"doc_id": "a"})

    def spread(weight: float) -> float:
        vectors = np.array([c.embedding for c in chunker.run(documents=[document], context_weight=weight)["documents"]])
        return float(np.linalg.norm(vectors - vectors.mean(0), axis=1).mean())

    assert spread(0.5) < spread(0.25) < spread(0.0)


@pytest.mark.integration
def test_long_documents_get_a_window_per_chunk(chunker):
    text = _long_text()
    chunks = chunker.run(documents=[Document(content=text, meta={"doc_id": "long"})])["documents"]
    assert len(chunks) > 20
    assert all(c.content == text[c.meta["start"]:c.meta["end"]] for c in chunks)
    assert len({tuple(np.round(c.embedding, 5)) for c in chunks}) == len(chunks)


@pytest.mark.integration
def test_a_title_in_meta_leads_every_window(chunker):
    plain = Document(content=TEXT, meta={"doc_id": "a", "title": "Bridges of the Aveyron"})
    titled = SituatedChunker(max_tokens=20, title_key="title").run(documents=[plain])["documents"]
    untitled = chunker.run(documents=[plain])["documents"]
    assert [c.content for c in titled] == [c.content for c in untitled]
    assert not np.allclose(titled[0].embedding, untitled[0].embedding)


@pytest.mark.integration
def test_empty_documents_give_no_chunks(chunker):
    assert chunker.run(documents=[Document(content="", meta={"doc_id": "e"})])["documents"] == []
    assert chunker.run(documents=[])["documents"] == []


@pytest.mark.integration
def test_the_local_weight_mixes_in_the_late_chunkers_local_vectors(chunker):
    document = Document(content=TEXT, meta={"doc_id": "a"})
    situated = chunker.run(documents=[document], context_weight=0.0, local_weight=0.4)["documents"]
    late = LateChunker(max_tokens=20, local_weight=0.4).run(documents=[document])["documents"]
    assert np.allclose([c.embedding for c in situated], [c.embedding for c in late], atol=1e-5)
    assert chunker.parts([document], with_local=False).local_vectors is None


@pytest.mark.unit
def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        SituatedChunker(local_weight=2.0)
    with pytest.raises(ValueError):
        SituatedChunker(context_weight=1.5)
    with pytest.raises(ValueError):
        SituatedChunker(context_tokens=8)


@pytest.mark.integration
def test_yaml_round_trip_gives_the_same_chunks():
    pipeline = Pipeline()
    pipeline.add_component("chunker", SituatedChunker(max_tokens=20, context_weight=0.4, title_key="title",
                                                         local_weight=0.2))
    loaded = load_pipeline(pipeline.dumps())
    document = Document(content=TEXT, meta={"doc_id": "a", "title": "Bridges"})
    before = pipeline.run({"chunker": {"documents": [document]}})["chunker"]["documents"]
    after = loaded.run({"chunker": {"documents": [document]}})["chunker"]["documents"]
    assert [c.id for c in after] == [c.id for c in before]
    assert np.allclose([c.embedding for c in after], [c.embedding for c in before])


SITUATED_DEFAULTS = {"model": "all-MiniLM-L6-v2", "max_tokens": 128, "overlap_sentences": 0, "context_tokens": None,
                     "context_weight": 0.0, "title_key": None, "batch_size": 16, "prompt_name": "document",
                     "local_weight": 0.25, "device": "auto"}


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(SituatedChunker(), SITUATED_DEFAULTS)


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(SituatedChunker, {**SITUATED_DEFAULTS, "context_tokens": 256, "context_weight": 0.5,
                                      "title_key": "title", "local_weight": 0.0, "device": "cpu"})
