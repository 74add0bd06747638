"""Cached chunk states are exact: reloaded and continued, they give a full forward pass's logits."""

import pytest
import torch
from haystack import Document

from ragpress.base.schema import CONTENT_HASH, END, START, content_hash
from ragpress.generators.kv_cache import rerotate_keys
from ragpress.generators.parallel_attention import build_cache
from ragpress.generators.prompting import build_prompt

from .conftest import ARCHITECTURES, DOCUMENT, SPANS

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def chunk_document(index: int) -> Document:
    start, end = SPANS[index]
    return Document(content=DOCUMENT[start:end],
                    meta={CONTENT_HASH: content_hash(DOCUMENT), START: start, END: end})


def continue_from(builder, keys, values, question_ids):
    """Logits of ``question_ids`` run on a cache holding the prefix and the given chunk states."""
    prefix = builder.prefix
    cache = build_cache(torch.cat([prefix.keys, keys], 2), torch.cat([prefix.values, values], 2))
    start = prefix.keys.shape[2] + keys.shape[2]
    with torch.inference_mode():
        return builder.lm(input_ids=torch.tensor([question_ids]), past_key_values=cache,
                          position_ids=torch.arange(start, start + len(question_ids)).unsqueeze(0)).logits[0]


def full_forward(builder, ids):
    with torch.inference_mode():
        return builder.lm(input_ids=torch.tensor([ids])).logits[0]


@pytest.mark.parametrize("model", ARCHITECTURES)
def test_one_chunk_reloaded_from_the_store_continues_like_a_full_forward_pass(builder_for, model):
    builder = builder_for(model)
    builder.precompute(DOCUMENT, SPANS, doc_id="eiffel")
    entry = builder.load(chunk_document(0))  # read back from disk, checksum verified
    assert entry is not None
    question = build_prompt(builder.tokenizer, "Who built the tower?", []).suffix
    cached = continue_from(builder, entry.tensors["k"], entry.tensors["v"], question)
    expected = full_forward(builder, builder.prefix_ids + entry.token_ids + question)[-len(question):]
    torch.testing.assert_close(cached, expected, atol=2e-3, rtol=1e-3)
    assert cached[-1].argmax() == expected[-1].argmax()


@pytest.mark.parametrize("model", ARCHITECTURES)
def test_adjacent_chunks_together_are_the_sequential_encoding_of_their_span(builder_for, model):
    builder = builder_for(model)
    builder.precompute(DOCUMENT, SPANS, doc_id="eiffel")
    first, second = (builder.load(chunk_document(i)) for i in (0, 1))
    # each chunk is stored at the positions right after the prefix; move the second one after the first
    keys = torch.cat([first.tensors["k"], rerotate_keys(builder.lm, second.tensors["k"], first.n_tokens)], 2)
    values = torch.cat([first.tensors["v"], second.tensors["v"]], 2)
    question = build_prompt(builder.tokenizer, "Who built the tower?", []).suffix
    cached = continue_from(builder, keys, values, question)
    tokens = builder.prefix_ids + first.token_ids + second.token_ids + question
    torch.testing.assert_close(cached, full_forward(builder, tokens)[-len(question):], atol=2e-3, rtol=1e-3)
    assert builder.tokenizer.decode(first.token_ids + second.token_ids).strip() == DOCUMENT.strip()
