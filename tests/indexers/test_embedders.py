"""MiniLM embedders: real vectors, unit length, one model shared by documents and queries."""

from __future__ import annotations

import math

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.indexers.embedders import DocumentEmbedder, QueryEmbedder
from ragpress.pipelines.loader import load_pipeline

pytestmark = pytest.mark.integration


def test_documents_get_normalised_384_d_vectors_and_existing_vectors_are_kept() -> None:
    docs = [Document(content="Paris is in France."), Document(content="x", embedding=[0.5] * 384)]
    out = DocumentEmbedder().run(documents=docs)["documents"]
    assert len(out[0].embedding) == 384 and math.isclose(sum(v * v for v in out[0].embedding), 1.0, rel_tol=1e-4)
    assert out[1].embedding == [0.5] * 384


def test_a_query_is_nearest_its_paraphrase() -> None:
    query = QueryEmbedder().run(text="Where is the Eiffel Tower?")["embedding"]
    docs = DocumentEmbedder().run(documents=[Document(content="The Eiffel Tower stands in Paris."),
                                             Document(content="Bananas are rich in potassium.")])["documents"]
    scores = [sum(a * b for a, b in zip(query, d.embedding, strict=True)) for d in docs]
    assert scores[0] > scores[1] + 0.2


@pytest.mark.parametrize("component", [DocumentEmbedder(batch_size=4), QueryEmbedder(normalize=False)])
def test_yaml_round_trip_keeps_the_parameters(component: object) -> None:
    pipeline = Pipeline()
    pipeline.add_component("e", component)
    assert load_pipeline(pipeline.dumps()).get_component("e").to_dict() == component.to_dict()


@pytest.mark.unit
@pytest.mark.parametrize("kind", [QueryEmbedder, DocumentEmbedder])
def test_to_dict_pins_the_serialized_shape(kind: type) -> None:
    assert_pinned(kind(), {"model": "all-MiniLM-L6-v2", "batch_size": 32, "normalize": True, "device": "auto"})


@pytest.mark.unit
@pytest.mark.parametrize("kind", [QueryEmbedder, DocumentEmbedder])
def test_from_dict_restores_every_parameter(kind: type) -> None:
    assert_restored(kind, {"model": "embeddinggemma-300m", "batch_size": 4, "normalize": False, "device": "cpu"})


@pytest.mark.unit
@pytest.mark.parametrize("device", ["gpu", "cuda:x", ""])
def test_a_device_it_cannot_use_is_refused_at_init(device: str) -> None:
    with pytest.raises(ValueError, match="device must be one of"):
        QueryEmbedder(device=device)
