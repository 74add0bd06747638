"""Cached chunk states are exact: reloaded and continued, they give a full forward pass's logits."""

import pytest
import torch
from haystack import Document

from ragpress.base.schema import CONTENT_HASH, END, START, content_hash
from ragpress.generators.kv_cache import rerotate_keys
from ragpress.generators.parallel_attention import build_cache
from ragpress.generators.prompting import build_prompt
from ragpress.indexers.context_expander import merge_adjacent

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


@pytest.mark.parametrize("model", ARCHITECTURES)
def test_a_unit_merged_from_neighbours_is_laid_out_from_their_entries_as_the_sequential_encoding(builder_for, model):
    builder = builder_for(model, "int8")
    builder.precompute(DOCUMENT, SPANS, doc_id="eiffel")
    merged = merge_adjacent(chunk_document(0), chunk_document(1))  # what the expander hands the generator
    entry = builder.load(merged)
    assert entry is not None
    assert builder.tokenizer.decode(entry.token_ids).strip() == DOCUMENT.strip()
    # every token is filed under the characters it covers in the merged text (pruning masks read this); the
    # fixture's gap between the chunks is blank in the merged text
    for token, (start, end) in zip(entry.token_ids, entry.token_spans, strict=True):
        assert merged.content[start:end].strip() in ("", builder.tokenizer.decode([token]).strip())
    assert [span[0] for span in entry.token_spans] == sorted(span[0] for span in entry.token_spans)
    question = build_prompt(builder.tokenizer, "Who built the tower?", []).suffix
    context = builder.assemble([merged], [entry], temperature=1.0, scale=1.0, prune=False)
    start = len(builder.prefix_ids)
    cached = continue_from(builder, context.keys[:, :, start:context.length],
                           context.values[:, :, start:context.length], question)
    expected = full_forward(builder, builder.prefix_ids + entry.token_ids + question)[-len(question):]
    assert cached[-1].argmax() == expected[-1].argmax()  # int8 parts: close, not exact
    assert torch.nn.functional.cosine_similarity(cached[-1], expected[-1], dim=0) > 0.99


def test_a_merged_unit_with_a_part_missing_from_the_store_is_a_miss(builder_for):
    builder = builder_for("SmolLM2-135M-Instruct")
    builder.precompute(DOCUMENT, SPANS[:1], doc_id="eiffel")
    assert builder.load(merge_adjacent(chunk_document(0), chunk_document(1))) is None
