"""The sequential-prefill generator answers from its passages, streams, and abstains without them."""

from __future__ import annotations

import pytest
from haystack import Document, Pipeline
from serialization import assert_pinned, assert_restored

from ragpress.generators.local_generator import LocalGenerator, says_no_answer
from ragpress.generators.prompting import DEFAULT_SYSTEM_PROMPT
from ragpress.pipelines.loader import load_pipeline

pytestmark = pytest.mark.integration

PASSAGES = [Document(content="The Colosseum is an amphitheatre in Rome."),
            Document(content="The Millau Viaduct was opened on 14 December 2004 in southern France.")]


@pytest.fixture(scope="module")
def generator() -> LocalGenerator:
    gen = LocalGenerator(max_new_tokens=24)
    gen.warm_up()
    return gen


def test_it_answers_from_the_passages_and_streams_the_same_text(generator: LocalGenerator) -> None:
    pieces: list[str] = []
    result = generator.run(query="When was the Millau Viaduct opened?", documents=PASSAGES[::-1],
                           streaming_callback=lambda chunk: pieces.append(chunk.content))
    assert "2004" in result["replies"][0]
    assert "".join(pieces).strip() == result["replies"][0]
    assert result["meta"][0]["prompt_tokens"] > 0 and result["meta"][0]["abstained"] is False


def test_pruned_text_is_what_the_model_reads(generator: LocalGenerator) -> None:
    doc = Document(content="Irrelevant filler. The answer is 42.", meta={"pruned_text": "The answer is 42."})
    pieces = generator.fit_to_budget("What is the answer?", [doc])
    assert "Irrelevant" not in generator._tokenizer.decode(pieces.sequential())


def test_without_passages_it_abstains_without_calling_the_model() -> None:
    result = LocalGenerator(model="not-a-model").run(query="Anything?", documents=[])
    assert result["meta"][0]["abstained"] is True and "do not contain" in result["replies"][0]


def test_the_least_relevant_passages_are_left_out_beyond_the_budget(generator: LocalGenerator) -> None:
    small = LocalGenerator(max_context_tokens=16)
    small.warm_up()
    long_docs = [Document(content="alpha " * 12), Document(content="beta " * 12)]
    text = small._tokenizer.decode(small.fit_to_budget("q", long_docs).sequential())
    assert "alpha" in text and "beta" not in text


@pytest.mark.parametrize(("answer", "abstained"), [
    ("The documents do not contain that.", True), ("It opened in 2004.", False), ("", True)])
def test_answers_that_decline_count_as_abstentions(answer: str, abstained: bool) -> None:
    assert says_no_answer(answer) is abstained


def test_yaml_round_trip_keeps_the_parameters() -> None:
    pipeline = Pipeline()
    pipeline.add_component("g", LocalGenerator(max_new_tokens=7, max_context_tokens=99))
    assert load_pipeline(pipeline.dumps()).get_component("g").to_dict() == pipeline.get_component("g").to_dict()


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["local", "kv", "remote"])
def test_a_run_time_max_new_tokens_is_checked_like_the_init_value(kind: str) -> None:
    from ragpress.generators.kv_generator import KVCacheGenerator
    from ragpress.generators.remote_generator import RemoteGenerator

    make = {"local": LocalGenerator, "kv": KVCacheGenerator,
            "remote": lambda: RemoteGenerator(base_url="http://127.0.0.1:9/v1", model="m")}[kind]
    with pytest.raises(ValueError, match="max_new_tokens must be at least 1, not 0"):
        make().run(query="q", documents=PASSAGES, max_new_tokens=0)


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(LocalGenerator(), {"model": "SmolLM2-135M-Instruct", "max_new_tokens": 64, "max_context_tokens": 1536,
                                     "system_prompt": DEFAULT_SYSTEM_PROMPT, "device": "auto"})


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(LocalGenerator, {"model": "gemma-3-270m", "max_new_tokens": 8, "max_context_tokens": 256,
                                     "system_prompt": "Answer briefly.", "device": "cpu"})
