"""From (query, passages) to a relevance score per passage and a keep score per sentence, in one pass.

Passages longer than the window are cut into windows (at sentence boundaries when a sentence fits), each
window is encoded with the query, the passage score is the best window's and a sentence's score is the mean
keep probability of its tokens. Used identically by training (labels) and inference (scores), and by both
the pruner and the reranker's Provence mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ragpress.scoring.provence_model import ProvenceModel
from ragpress.scoring.sentences import Span


@dataclass
class EncodedPassage:
    ids: list[int]
    token_sentence: list[int]  # sentence index of each token, -1 when it lies outside every span


@dataclass
class PassageScores:
    score: float  # relevance probability
    sentence_scores: list[float]  # mean keep probability per sentence


def encode_passage(tokenizer: object, text: str, spans: list[Span]) -> EncodedPassage:
    if not text.strip():
        return EncodedPassage([], [])
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return EncodedPassage(encoding["input_ids"], token_sentences(encoding["offset_mapping"], spans))


def token_sentences(offsets: list[Span], spans: list[Span]) -> list[int]:
    """Map each token (by its character offsets) to the sentence span holding its first character."""
    result, sentence = [], 0
    for start, _ in offsets:
        while sentence < len(spans) and spans[sentence][1] <= start:
            sentence += 1
        inside = sentence < len(spans) and spans[sentence][0] <= start
        result.append(sentence if inside else -1)
    return result


def window_ranges(token_sentence: list[int], capacity: int) -> list[Span]:
    """Cut token positions [0, n) into windows of at most ``capacity`` tokens, ending each window at a
    sentence boundary when one exists inside it (so most sentences are scored in one context)."""
    if capacity < 1:
        raise ValueError("the window has no room for passage tokens; shorten the query or raise max_length")
    windows, start, n = [], 0, len(token_sentence)
    while start < n:
        end = min(start + capacity, n)
        if end < n:
            boundary = next(
                (b for b in range(end, start, -1) if token_sentence[b] != token_sentence[b - 1]), start
            )
            end = boundary if boundary > start else end
        windows.append((start, end))
        start = end
    return windows


def aggregate_sentences(token_probs: list[float], token_sentence: list[int], n_sentences: int) -> list[float]:
    """Mean keep probability of each sentence's tokens (0.0 for a sentence without tokens)."""
    sums, counts = [0.0] * n_sentences, [0] * n_sentences
    for prob, sentence in zip(token_probs, token_sentence, strict=True):
        if 0 <= sentence < n_sentences:
            sums[sentence] += prob
            counts[sentence] += 1
    return [s / c if c else 0.0 for s, c in zip(sums, counts, strict=True)]


Sequence = tuple[list[int], list[int], list[int]]


def build_sequence(
    cls: int, sep: int, query_ids: list[int], passage_ids: list[int], passage_sentences: list[int]
) -> Sequence:
    """Input ids, token type ids and sentence index per token (-1 outside the passage's sentences) of
    ``[CLS] query [SEP] passage [SEP]``."""
    ids = [cls, *query_ids, sep, *passage_ids, sep]
    types = [0] * (len(query_ids) + 2) + [1] * (len(passage_ids) + 1)
    sentences = [-1] * (len(query_ids) + 2) + passage_sentences + [-1]
    return ids, types, sentences


def pad_batch(sequences: list[Sequence], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    types = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    sentence_ids = torch.full((len(sequences), width), -1, dtype=torch.long)
    for row, (ids, tt, sentences) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        types[row, : len(tt)] = torch.tensor(tt)
        mask[row, : len(ids)] = 1
        sentence_ids[row, : len(sentences)] = torch.tensor(sentences)
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types, "sentence_ids": sentence_ids}


def query_ids(tokenizer: object, query: str, max_tokens: int) -> list[int]:
    return tokenizer(query, add_special_tokens=False)["input_ids"][:max_tokens]


@torch.inference_mode()
def score_passages(
    model: ProvenceModel,
    tokenizer: object,
    query: str,
    passages: list[tuple[str, list[Span]]],
    batch_size: int = 16,
    max_length: int | None = None,
) -> list[PassageScores]:
    """Relevance and per-sentence keep scores for each (text, sentence spans) passage, one forward per window.

    ``max_length`` (tokens of query + passage window + 3 specials) defaults to the model's (512)."""
    config = model.config
    device = next(model.parameters()).device
    q_ids = query_ids(tokenizer, query, config.max_query_tokens)
    capacity = (max_length or config.max_length) - len(q_ids) - 3
    encoded = [encode_passage(tokenizer, text, spans) for text, spans in passages]
    jobs = [(p, w) for p, enc in enumerate(encoded) for w in window_ranges(enc.token_sentence, capacity)]
    # Sorting by length keeps padding (wasted compute) small inside each batch.
    jobs.sort(key=lambda job: job[1][1] - job[1][0])
    logits: list[float] = [float("-inf")] * len(passages)
    token_probs: list[list[float]] = [[0.0] * len(enc.ids) for enc in encoded]
    for first in range(0, len(jobs), batch_size):
        batch = jobs[first : first + batch_size]
        sequences = [
            build_sequence(
                tokenizer.cls_token_id,
                tokenizer.sep_token_id,
                q_ids,
                encoded[p].ids[s:e],
                encoded[p].token_sentence[s:e],
            )
            for p, (s, e) in batch
        ]
        inputs = {name: tensor.to(device) for name, tensor in pad_batch(sequences, tokenizer.pad_token_id).items()}
        rel, keep = model(**inputs)
        rel, keep = rel.float().cpu(), torch.sigmoid(keep.float()).cpu()
        for row, (p, (s, e)) in enumerate(batch):
            logits[p] = max(logits[p], float(rel[row]))
            offset = len(q_ids) + 2
            token_probs[p][s:e] = keep[row, offset : offset + e - s].tolist()
    return [
        PassageScores(
            score=float(torch.sigmoid(torch.tensor(logit))) if enc.ids else 0.0,
            sentence_scores=aggregate_sentences(token_probs[i], enc.token_sentence, len(passages[i][1])),
        )
        for i, (logit, enc) in enumerate(zip(logits, encoded, strict=True))
    ]
