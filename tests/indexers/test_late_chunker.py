"""Late chunking: chunk vectors are pooled out of one pass over the whole document (or its windows)."""

import numpy as np
import pytest
import torch
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.base.model_loading import sentence_transformer
from ragpress.indexers.late_chunker import LateChunker, plan_windows
from ragpress.indexers.sentence_chunker import SentenceChunker
from ragpress.pipelines.loader import load_pipeline
from ragpress.scoring.sentences import split_sentences

SHORT = ("The Millau Viaduct is a bridge in southern France. It is the tallest bridge in the world. "
         "Its architect was Norman Foster, who also designed the Gherkin in London.")


def _long_text() -> str:
    facts = [f"Station {i} of the survey recorded {i * 7 % 13} nesting pairs of herons near the river bend."
             for i in range(60)]
    return " ".join(facts)


@pytest.fixture(scope="module")
def chunker() -> LateChunker:
    component = LateChunker(max_tokens=24, local_weight=0.0)  # pure late pooling; the mix is tested apart
    component.warm_up()
    return component


@pytest.mark.unit
@pytest.mark.parametrize("n_tokens", [1, 254, 255, 600, 1500])
def test_windows_give_every_token_exactly_one_owner(n_tokens):
    plan = plan_windows(n_tokens, capacity=254, overlap=64)
    owned = [t for _, _, core_start, core_end in plan for t in range(core_start, core_end)]
    assert owned == list(range(n_tokens))
    assert all(end - start <= 254 and start <= cs and ce <= end for start, end, cs, ce in plan)


@pytest.mark.integration
def test_a_short_document_gives_the_mean_of_its_full_pass_token_embeddings(chunker):
    chunks = chunker.run(documents=[Document(content=SHORT, meta={"doc_id": "a"})])["documents"]
    assert len(chunks) > 1
    model = sentence_transformer("all-MiniLM-L6-v2")
    tokens = model.encode(SHORT, output_value="token_embeddings")
    offsets = model.tokenizer(SHORT, return_offsets_mapping=True)["offset_mapping"]
    for chunk in chunks:
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and chunk.meta["start"] <= a < chunk.meta["end"]]
        expected = torch.nn.functional.normalize(tokens[inside].mean(0), dim=0)
        assert np.allclose(chunk.embedding, expected.numpy(), atol=1e-5)


@pytest.mark.integration
def test_chunks_are_cut_exactly_as_the_sentence_chunker_cuts(chunker):
    document = Document(content=SHORT, meta={"doc_id": "a", "tenant": "t", "collection": "c"})
    fixed = SentenceChunker(max_tokens=24).run(documents=[document])["documents"]
    late = chunker.run(documents=[document])["documents"]
    assert [(c.content, c.meta["start"]) for c in late] == [(c.content, c.meta["start"]) for c in fixed]
    assert {c.meta["strategy"] for c in late} == {"late"}
    # distinct points, so one collection can hold the same span embedded both ways
    assert not {c.id for c in late} & {c.id for c in fixed}
    assert all(c.meta["tenant"] == "t" and c.meta["collection"] == "c" for c in late)


@pytest.mark.integration
def test_a_document_beyond_the_model_window_is_read_through_overlapping_windows(chunker):
    text = _long_text()
    assert len(chunker._encoder.tokenize(text).ids) > 512
    chunks = chunker.run(documents=[Document(content=text, meta={"doc_id": "long"})])["documents"]
    assert len(chunks) > 20
    for chunk in chunks:
        assert chunk.content == text[chunk.meta["start"]:chunk.meta["end"]]
        assert len(chunk.embedding) == 384
        assert np.linalg.norm(chunk.embedding) == pytest.approx(1.0, abs=1e-4)
    # Chunks far apart in the document were encoded in different windows, yet describe the same topic.
    first, last = np.array(chunks[0].embedding), np.array(chunks[-1].embedding)
    assert 0.5 < float(first @ last) < 0.9999


@pytest.mark.integration
def test_offsets_and_sentence_spans_agree_with_the_text(chunker):
    text = _long_text()
    chunks = chunker.run(documents=[Document(content=text, meta={"doc_id": "long"})])["documents"]
    document_sentences = [text[s:e] for s, e in split_sentences(text)]
    seen = [chunk.content[s:e] for chunk in chunks for s, e in chunk.meta["sentences"]]
    assert seen == document_sentences
    assert [c.meta["position"] for c in chunks] == list(range(len(chunks)))


