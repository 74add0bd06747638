"""CacheBlend: recomputing context tokens across chunks, and choosing which ones."""

import pytest
import torch
from haystack import Document

from ragpress.generators.kv_blend import deviations, recompute, select
from ragpress.generators.prompting import build_prompt

from .conftest import ARCHITECTURES

CHUNKS = [
    "Marie Curie was born in Warsaw in 1867. She moved to Paris to study physics.",
    "She won two Nobel Prizes, in physics and in chemistry. Her daughter also won one.",
    "The prize money paid for a laboratory. It was later named after her.",
]
QUESTION = "Where was the scientist who won two Nobel Prizes born?"


def sequential_context(builder):
    chunks = [Document(content=text) for text in CHUNKS]
    entries = [builder.encode_alone(chunk) for chunk in chunks]
    return builder.assemble(chunks, entries, 1.0, 1.0, sequential=True)


def question_logits(builder, context):
    ids = build_prompt(builder.tokenizer, QUESTION, []).suffix
    start = context.layout.question_position
    with torch.inference_mode():
        return builder.lm(input_ids=torch.tensor([ids]), past_key_values=context.cache(),
                          position_ids=torch.arange(start, start + len(ids)).unsqueeze(0),
                          ape_layout=context.layout).logits[0]


def sequential_logits(builder, context):
    ids = build_prompt(builder.tokenizer, QUESTION, []).suffix
    with torch.inference_mode():
        full = builder.lm(input_ids=torch.tensor([builder.prefix_ids + context.token_ids + ids])).logits[0]
    return full[-len(ids):]


@pytest.mark.integration
@pytest.mark.parametrize("model", ARCHITECTURES)
def test_recomputing_every_token_gives_the_sequential_encoding(builder_for, model):
    builder = builder_for(model)
    context = sequential_context(builder)
    assert recompute(builder.lm, context, share=1.0) == len(context.token_ids)
    torch.testing.assert_close(question_logits(builder, context), sequential_logits(builder, context),
                               atol=2e-3, rtol=1e-3)


@pytest.mark.integration
def test_a_share_of_recomputed_tokens_moves_the_cached_context_towards_sequential(builder_for):
    builder = builder_for("SmolLM2-135M-Instruct")
    reference = sequential_logits(builder, sequential_context(builder))[-1].log_softmax(-1)

    def kl_after(share):
        context = sequential_context(builder)
        recompute(builder.lm, context, share)
        logprobs = question_logits(builder, context)[-1].log_softmax(-1)
        return float((reference.exp() * (reference - logprobs)).sum())

    assert kl_after(0.3) < kl_after(0.0)


@pytest.mark.integration
def test_the_first_chunk_is_exact_so_only_later_chunks_deviate(builder_for):
    builder = builder_for("SmolLM2-135M-Instruct")
    context = sequential_context(builder)
    deviation = deviations(builder.lm, context)
    first = context.chunk_tokens[0]
    assert deviation.shape == (len(context.token_ids),)
    assert deviation[:first].max() < 1e-3
    assert deviation[first:].max() > 0.1


@pytest.mark.unit
def test_the_most_deviating_share_is_chosen_in_cache_order():
    deviation = torch.tensor([0.0, 5.0, 1.0, 9.0, 2.0, 7.0, 0.5, 3.0, 4.0, 6.0])
    assert select(deviation, 0.3).tolist() == [3, 5, 9]
    assert select(deviation, 0.0).tolist() == []
    assert select(deviation, 1.0).tolist() == list(range(10))


@pytest.mark.integration
def test_the_parallel_layout_is_refused(builder_for):
    builder = builder_for("SmolLM2-135M-Instruct")
    chunks = [Document(content=text) for text in CHUNKS]
    entries = [builder.encode_alone(c) for c in chunks]
    for temperature in (0.8, 1.0):  # naive parallel (T = S = 1) shares positions too
        context = builder.assemble(chunks, entries, temperature, 1.0)
        with pytest.raises(ValueError, match="sequential layout"):
            recompute(builder.lm, context, 0.2)
