"""The reranker component: ragpress's fused dense + lexical reranker (the default), its trained MiniLM
relevance head, or any sentence-transformers cross-encoder."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from haystack import Document, component, default_from_dict, default_to_dict

from ragpress.base.devices import check_device, resolve_device
from ragpress.base.models import resolve
from ragpress.base.roles import Role
from ragpress.rerankers import fusion
from ragpress.scoring import lexical
from ragpress.scoring.logistic_fusion import combine, logit
from ragpress.scoring.passage_scoring import score_passages
from ragpress.scoring.provence_model import DEFAULT_MODEL_NAME, is_weights_dir, load_shared, weights_path
from ragpress.scoring.selection import check_range, check_top_k, select
from ragpress.scoring.sentences import document_spans


def is_ragpress_model(model: str) -> bool:
    return model == DEFAULT_MODEL_NAME or is_weights_dir(model)


def is_fusion_model(model: str) -> bool:
    return model == fusion.DEFAULT_FUSION_NAME or fusion.is_fusion_file(model)


@component
class Reranker:
    """Scores (query, document) pairs jointly and returns the documents best first, ``score`` set to the
    relevance probability in [0, 1] (so one ``score_threshold`` works as an abstention floor for any model).

    ``model`` is ``"ragpress-fusion-minilm"`` (the default: a logistic fusion of the bundled MiniLM's cosine
    with a BM25 match of the query's rare terms over the candidates, weights fitted on SciFact train claims;
    see ``ragpress.rerankers.fusion``) or a JSON file of such weights, ``"ragpress-provence-minilm"`` (the shipped
    adapter on the bundled MiniLM, the same model as ``ProvencePruner``) or a directory of such weights, or
    any sentence-transformers CrossEncoder id or directory (resolved through ragpress's model registry; fetch
    hub models with ``ragpress models fetch``).

    Usage::

        reranker = Reranker(top_k=5)  # or Reranker(model="cross-encoder/ms-marco-MiniLM-L6-v2")
        reranker.warm_up()
        best = reranker.run(query="Who wrote Hamlet?", documents=documents)["documents"]
    """

    role: ClassVar[Role] = Role.RANKER

    def __init__(
        self,
        model: str = fusion.DEFAULT_FUSION_NAME,
        top_k: int | None = None,
        score_threshold: float | None = None,
        max_length: int = 512,
        batch_size: int = 16,
        quantize: bool = False,
        device: str = "auto",
    ) -> None:
        """
        :param model: the fusion name or file, the ragpress adapter name or weights directory, or a
            CrossEncoder id/directory.
        :param top_k: return at most this many documents (None: all).
        :param score_threshold: drop documents whose relevance probability is below this (None: keep all).
        :param max_length: tokens per (query, passage) window; longer ragpress inputs are scored per window
            (best window wins); CrossEncoders truncate. The fusion reranker ignores it: its embedder reads a
            passage's first 256 tokens, as dense retrieval does, and each sentence on its own.
        :param batch_size: pairs per forward pass.
        :param quantize: dynamic int8 quantization (Provence model, also when a fusion file uses its logit).
        :param device: ``auto`` (a GPU when present, else the CPU), ``cpu``, ``cuda`` or ``cuda:N``.
        """
        if not model:
            raise ValueError("model must name the ragpress adapter, a weights directory or a CrossEncoder")
        check_range("score_threshold", score_threshold, 0.0, 1.0)
        check_top_k(top_k)
        if not 16 <= max_length <= 512 or batch_size < 1:
            raise ValueError("max_length must be within [16, 512] and batch_size positive")
        self.model = model
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.max_length = max_length
        self.batch_size = batch_size
        self.quantize = quantize
        self.device = check_device(device)
        self._backend: Any = None
        self._tokenizer: Any = None
        self._fusion: fusion.FusionWeights | None = None
        self._relevance_model: Any = None

    def warm_up(self) -> None:
        if self._backend is not None:
            return
        if is_fusion_model(self.model):
            self._warm_up_fusion()
        elif is_ragpress_model(self.model):
            self._backend, self._tokenizer = load_shared(weights_path(self.model), self.quantize, self.device)
        else:
            from sentence_transformers import CrossEncoder

            self._backend = CrossEncoder(
                resolve(self.model), device=resolve_device(self.device), max_length=self.max_length,
                local_files_only=True
            )

    def _warm_up_fusion(self) -> None:
        from ragpress.base.model_loading import sentence_transformer

        weights = fusion.FusionWeights.load(fusion.fusion_path(self.model))
        if weights.needs_relevance:
            self._relevance_model = load_shared(weights_path(DEFAULT_MODEL_NAME), self.quantize, self.device)
        self._fusion = weights
        # The shared instance: the query embedder already holds it, so no second copy is loaded.
        self._backend = sentence_transformer(weights.embedder, self.device)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            max_length=self.max_length,
            batch_size=self.batch_size,
            quantize=self.quantize,
            device=self.device,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reranker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        *,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """Rerank ``documents`` for ``query``; arguments given here override the init values.

        :param query: the question.
        :param documents: the candidate passages.
        :param top_k: overrides the init value for this run.
        :param score_threshold: overrides the init value for this run.
        :returns: ``documents``, best first, each with its relevance probability as ``score``.
        """
        top_k = self.top_k if top_k is None else top_k
        score_threshold = self.score_threshold if score_threshold is None else score_threshold
        check_range("score_threshold", score_threshold, 0.0, 1.0)
        check_top_k(top_k)
        if not documents:
            return {"documents": []}
        self.warm_up()
        scores = self._scores(query, documents)
        scored = [replace(d, score=s) for d, s in zip(documents, scores, strict=True)]
        return {"documents": select(scored, top_k, score_threshold)}

    def _scores(self, query: str, documents: list[Document]) -> list[float]:
        if self._fusion is not None:
            return self._fused_scores(query, documents)
        if self._tokenizer is not None:
            passages = [(d.content or "", document_spans(d)) for d in documents]
            results = score_passages(
                self._backend, self._tokenizer, query, passages, self.batch_size, self.max_length
            )
            return [r.score for r in results]
        import torch

        pairs = [(query, d.content or "") for d in documents]
        # Sigmoid maps a single-logit cross-encoder to [0, 1]; multi-label models are not rerankers.
        raw = self._backend.predict(
            pairs, batch_size=self.batch_size, activation_fn=torch.nn.Sigmoid(), show_progress_bar=False
        )
        return [
            0.0 if not (d.content or "").strip() else float(s) for d, s in zip(documents, raw, strict=True)
        ]

    def _fused_scores(self, query: str, documents: list[Document]) -> list[float]:
        weights = self._fusion
        assert weights is not None
        texts = [d.content or "" for d in documents]
        spans = [document_spans(d) for d in documents]
        features = fusion.embedding_features(self._backend, query, texts, spans, "sentence" in weights.weights)
        if "lexical" in weights.weights:
            features["lexical"] = lexical.bm25_coverage(query, texts, weights.k1, weights.b)
        if weights.needs_relevance:
            model, tokenizer = self._relevance_model
            results = score_passages(
                model, tokenizer, query, list(zip(texts, spans, strict=True)), self.batch_size, self.max_length
            )
            features["relevance"] = [logit(r.score) for r in results]
        return [0.0 if not t.strip() else s for t, s in zip(texts, combine(weights, features), strict=True)]
