"""A learned fusion of a few per-(query, passage) signals into one relevance probability.

The signals are ones dense retrieval alone lacks or only approximates: the bi-encoder cosine (retrieval's own
score, recomputed so any retriever's list can be reranked), a lexical match of the query's rare terms over
the candidate list (``ragpress.scoring.lexical``) and, optionally, the Provence model's relevance logit. Their
weights are a logistic model (``ragpress.scoring.logistic_fusion``) fitted on SciFact train claims
(``ragpress.training.fit_fusion``) and live in a small JSON file, so the shared encoder and the pruner's weights
are untouched.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ragpress.scoring import lexical
from ragpress.scoring.logistic_fusion import check_logistic

FUSION_FILE_KIND = "ragpress-fusion"
DEFAULT_FUSION_NAME = "ragpress-fusion-minilm"
DEFAULT_FUSION_FILE = Path(__file__).resolve().parent / "weights" / "fusion-minilm.json"
FEATURES = ("dense", "sentence", "lexical", "relevance")


@dataclass(frozen=True)
class FusionWeights:
    """``sigmoid(bias + sum(weights[f] * feature f))``; features absent from ``weights`` are not computed."""

    weights: dict[str, float]
    bias: float
    embedder: str = "all-MiniLM-L6-v2"
    k1: float = lexical.K1
    b: float = lexical.B
    fitted_on: str = ""

    def __post_init__(self) -> None:
        check_logistic("fusion", self.weights, FEATURES)

    @property
    def needs_relevance(self) -> bool:
        return "relevance" in self.weights

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": FUSION_FILE_KIND, **asdict(self)}, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> FusionWeights:
        record = json.loads(Path(path).expanduser().read_text())
        if record.pop("kind", None) != FUSION_FILE_KIND:
            raise ValueError(f"{path} is not a ragpress fusion file")
        return cls(**record)


def is_fusion_file(model: str) -> bool:
    path = Path(model).expanduser()
    if path.suffix != ".json" or not path.is_file():
        return False
    try:
        return json.loads(path.read_text()).get("kind") == FUSION_FILE_KIND
    except (OSError, ValueError):
        return False


def fusion_path(model: str) -> Path:
    return DEFAULT_FUSION_FILE if model == DEFAULT_FUSION_NAME else Path(model).expanduser()


def embedding_features(
    embedder: object, query: str, texts: list[str], spans: list[list[tuple[int, int]]], sentences: bool,
    dense: bool = True,
) -> dict[str, list[float]]:
    """``dense`` (when asked): cosine of the bi-encoder embeddings of query and passage (what dense retrieval
    ranks by); ``sentence`` (when asked): the best cosine of the query with one sentence of the passage, which
    a passage-level embedding blurs when one sentence of a long passage holds the match. Only what is asked
    for is embedded. Empty passages: 0."""
    # A passage without sentence spans is its own single sentence.
    pieces = [
        ([t[s:e] for s, e in sp if t[s:e].strip()] or ([t] if t.strip() else [])) if sentences else []
        for t, sp in zip(texts, spans, strict=True)
    ]
    flat = [query, *(texts if dense else []), *(p for piece in pieces for p in piece)]
    vectors = np.asarray(embedder.encode(flat, normalize_embeddings=True, show_progress_bar=False))
    cosines = vectors[1:] @ vectors[0]
    features, start = {}, 0
    if dense:
        features["dense"] = [float(c) if t.strip() else 0.0 for c, t in zip(cosines[: len(texts)], texts, strict=True)]
        start = len(texts)
    if sentences:
        best = []
        for piece in pieces:
            found = cosines[start : start + len(piece)]
            best.append(float(found.max()) if len(found) else 0.0)
            start += len(piece)
        features["sentence"] = best
    return features