@pytest.mark.integration
def test_empty_documents_give_no_chunks_and_do_not_disturb_the_others(chunker):
    documents = [Document(content="", meta={"doc_id": "e"}), Document(content="  \n ", meta={"doc_id": "w"}),
                 Document(content=SHORT, meta={"doc_id": "a"})]
    chunks = chunker.run(documents=documents)["documents"]
    assert {c.meta["doc_id"] for c in chunks} == {"a"}
    assert chunker.run(documents=[])["documents"] == []


@pytest.mark.integration
def test_a_batch_gives_the_same_vectors_as_one_document_at_a_time(chunker):
    documents = [Document(content=SHORT, meta={"doc_id": "a"}), Document(content=_long_text(), meta={"doc_id": "b"})]
    together = chunker.run(documents=documents)["documents"]
    alone = [c for d in documents for c in chunker.run(documents=[d])["documents"]]
    assert np.allclose([c.embedding for c in together], [c.embedding for c in alone], atol=1e-5)


@pytest.mark.integration
def test_the_chunk_budget_can_be_overridden_at_run_time(chunker):
    document = Document(content=SHORT, meta={"doc_id": "a"})
    assert len(chunker.run(documents=[document], max_tokens=200)["documents"]) == 1


@pytest.mark.integration
def test_a_full_local_weight_gives_each_chunk_its_vector_read_alone(chunker):
    chunks = chunker.run(documents=[Document(content=SHORT, meta={"doc_id": "a"})], local_weight=1.0)["documents"]
    alone = sentence_transformer("all-MiniLM-L6-v2").encode([c.content for c in chunks], normalize_embeddings=True)
    assert np.allclose([c.embedding for c in chunks], alone, atol=1e-5)


@pytest.mark.integration
def test_the_local_weight_moves_siblings_apart_and_keeps_unit_vectors(chunker):
    document = Document(content=SHORT, meta={"doc_id": "a"})
    late = np.array([c.embedding for c in chunker.run(documents=[document])["documents"]])
    mixed = np.array([c.embedding for c in chunker.run(documents=[document], local_weight=0.5)["documents"]])
    alone = np.array([c.embedding for c in chunker.run(documents=[document], local_weight=1.0)["documents"]])
    assert np.allclose(np.linalg.norm(mixed, axis=1), 1.0, atol=1e-4)

    def mean_sibling_similarity(vectors: np.ndarray) -> float:
        similarities = vectors @ vectors.T
        return float(similarities[~np.eye(len(vectors), dtype=bool)].mean())

    assert mean_sibling_similarity(late) > mean_sibling_similarity(mixed) > mean_sibling_similarity(alone)


@pytest.mark.unit
def test_bad_parameters_are_refused():
    with pytest.raises(ValueError):
        LateChunker(local_weight=-0.1)
    with pytest.raises(ValueError):
        LateChunker(window_tokens=16)
    with pytest.raises(ValueError):
        LateChunker(window_tokens=128, window_overlap=64)
    with pytest.raises(ValueError):
        LateChunker(max_tokens=2)


@pytest.mark.integration
def test_yaml_round_trip_gives_the_same_chunks(chunker):
    pipeline = Pipeline()
    pipeline.add_component("chunker", LateChunker(max_tokens=24, window_overlap=32, local_weight=0.3))
    loaded = load_pipeline(pipeline.dumps())
    document = Document(content=SHORT, meta={"doc_id": "a"})
    before = pipeline.run({"chunker": {"documents": [document]}})["chunker"]["documents"]
    after = loaded.run({"chunker": {"documents": [document]}})["chunker"]["documents"]
    assert [c.id for c in after] == [c.id for c in before]
    assert np.allclose([c.embedding for c in after], [c.embedding for c in before])


LATE_DEFAULTS = {"model": "all-MiniLM-L6-v2", "max_tokens": 128, "overlap_sentences": 0, "window_tokens": None,
                 "window_overlap": 64, "batch_size": 16, "prompt_name": "document", "local_weight": 0.25,
                 "device": "auto"}


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(LateChunker(), LATE_DEFAULTS)


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(LateChunker, {**LATE_DEFAULTS, "max_tokens": 64, "window_tokens": 256, "window_overlap": 32,
                                  "batch_size": 4, "prompt_name": None, "local_weight": 0.0, "device": "cpu"})
