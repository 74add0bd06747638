"""LateUnitEmbedder: every level of a multi-scale index embedded from one pass over each document."""

import numpy as np
import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.base.model_loading import sentence_transformer
from ragpress.indexers.late_unit_embedder import LateUnitEmbedder, document_text
from ragpress.indexers.multi_scale_splitter import MultiScaleSplitter
from ragpress.pipelines.loader import load_pipeline

TEXT = ("# Millau Viaduct\n\nThe Millau Viaduct is a bridge in southern France. It crosses the valley of the Tarn. "
        "Its architect was Norman Foster.\n\n## Construction\n\nWork began in 2001. The deck was launched from "
        "both sides. It opened on 14 December 2004, three years later.")
SHARED = "It was finished in the spring."
META = {"doc_id": "millau", "tenant": "t", "collection": "c"}


def units_of(text: str, doc_id: str = "millau") -> list[Document]:
    splitter = MultiScaleSplitter(chunk_tokens=24, slice_tokens=8)
    return splitter.run(documents=[Document(content=text, meta={**META, "doc_id": doc_id})])["documents"]


@pytest.fixture(scope="module")
def embedder() -> LateUnitEmbedder:
    component = LateUnitEmbedder(local_weight=0.0)  # pure late pooling; the local share is tested apart
    component.warm_up()
    return component


def vectors(units: list[Document]) -> np.ndarray:
    return np.array([u.embedding for u in units])


@pytest.mark.unit
def test_a_document_is_rebuilt_from_its_units_whitespace_aside():
    rebuilt = document_text(units_of(TEXT))
    assert rebuilt.split() == TEXT[:len(rebuilt)].split()
    assert len(rebuilt) == len(TEXT.rstrip())


@pytest.mark.integration
def test_every_level_gets_a_unit_length_vector_and_parents_follow_the_new_ids(embedder):
    units = units_of(TEXT)
    embedded = embedder.run(documents=units)["documents"]
    assert {u.meta["level"] for u in embedded} == {"document", "section", "chunk", "slice"}
    assert [u.content for u in embedded] == [u.content for u in units]
    assert np.allclose(np.linalg.norm(vectors(embedded), axis=1), 1.0, atol=1e-4)
    assert {u.meta["strategy"] for u in embedded} == {"late"}
    ids = {u.id for u in embedded}
    assert not ids & {u.id for u in units}, "late units are other points than fixed ones of the same spans"
    assert all(u.meta["parent_id"] in ids for u in embedded if u.meta["level"] != "document")


@pytest.mark.integration
def test_the_same_sentence_reads_differently_in_different_documents(embedder):
    """Read alone, a slice has one vector wherever it stands; read in its document it takes on its context."""
    bridge = units_of(f"The Millau Viaduct is a bridge over the Tarn. {SHARED}", "bridge")
    novel = units_of(f"Her third novel was written in a cabin in Maine. {SHARED}", "novel")
    embedded = embedder.run(documents=bridge + novel)["documents"]
    shared = [u for u in embedded if u.content == SHARED]
    assert len(shared) == 2
    query = sentence_transformer("all-MiniLM-L6-v2").encode("When was the bridge finished?", normalize_embeddings=True)
    bridge_unit, novel_unit = sorted(shared, key=lambda u: u.meta["doc_id"])
    assert float(np.dot(bridge_unit.embedding, query)) > float(np.dot(novel_unit.embedding, query))


@pytest.mark.integration
def test_a_full_local_weight_gives_the_local_levels_their_vectors_read_alone(embedder):
    units = units_of(TEXT)
    embedded = embedder.run(documents=units, local_weight=1.0)["documents"]
    alone = sentence_transformer("all-MiniLM-L6-v2").encode([u.content for u in embedded], normalize_embeddings=True)
    is_chunk = np.array([u.meta["level"] == "chunk" for u in embedded])
    assert np.allclose(vectors(embedded)[is_chunk], alone[is_chunk], atol=1e-5)
    assert not np.allclose(vectors(embedded)[~is_chunk], alone[~is_chunk], atol=1e-3), "other levels stay late"


@pytest.mark.integration
def test_a_document_beyond_the_window_and_a_batch_give_the_vectors_each_gets_alone(embedder):
    long_text = " ".join(f"Station {i} of the survey counted {i * 7 % 13} herons by the river." for i in range(80))
    long_units, short_units = units_of(long_text, "long"), units_of(TEXT)
    assert len(embedder._encoder.tokenize(long_text).ids) > 2 * embedder._encoder.capacity
    together = embedder.run(documents=long_units + short_units)["documents"]
    alone = embedder.run(documents=long_units)["documents"] + embedder.run(documents=short_units)["documents"]
    assert [u.id for u in together] == [u.id for u in alone]
    assert np.allclose(vectors(together), vectors(alone), atol=1e-5)


@pytest.mark.integration
def test_units_that_have_a_vector_pass_through_in_place(embedder):
    units = units_of(TEXT)
    given = Document(id="given", content="Already embedded.", embedding=[0.5] * 384, meta=META)
    embedded = embedder.run(documents=[units[0], given, *units[1:]])["documents"]
    assert embedded[1] is given and len(embedded) == len(units) + 1
    assert embedder.run(documents=[given])["documents"] == [given]


@pytest.mark.unit
def test_units_without_offsets_are_refused_with_what_to_use_instead():
    with pytest.raises(ValueError, match="DocumentEmbedder"):
        LateUnitEmbedder().run(documents=[Document(content="A chunk from elsewhere.", meta=META)])


@pytest.mark.unit
@pytest.mark.parametrize("bad", [{"local_weight": 1.5}, {"local_levels": ["paragraph"]}, {"window_tokens": 16},
                                 {"window_tokens": 128, "window_overlap": 64}, {"batch_size": 0}, {"model": ""}])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(ValueError):
        LateUnitEmbedder(**bad)


DEFAULTS = {"model": "all-MiniLM-L6-v2", "local_weight": 0.25, "local_levels": ["chunk"], "window_tokens": None,
            "window_overlap": 64, "batch_size": 16, "prompt_name": "document", "device": "auto"}


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape():
    assert_pinned(LateUnitEmbedder(), DEFAULTS)


@pytest.mark.unit
def test_from_dict_restores_every_parameter():
    assert_restored(LateUnitEmbedder, {**DEFAULTS, "local_weight": 0.0, "local_levels": ["chunk", "slice"],
                                       "window_tokens": 256, "window_overlap": 32, "batch_size": 4,
                                       "prompt_name": None, "device": "cpu"})


@pytest.mark.integration
def test_yaml_round_trip_gives_the_same_units():
    pipeline = Pipeline()
    pipeline.add_component("embedder", LateUnitEmbedder(local_weight=0.3, local_levels=["chunk", "slice"]))
    loaded = load_pipeline(pipeline.dumps())
    before = pipeline.run({"embedder": {"documents": units_of(TEXT)}})["embedder"]["documents"]
    after = loaded.run({"embedder": {"documents": units_of(TEXT)}})["embedder"]["documents"]
    assert [u.id for u in after] == [u.id for u in before]
    assert np.allclose(vectors(after), vectors(before))
