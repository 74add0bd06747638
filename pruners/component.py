"""The Haystack component that reranks and prunes retrieved documents in one forward pass."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base.devices import check_device
from ragpress.base.roles import Role
from ragpress.base.schema import KEPT_SENTENCES, PRUNED_TEXT, SENTENCE_SCORES, TITLE
from ragpress.pruners.bridge import bridged_sentences
from ragpress.pruners.sentence_fusion import SentenceFusion, fused_scores
from ragpress.scoring.passage_scoring import score_passages
from ragpress.scoring.provence_model import DEFAULT_MODEL_NAME, ProvenceModel, load_shared, weights_path
from ragpress.scoring.selection import (
    check_range,
    check_ranking,
    check_top_k,
    kept_sentences,
    relative_cutoff,
    select,
)
from ragpress.scoring.sentences import Span, document_spans


def check_rule(threshold: float | None, relative_threshold: float | None) -> None:
    check_range("threshold", threshold, 0.0, 1.0)
    check_range("relative_threshold", relative_threshold, 0.0, 1.0)
    if threshold is not None and relative_threshold is not None:
        raise ValueError("give threshold (absolute) or relative_threshold, not both")


@component
class ProvencePruner:
    """Scores each document's relevance to the query and drops its sentences the query does not need.

    Output documents keep their ``content``; ``score`` is the relevance probability and ``meta`` gains
    ``pruned_text`` (kept sentences, original order), ``kept_sentences`` (indices into the sentence spans)
    and ``sentence_scores``. Documents are ordered as ``ranking`` says (by default by score); ``top_k``
    keeps the first, ``score_threshold`` drops documents below a relevance probability.

    A sentence's score is its keep probability fused with lexical evidence (``ragpress.pruners.sentence_fusion``)
    when the weights carry a fitted fusion and ``sentence_fusion`` is on, else the model's mean token keep
    probability. Sentences are kept by one of two rules on that score: ``threshold`` (absolute: score >=
    threshold) or ``relative_threshold`` (score >= ratio * the best sentence's among all documents of the
    call). Without either, the rule calibrated with the weights applies: the fusion's threshold, else
    ``default_relative_threshold`` or ``default_threshold`` from their config.json.

    Usage::

        pruner = ProvencePruner(top_k=5)
        pruner.warm_up()
        result = pruner.run(query="Who wrote Hamlet?", documents=documents)
        context = [d.meta["pruned_text"] for d in result["documents"]]
    """

    role: ClassVar[Role] = Role.PRUNER

    def __init__(
        self,
        model: str = DEFAULT_MODEL_NAME,
        threshold: float | None = None,
        top_k: int | None = None,
        score_threshold: float | None = None,
        max_length: int = 512,
        batch_size: int = 16,
        quantize: bool = False,
        relative_threshold: float | None = None,
        sentence_fusion: bool = True,
        ranking: str = "relevance",
        bridge: bool = False,
        titles: bool = True,
        device: str = "auto",
    ) -> None:
        """
        :param model: ``"ragpress-provence-minilm"`` (shipped weights) or a directory of trained weights.
        :param threshold: keep a sentence when its score is at least this.
        :param relative_threshold: keep a sentence when its keep probability is at least this share of the
            best sentence's among all the documents of one call (so the best sentence is always kept).
            At most one of the two; with neither, the weights' calibrated rule (the fusion's threshold,
            ``default_relative_threshold`` or ``default_threshold`` in their config.json, each set to keep 97%
            of the gold sentences of held-out training queries; see ragpress.training.fit_sentence_fusion and
            ragpress.training.pruner_calibration).
        :param top_k: return at most this many documents (None: all).
        :param score_threshold: drop documents whose relevance probability is below this (None: keep all).
        :param max_length: tokens per window (query + passage + 3 specials); longer passages use more windows.
        :param batch_size: windows per forward pass.
        :param quantize: dynamic int8 quantization of the Linear layers (faster on CPU, scores
            differ slightly).
        :param sentence_fusion: score sentences with the lexical fusion fitted for the weights (when their
            config.json has one); False: the model's raw keep probabilities.
        :param ranking: the order documents come out in, and so which ``top_k`` are kept: ``"relevance"``
            (the pruner's relevance head), ``"input"`` (the order they came in, e.g. retrieval's; only the first
            ``top_k`` are scored, so it is also faster) or ``"fused"`` (reciprocal-rank fusion of the two).
        :param bridge: also keep a dropped sentence of another document that shares a name or number with the
            call's best sentence, absent from the query (a multi-hop question's second hop; ragpress.pruners.bridge).
        :param titles: read each passage under its document's title (``meta["title"]``, which ingestion sets)
            when the passage does not open with it: a chunk far from its heading often never names its subject.
        :param device: ``auto`` (a GPU when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        """
        weights_path(model)
        check_rule(threshold, relative_threshold)
        check_range("score_threshold", score_threshold, 0.0, 1.0)
        check_top_k(top_k)
        check_ranking(ranking)
        if not 16 <= max_length <= 512:
            raise ValueError(f"max_length must be within [16, 512] (MiniLM's positions), got {max_length}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.threshold = threshold
        self.relative_threshold = relative_threshold
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.max_length = max_length
        self.batch_size = batch_size
        self.quantize = quantize
        self.sentence_fusion = sentence_fusion
        self.ranking = ranking
        self.bridge = bridge
        self.titles = titles
        self.device = check_device(device)
        self._model: ProvenceModel | None = None
        self._tokenizer: Any = None
        self._fitted_fusion: SentenceFusion | None = None

    def warm_up(self) -> None:
        if self._model is None:
            self._model, self._tokenizer = load_shared(weights_path(self.model), self.quantize, self.device)
            self._fitted_fusion = SentenceFusion.from_config(self._model.config.sentence_fusion)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            threshold=self.threshold,
            relative_threshold=self.relative_threshold,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            max_length=self.max_length,
            batch_size=self.batch_size,
            quantize=self.quantize,
            sentence_fusion=self.sentence_fusion,
            ranking=self.ranking,
            bridge=self.bridge,
            titles=self.titles,
            device=self.device,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProvencePruner:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        *,
        query: str,
        documents: list[Document],
        threshold: float | None = None,
        top_k: int | None = None,
        score_threshold: float | None = None,
        relative_threshold: float | None = None,
        ranking: str | None = None,
        bridge: bool | None = None,
        titles: bool | None = None,
    ) -> dict[str, list[Document]]:
        """Rerank and prune ``documents`` for ``query``; arguments given here override the init values (a
        sentence rule given here, absolute or relative, replaces the init one).

        :param query: the question.
        :param documents: the candidate passages.
        :param threshold: an absolute sentence rule for this run.
        :param top_k: overrides the init value for this run.
        :param score_threshold: overrides the init value for this run.
        :param relative_threshold: a relative sentence rule for this run.
        :param ranking: overrides the init value for this run.
        :param bridge: overrides the init value for this run.
        :param titles: overrides the init value for this run.
        :returns: ``documents`` in ``ranking`` order, each with its relevance probability as ``score`` and, in
            ``meta``, its pruned text, the kept sentences and every sentence's score.
        """
        check_rule(threshold, relative_threshold)
        if threshold is None and relative_threshold is None:
            threshold, relative_threshold = self.threshold, self.relative_threshold
        top_k = self.top_k if top_k is None else top_k
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        check_range("score_threshold", score_threshold, 0.0, 1.0)
        check_top_k(top_k)
        ranking = self.ranking if ranking is None else ranking
        check_ranking(ranking)
        if ranking == "input":
            documents = documents[:top_k]
        if not documents:
            return {"documents": []}
        self.warm_up()
        spans = [document_spans(d) for d in documents]
        read = titled if (self.titles if titles is None else titles) else untitled
        passages = [read(d, s) for d, s in zip(documents, spans, strict=True)]
        scores = score_passages(
            self._model, self._tokenizer, query, passages, batch_size=self.batch_size, max_length=self.max_length
        )
        fusion = self.fusion()
        if fusion is not None:
            fused = fused_scores(fusion, query, passages, scores)
            scores = [replace(r, sentence_scores=f) for r, f in zip(scores, fused, strict=True)]
        cutoff = self.cutoff([r.sentence_scores for r in scores], threshold, relative_threshold)
        kept = [kept_sentences(r.sentence_scores, cutoff) for r in scores]
        if (self.bridge if bridge is None else bridge):
            extra = bridged_sentences(query, passages, [r.sentence_scores for r in scores], cutoff)
            kept = [sorted([*k, *e]) for k, e in zip(kept, extra, strict=True)]
        pruned = [
            _pruned(d, s, result.score, result.sentence_scores, k)
            for d, s, result, k in zip(documents, spans, scores, kept, strict=True)
        ]
        return {"documents": select(pruned, top_k, score_threshold, ranking)}

    def fusion(self) -> SentenceFusion | None:
        """The sentence fusion in use: the weights' fitted one unless switched off (None without one)."""
        self.warm_up()
        return self._fitted_fusion if self.sentence_fusion else None

    def default_rule(self) -> tuple[float | None, float | None]:
        """(absolute, relative) sentence threshold applied when none is given: exactly one is set."""
        fusion = self.fusion()
        if fusion is not None:
            return fusion.threshold, None
        config = self._model.config
        if config.default_relative_threshold is not None:
            return None, config.default_relative_threshold
        return config.default_threshold, None

    def cutoff(
        self, sentence_scores: list[list[float]], threshold: float | None = None,
        relative_threshold: float | None = None,
    ) -> float:
        """The absolute sentence threshold for a call whose passages' sentences score ``sentence_scores``: the
        given rule, else the weights' calibrated one."""
        if threshold is None and relative_threshold is None:
            threshold, relative_threshold = self.default_rule()
        if relative_threshold is None:
            return threshold
        return relative_cutoff(sentence_scores, relative_threshold)


def untitled(document: Document, spans: list[Span]) -> tuple[str, list[Span]]:
    return document.content or "", spans


def titled(document: Document, spans: list[Span]) -> tuple[str, list[Span]]:
    """The passage as the model reads it: under its document's title unless it opens with it; the spans move
    with the text, so sentence scores still index the passage's own sentences."""
    text, title = document.content or "", (document.meta or {}).get(TITLE)
    if not isinstance(title, str) or not title or title.lower() in text[:len(title) + 8].lower():
        return text, spans
    prefix = f"{title}\n\n"
    return prefix + text, [(s + len(prefix), e + len(prefix)) for s, e in spans]


def _pruned(
    document: Document, spans: list[Span], score: float, sentence_scores: list[float], kept: list[int]
) -> Document:
    text = document.content or ""
    meta = {
        **(document.meta or {}),
        PRUNED_TEXT: " ".join(text[spans[i][0] : spans[i][1]] for i in kept),
        KEPT_SENTENCES: kept,
        SENTENCE_SCORES: [round(s, 6) for s in sentence_scores],
    }
    return replace(document, score=score, meta=meta)
