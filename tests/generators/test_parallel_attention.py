"""Parallel attention: APE's merge, pruning by masking and sliding windows by position."""

import math

import pytest
import torch
from haystack import Document

from ragpress.base.schema import SENTENCES
from ragpress.generators.parallel_attention import ParallelLayout, parallel_attention_forward
from ragpress.generators.prompting import build_prompt

from .conftest import ARCHITECTURES

PREFIX, CHUNKS, QUESTION, HEADS, KV_HEADS, DIM = 4, (6, 5), 3, 4, 2, 8


def layout(temperature=1.0, scale=1.0, keep=None) -> ParallelLayout:
    positions = [torch.arange(PREFIX)] + [torch.arange(PREFIX, PREFIX + n) for n in CHUNKS]
    return ParallelLayout(PREFIX, torch.cat(positions), PREFIX + max(CHUNKS), temperature, scale, keep)


def tensors(seed=0):
    gen = torch.Generator().manual_seed(seed)
    keys = PREFIX + sum(CHUNKS) + QUESTION
    q = torch.randn(1, HEADS, QUESTION, DIM, generator=gen)
    k = torch.randn(1, KV_HEADS, keys, DIM, generator=gen)
    v = torch.randn(1, KV_HEADS, keys, DIM, generator=gen)
    return q, k, v


def attend(q, k, v, lay, window=None):
    out, _ = parallel_attention_forward(torch.nn.Module(), q, k, v, None, scaling=DIM**-0.5,
                                        ape_layout=lay, sliding_window=window)
    return out  # [batch, queries, heads, dim]


def reference(q, k, v, temperature, scale):
    """APE written out: prefix, context and question parts merged by their log-sum-exp."""
    k = k.repeat_interleave(HEADS // KV_HEADS, dim=1)
    v = v.repeat_interleave(HEADS // KV_HEADS, dim=1)
    scores = q @ k.transpose(-1, -2) * DIM**-0.5
    c = PREFIX + sum(CHUNKS)
    causal = torch.ones(QUESTION, QUESTION).tril().bool()
    scores[..., c:] = scores[..., c:].masked_fill(~causal, -math.inf)
    parts = []
    for sl, t, s in ((slice(0, PREFIX), 1.0, 1.0), (slice(PREFIX, c), temperature, scale), (slice(c, None), 1, 1)):
        part = scores[..., sl] / t
        lse = torch.logsumexp(part, -1)
        parts.append((lse * t + math.log(s), torch.softmax(part, -1) @ v[:, :, sl]))
    weights = torch.softmax(torch.stack([p[0] for p in parts], -1), -1)
    return sum(weights[..., i : i + 1] * parts[i][1] for i in range(3)).transpose(1, 2)


@pytest.mark.unit
@pytest.mark.parametrize(("temperature", "scale"), [(1.0, 1.0), (0.8, 1.0), (0.7, 0.8), (0.9, 0.9)])
def test_one_softmax_reproduces_apes_three_part_merge(temperature, scale):
    q, k, v = tensors()
    torch.testing.assert_close(attend(q, k, v, layout(temperature, scale)), reference(q, k, v, temperature, scale))


@pytest.mark.unit
def test_masked_context_tokens_receive_no_attention_at_all():
    q, k, v = tensors(1)
    keep = torch.ones(sum(CHUNKS), dtype=torch.bool)
    keep[2:5] = False  # three tokens of the first chunk pruned
    before = attend(q, k, v, layout(0.8, 0.9, keep))
    k2, v2 = k.clone(), v.clone()
    k2[:, :, PREFIX + 2 : PREFIX + 5] = 1e4 * torch.randn_like(k2[:, :, PREFIX + 2 : PREFIX + 5])
    v2[:, :, PREFIX + 2 : PREFIX + 5] = 1e4
    assert torch.equal(attend(q, k2, v2, layout(0.8, 0.9, keep)), before)
    assert not torch.equal(attend(q, k2, v2, layout(0.8, 0.9)), before)


@pytest.mark.unit
def test_sliding_window_is_applied_by_position_not_by_cache_index():
    q, k, v = tensors(2)
    # window 6: the question (positions 10-12) sees positions >= 5-7, i.e. every chunk's later tokens
    out = attend(q, k, v, layout(), window=6)
    k2, v2 = k.clone(), v.clone()
    first_chunk = slice(PREFIX, PREFIX + CHUNKS[0])
    # position 4 (each chunk's first token) is outside the window for every question token
    for start in (PREFIX, PREFIX + CHUNKS[0]):
        v2[:, :, start] = 1e4
    assert torch.equal(attend(q, k2, v2, layout(), window=6), out)
    v2[:, :, first_chunk.stop - 1] = 1e4  # position 9 is inside the window
    assert not torch.equal(attend(q, k2, v2, layout(), window=6), out)


@pytest.mark.integration
@pytest.mark.parametrize("model", ARCHITECTURES)
def test_without_corrections_one_chunk_in_parallel_equals_sequential_prefill(builder_for, model):
    builder = builder_for(model)
    text = "Marie Curie won two Nobel Prizes, in physics and in chemistry."
    chunk = Document(content=text)
    entry = builder.encode_alone(chunk)
    context = builder.assemble([chunk], [entry], temperature=1.0, scale=1.0)
    question = build_prompt(builder.tokenizer, "What did Curie win?", []).suffix
    start = context.layout.question_position
    with torch.inference_mode():
        parallel = builder.lm(input_ids=torch.tensor([question]), past_key_values=context.cache(),
                              position_ids=torch.arange(start, start + len(question)).unsqueeze(0),
                              ape_layout=context.layout).logits[0]
        sequential = builder.lm(input_ids=torch.tensor([builder.prefix_ids + entry.token_ids + question])).logits[0]
    torch.testing.assert_close(parallel, sequential[-len(question):], atol=2e-3, rtol=1e-3)


def question_logits(builder, chunks, question):
    entries = [builder.encode_alone(c) for c in chunks]
    context = builder.assemble(chunks, entries, temperature=0.8, scale=1.0)
    ids = build_prompt(builder.tokenizer, question, []).suffix
    start = context.layout.question_position
    with torch.inference_mode():
        logits = builder.lm(input_ids=torch.tensor([ids]), past_key_values=context.cache(),
                            position_ids=torch.arange(start, start + len(ids)).unsqueeze(0),
                            ape_layout=context.layout).logits[0, -1]
    return logits, context.masked_tokens


@pytest.mark.integration
def test_the_answer_no_longer_depends_on_a_pruned_sentences_content(builder_for):
    builder = builder_for("SmolLM2-135M-Instruct")
    other = Document(content="The museum opens at nine in the morning every day.")
    results = []
    for word in ("apple", "lemon"):
        text = f"Visitors must show a ticket at the gate. The secret password is {word}."
        spans = [[0, 40], [41, len(text)]]
        # the pruner kept sentence 0 and dropped the password sentence
        pruned = Document(content=text, meta={SENTENCES: spans, "kept_sentences": [0]})
        unpruned = Document(content=text, meta={SENTENCES: spans})
        results.append((question_logits(builder, [pruned, other], "What is the secret password?"),
                        question_logits(builder, [unpruned, other], "What is the secret password?")))
    (masked_a, n_a), (plain_a, _) = results[0]
    (masked_b, n_b), (plain_b, _) = results[1]
    assert n_a == n_b > 0
    torch.testing.assert_close(masked_a, masked_b, atol=1e-5, rtol=0)  # content of the pruned sentence is gone
    assert not torch.allclose(plain_a, plain_b, atol=1e-3)  # ... and it mattered before pruning
