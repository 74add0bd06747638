"""Teacher-forced quality of a context encoding, and the QA examples calibration and the benchmark use.

At 135M parameters answer F1 sits near its floor, so variants are compared on the gold answer itself:
its mean negative log-likelihood, the KL divergence of the first answer token's distribution from
sequential prefill's, and whether both agree on the top-1 first token. Calibration uses the KL at every
answer position (teacher-forced): how far the variant's next-token distributions are from sequential
prefill's along the whole gold answer, not only at its first token.

Examples: XQuAD (the gold paragraph among distractor paragraphs of the same split) and HotpotQA (the two
supporting passages among distractors). Splits are disjoint by XQuAD article and by HotpotQA record, so
calibration (``dev``) never sees the evaluation questions (``eval``). Each chunk carries
``meta['sentences']`` and an oracle ``meta['kept_sentences']`` (gold supporting sentences) to stand in
for the pruner.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import torch
from haystack import Document

from ragpress.base.schema import KEPT_SENTENCES, SENTENCES
from ragpress.generators.kv_context import ParallelContext
from ragpress.scoring.sentences import split_sentences

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@dataclass
class Example:
    question: str
    answers: list[str]
    chunks: list[Document]
    dataset: str


@dataclass
class Scores:
    nll: float  # mean over the gold answer's tokens
    logprobs: torch.Tensor  # next-token log-probabilities at every answer position [answer tokens, vocab]

    @property
    def first_logprobs(self) -> torch.Tensor:
        return self.logprobs[0]


# ---- examples -------------------------------------------------------------------------------------
def _chunk(text: str, kept: list[int] | None, spans: list[tuple[int, int]] | None = None) -> Document:
    spans = spans or split_sentences(text)
    return Document(content=text, meta={SENTENCES: [list(s) for s in spans], KEPT_SENTENCES: kept or []})


def xquad_examples(split: str, count: int, n_chunks: int = 8, seed: int = 0,
                   root: Path = DATASETS) -> list[Example]:
    """Questions from half of XQuAD's articles (``dev``: first half, ``eval``: second half)."""
    articles = json.loads((root / "xquad_en" / "xquad.en.json").read_text())["data"]
    half = len(articles) // 2
    chosen = articles[:half] if split == "dev" else articles[half:]
    paragraphs = [p for a in chosen for p in a["paragraphs"]]
    rng = random.Random(seed)
    pairs = [(i, qa) for i, p in enumerate(paragraphs) for qa in p["qas"]]
    examples = []
    for index, qa in rng.sample(pairs, count):
        gold = paragraphs[index]["context"]
        start = qa["answers"][0]["answer_start"]
        spans = split_sentences(gold)
        kept = [i for i, (s, e) in enumerate(spans) if s <= start < e] or list(range(len(spans)))
        others = rng.sample([j for j in range(len(paragraphs)) if j != index], n_chunks - 1)
        chunks = [_chunk(paragraphs[j]["context"], []) for j in others]
        chunks.insert(rng.randrange(n_chunks), _chunk(gold, kept, spans))
        examples.append(Example(qa["question"], [a["text"] for a in qa["answers"]], chunks, "xquad"))
    return examples


def hotpot_examples(split: str, count: int, n_chunks: int = 8, seed: int = 0,
                    root: Path = DATASETS) -> list[Example]:
    """Records 0-49 (``dev``) or 50-99 (``eval``): supporting passages among the record's distractors."""
    records = json.loads((root / "hipporag_mini" / "hotpotqa_train.json").read_text())
    chosen = records[:50] if split == "dev" else records[50:]
    rng = random.Random(seed)
    examples = []
    for record in rng.sample(chosen, count):
        support: dict[str, list[int]] = {}
        for title, sentence in record["supporting_facts"]:
            support.setdefault(title, []).append(sentence)
        passages = [(title, sents) for title, sents in record["context"]]
        gold = [p for p in passages if p[0] in support]
        distractors = [p for p in passages if p[0] not in support]
        picked = gold + rng.sample(distractors, min(len(distractors), n_chunks - len(gold)))
        rng.shuffle(picked)
        examples.append(Example(record["question"], [record["answer"]],
                                [_hotpot_chunk(t, s, support.get(t, [])) for t, s in picked], "hotpot"))
    return examples


def _hotpot_chunk(title: str, sentences: list[str], kept: list[int]) -> Document:
    text, spans = f"{title}: ", []
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        spans.append((len(text), len(text) + len(sentence)))
        text += sentence + " "
    # the title belongs to the first sentence, so keeping that sentence keeps the title
    if spans:
        spans[0] = (0, spans[0][1])
    return _chunk(text.strip(), [k for k in kept if k < len(spans)], spans)


# ---- teacher-forced scoring -----------------------------------------------------------------------
@torch.inference_mode()
def score_sequential(model, prompt_ids: list[int], answer_ids: list[int]) -> Scores:
    ids = torch.tensor([prompt_ids + answer_ids])
    logits = model(input_ids=ids, logits_to_keep=len(answer_ids) + 1).logits[0]
    return scores_from_logits(logits, answer_ids)


@torch.inference_mode()
def score_parallel(model, context: ParallelContext, suffix: list[int], answer_ids: list[int]) -> Scores:
    ids = suffix + answer_ids
    start = context.layout.question_position
    logits = model(
        input_ids=torch.tensor([ids]),
        position_ids=torch.arange(start, start + len(ids)).unsqueeze(0),
        past_key_values=context.cache(),
        logits_to_keep=len(answer_ids) + 1,
        ape_layout=context.layout,
    ).logits[0]
    return scores_from_logits(logits, answer_ids)


def scores_from_logits(logits: torch.Tensor, answer_ids: list[int]) -> Scores:
    """``logits`` at the last prompt token and at every answer token (the last row is not used)."""
    logprobs = torch.log_softmax(logits[: len(answer_ids)].float(), dim=-1)
    target = torch.tensor(answer_ids)
    nll = -logprobs[torch.arange(len(answer_ids)), target].mean().item()
    return Scores(nll=nll, logprobs=logprobs)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p.exp() * (p - q)).sum(dim=-1)


def first_token_kl(reference: Scores, other: Scores) -> float:
    """KL(reference || other) of the first answer token's distribution."""
    return float(_kl(reference.first_logprobs, other.first_logprobs))


def answer_kl(reference: Scores, other: Scores) -> float:
    """KL(reference || other) of the next-token distributions, averaged over the gold answer's positions."""
    return float(_kl(reference.logprobs, other.logprobs).mean())


def top1_agrees(reference: Scores, other: Scores) -> bool:
    return int(reference.first_logprobs.argmax()) == int(other.first_logprobs.argmax())
