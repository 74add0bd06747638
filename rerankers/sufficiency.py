"""Per-question signals of whether the passages a generator reads hold the answer ("sufficient context").

A relevance score says a passage is on topic; it does not say the passage answers. These signals look at the
evidence and at the generator from other angles, each computed once per question from what the generator
reads (the pruned, reranked, gated passages) and, for the answer-side ones, from the generator's own reply:

- ``relevance``, ``margin``: the best passage score and how far it stands above the second;
- ``sentence``, ``mass``: the best pruner keep score of a sentence, and the summed keep scores of the kept ones;
- ``cosine``: the best bi-encoder cosine of the query with one sentence of the passages read;
- ``lexical``: how much of the query's rare vocabulary the best-covering passage holds (``ragpress.scoring.lexical``);
- ``answer_logprob``, ``answer_min_logprob``: the generator's mean and lowest token log-probability of its
  own reply, re-scored under the prompt it answered from (its self-confidence);
- ``decline_logprob``: the mean token log-probability of the abstention reply under the same prompt (how
  ready the model was to say the passages do not hold the answer).

``ragpress.bench.gate_threshold --features`` measures how well each separates answerable questions from the same
questions with their gold passages removed; ``ragpress.training.fit_sufficiency`` fits a logistic model on some.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from haystack import Document

from ragpress.base.schema import KEPT_SENTENCES, SENTENCE_SCORES
from ragpress.rerankers.fusion import embedding_features
from ragpress.scoring import lexical
from ragpress.scoring.logistic_fusion import check_logistic, combine
from ragpress.scoring.sentences import document_spans

EVIDENCE_FEATURES = ("relevance", "margin", "sentence", "mass", "cosine", "lexical")
PRUNER_FEATURES = ("sentence", "mass")  # read from the pruner's per-sentence scores
ANSWER_FEATURES = ("answer_logprob", "answer_min_logprob", "decline_logprob")
FEATURES = EVIDENCE_FEATURES + ANSWER_FEATURES


SUFFICIENCY_FILE_KIND = "ragpress-sufficiency"
DEFAULT_SUFFICIENCY_NAME = "ragpress-sufficiency-minilm"
DEFAULT_SUFFICIENCY_FILE = Path(__file__).resolve().parent / "weights" / "sufficiency-minilm.json"


@dataclass(frozen=True)
class SufficiencyWeights:
    """``sigmoid(bias + sum(weights[f] * feature f))`` is the probability that the evidence answers; the gate
    abstains below ``threshold``. Features absent from ``weights`` are not computed."""

    weights: dict[str, float]
    bias: float
    threshold: float
    embedder: str = "all-MiniLM-L6-v2"
    fitted_on: str = ""

    def __post_init__(self) -> None:
        check_logistic("sufficiency", self.weights, FEATURES, self.threshold)

    @property
    def needs_answer(self) -> bool:
        """Whether a feature is read from the generator's reply (the gate must then sit after the generator)."""
        return bool(set(self.weights) & set(ANSWER_FEATURES))

    def probability(self, features: dict[str, float]) -> float:
        return combine(self, {f: [features[f]] for f in self.weights})[0]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": SUFFICIENCY_FILE_KIND, **asdict(self)}, indent=2) + "\n")

    @classmethod
    def load(cls, name: str) -> SufficiencyWeights:
        """The shipped weights' name or a path to a weights file."""
        path = DEFAULT_SUFFICIENCY_FILE if name == DEFAULT_SUFFICIENCY_NAME else Path(name).expanduser()
        record = json.loads(path.read_text())
        if record.pop("kind", None) != SUFFICIENCY_FILE_KIND:
            raise ValueError(f"{path} is not a ragpress sufficiency file")
        return cls(**record)


def _sentence_scores(document: Document) -> list[float]:
    return [float(x) for x in (document.meta or {}).get(SENTENCE_SCORES) or []]


def evidence_features(
    embedder: Any, query: str, documents: list[Document], names: Iterable[str] = EVIDENCE_FEATURES
) -> dict[str, float]:
    """The evidence-side signals ``names`` of ``documents`` (all 0.0 without documents). Only those asked for
    are computed: the gate needs two, and ``cosine`` embeds every sentence."""
    names = set(names)
    if not documents:
        return dict.fromkeys(names, 0.0)
    texts = [d.content or "" for d in documents]
    scores = sorted(((d.score or 0.0) for d in documents), reverse=True)
    keep = [_sentence_scores(d) for d in documents]
    kept = [(d.meta or {}).get(KEPT_SENTENCES) or [] for d in documents]
    signals = {
        "relevance": lambda: scores[0],
        "margin": lambda: scores[0] - (scores[1] if len(scores) > 1 else 0.0),
        "sentence": lambda: max((x for s in keep for x in s), default=0.0),
        "mass": lambda: sum(s[i] for s, k in zip(keep, kept, strict=True) for i in k if i < len(s)),
        "cosine": lambda: max(embedding_features(
            embedder, query, texts, [document_spans(d) for d in documents], sentences=True, dense=False
        )["sentence"]),
        "lexical": lambda: max(lexical.bm25_coverage(query, texts)),
    }
    return {name: signals[name]() for name in names if name in signals}
