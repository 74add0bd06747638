"""Calibration scores a (T, S) pair by how far parallel encoding is from sequential prefill."""

import pytest
from haystack import Document

from ragpress.generators import parallel_attention
from ragpress.generators.kv_context import KVContextBuilder
from ragpress.generators.kv_store import LocalKVStore
from ragpress.training.kv_calibration import measure, prepare
from ragpress.training.kv_scoring import Example

from ..generators.conftest import DOCUMENT

pytestmark = pytest.mark.integration


def test_one_chunk_without_corrections_is_sequential_prefill_so_its_kl_is_zero(tmp_path):
    builder = KVContextBuilder("SmolLM2-135M-Instruct", LocalKVStore(tmp_path / "kv"), "none")
    parallel_attention.enable(builder.lm)
    example = Example("When was the Eiffel Tower finished?", ["In 1889."], [Document(content=DOCUMENT)], "test")
    prepared = prepare(builder, [example], reference=True)
    exact = measure(builder, prepared, temperature=1.0, scale=1.0)
    assert exact["kl"] < 1e-3
    assert exact["nll"] == pytest.approx(prepared[0].reference.nll, abs=1e-2)
    sharpened = measure(builder, prepared, temperature=0.5, scale=1.0)
    assert sharpened["kl"] > 0.01  # corrections a single chunk does not need move it away from sequential


def test_the_answers_objective_scores_the_greedy_answers_share_of_the_gold_answer_missed(tmp_path):
    builder = KVContextBuilder("SmolLM2-135M-Instruct", LocalKVStore(tmp_path / "kv"), "none")
    parallel_attention.enable(builder.lm)
    documents = [Document(content=DOCUMENT), Document(content="Big Ben is a bell in London, cast in 1858.")]
    examples = [Example("When was the Eiffel Tower finished?", ["1889"], documents, "test"),
                Example("What is the colour of the sky on Mars?", ["butterscotch"], documents, "test")]
    measured = measure(builder, prepare(builder, examples, reference=True), temperature=0.7, scale=1.0, answers=True)
    # the first is answered from the passages, the second cannot be: half of the gold tokens are missed
    assert measured["answers"] == pytest.approx(0.5)
    assert set(measured) == {"nll", "kl", "answers"}
