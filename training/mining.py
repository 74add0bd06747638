"""Dense retrieval with the bundled MiniLM embedder, for hard-negative mining and the retrieval baseline.

Corpus embeddings are cached on disk (keyed by dataset, model and a hash of the passage texts) because
embedding SciFact's 5k abstracts takes minutes on two cores and both training and the benchmark need them.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np

from ragpress.base.model_loading import sentence_transformer
from ragpress.base.settings import get_settings
from ragpress.training.data import Dataset

logger = logging.getLogger(__name__)

EMBEDDER = "all-MiniLM-L6-v2"


def _cache_path(dataset: Dataset, pids: list[str]) -> Path:
    digest = hashlib.sha256("\x1f".join(dataset.passages[p].text for p in pids).encode()).hexdigest()[:16]
    return get_settings().home / "cache" / "rerank_prune" / f"{dataset.name}-{EMBEDDER}-{digest}.npy"


def corpus_embeddings(dataset: Dataset) -> tuple[list[str], np.ndarray]:
    """Passage ids (sorted) and their normalized embeddings, computed once and cached."""
    pids = sorted(dataset.passages)
    path = _cache_path(dataset, pids)
    if path.is_file():
        return pids, np.load(path)
    logger.info("embedding %d %s passages (cached afterwards in %s)", len(pids), dataset.name, path)
    model = sentence_transformer(EMBEDDER)
    texts = [dataset.passages[p].text for p in pids]
    vectors = model.encode(texts, batch_size=32, normalize_embeddings=True, show_progress_bar=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors.astype(np.float32))
    return pids, vectors


def search(dataset: Dataset, queries: list[str], k: int) -> list[list[tuple[str, float]]]:
    """Top-k (pid, cosine) per query, best first."""
    pids, matrix = corpus_embeddings(dataset)
    query_vectors = sentence_transformer(EMBEDDER).encode(
        queries, batch_size=64, normalize_embeddings=True, show_progress_bar=False
    )
    scores = query_vectors @ matrix.T
    top = np.argsort(-scores, axis=1)[:, :k]
    return [[(pids[j], float(scores[i, j])) for j in row] for i, row in enumerate(top)]
