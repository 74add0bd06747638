"""Does the sufficiency gate carry over to documents it was never fitted on? L-Eval's long papers and reports.

    OMP_NUM_THREADS=1 nice -n 5 python -m ragpress.bench.gate_transfer --threads 1

The gate's sufficiency model (``rerankers/weights/sufficiency-minilm.json``) was fitted on SciFact, XQuAD,
HotpotQA and MuSiQue questions. L-Eval (``leval_dev``: ``scientific_qa``, questions about NLP papers, and
``multidoc_qa``, dialogue turns about public-service web pages) is none of those: other domains, long documents,
questions written about one document. Every document is chunked as ingestion chunks it
(``MultiScaleSplitter``, chunk level) and embedded with MiniLM; each question then retrieves its ``--pool``
best chunks by cosine

- from its own document's chunks (answerable, except the few questions L-Eval itself marks unanswerable,
  which are left out), and
- from every *other* document's chunks (unanswerable: the document that holds the answer is not indexed; the
  others are on neighbouring topics, so this is the hard case for a gate).

Two gates are scored on what their pipeline would hand them:

- ``sufficiency`` alone on the ``--top-k`` best chunks (a ``query`` pipeline with the gate added);
- the ``pruned`` pipeline's gate: ProvencePruner as ``pipelines/pruned.yaml`` sets it (the pool's first 5,
  pruned), without the pipeline's neighbour-merging expander, then the relevance floor (``RelevanceGate``'s
  default ``min_score``) alone, and the floor with the sufficiency model.

Printed per dataset: how often each abstains on each set (the sufficiency model at its fitted threshold and at
a few others). No answer is generated: the gate decides before the generator.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import torch
from haystack import Document

from ragpress.base import schema
from ragpress.base.model_loading import sentence_transformer
from ragpress.indexers.multi_scale_splitter import MultiScaleSplitter
from ragpress.pipelines.loader import builtin_yaml, parse_yaml
from ragpress.pruners.component import ProvencePruner
from ragpress.rerankers.relevance_gate import RelevanceGate, abstain_reason
from ragpress.rerankers.sufficiency import DEFAULT_SUFFICIENCY_NAME, SufficiencyWeights, evidence_features

DATASETS = ("scientific_qa", "multidoc_qa")
THRESHOLDS = (0.1, 0.15, 0.2, 0.3, 0.4)


def load(root: Path, name: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Each L-Eval document with its answerable (question, reference answer) pairs."""
    found = []
    for line in (root / "leval_dev" / f"{name}.jsonl").read_text().splitlines():
        record = json.loads(line)
        pairs = [(q, a) for q, a in zip(record["instructions"], record["outputs"], strict=True)
                 if "unanswerable" not in a.lower()]
        found.append((record["input"], pairs))
    return found


def chunks(texts: list[str]) -> list[list[Document]]:
    """Each document's chunk-level units, as the ingestion pipeline makes them."""
    splitter = MultiScaleSplitter(include_document=False)
    units = splitter.run(documents=[Document(content=t, meta={"doc_index": i}) for i, t in enumerate(texts)])
    per_document: list[list[Document]] = [[] for _ in texts]
    for unit in units["documents"]:
        if unit.meta.get(schema.LEVEL) == "chunk":
            per_document[unit.meta["doc_index"]].append(unit)
    return per_document


def gate_inputs(
    name: str, root: Path, weights: SufficiencyWeights, pool: int, top_k: int
) -> dict[tuple[str, bool], list[tuple[float | None, float]]]:
    """Per (pipeline, answerable): each question's (best passage score, sufficiency probability)."""
    embedder = sentence_transformer(weights.embedder)
    pruner = ProvencePruner.from_dict(parse_yaml(builtin_yaml("pruned"))["components"]["pruner"])
    documents = load(root, name)
    units = chunks([text for text, _ in documents])
    flat = [u for per in units for u in per]
    owner = np.array([i for i, per in enumerate(units) for _ in per])
    vectors = np.asarray(embedder.encode([u.content for u in flat], normalize_embeddings=True,
                                         show_progress_bar=False))
    found: dict[tuple[str, bool], list[tuple[float | None, float]]] = {}
    for index, (_, pairs) in enumerate(documents):
        for question, _answer in pairs:
            query = np.asarray(embedder.encode([question], normalize_embeddings=True, show_progress_bar=False))[0]
            cosines = vectors @ query
            for answerable in (True, False):
                allowed = np.flatnonzero((owner == index) == answerable)
                ranked = [flat[i] for i in allowed[np.argsort(-cosines[allowed])[:pool]]]
                kept = pruner.run(query=question, documents=ranked)["documents"]
                for pipeline, read in (("query", ranked[:top_k]), ("pruned", kept)):
                    features = evidence_features(embedder, question, read, weights.weights)
                    best = max((d.score or 0.0) for d in read) if read else None
                    found.setdefault((pipeline, answerable), []).append((best, weights.probability(features)))
    return found


def abstention(inputs: list[tuple[float | None, float]], floor: float, cut: float) -> float:
    """The share of questions the gate refuses, decided as RelevanceGate decides (no sentence floor)."""
    return statistics.mean(bool(abstain_reason(best, 0.0, floor, None, p, cut)) for best, p in inputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--sufficiency", default=DEFAULT_SUFFICIENCY_NAME)
    parser.add_argument("--pool", type=int, default=12, help="chunks retrieved (the pruned pipeline's 12)")
    parser.add_argument("--top-k", type=int, default=4, help="chunks the query pipeline reads")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    weights = SufficiencyWeights.load(args.sufficiency)
    floor = RelevanceGate().min_score
    cuts = sorted({weights.threshold, *THRESHOLDS})
    print("| dataset | questions | gate | abstains: unanswerable | answerable | ratio |")
    print("|---|---|---|---|---|---|")
    for name in DATASETS:
        found = gate_inputs(name, args.data, weights, args.pool, args.top_k)
        gates = [(f"pruned: floor {floor} alone", "pruned", floor, 0.0)]
        for cut in cuts:
            mark = " (fitted)" if cut == weights.threshold else ""
            gates += [(f"query: sufficiency {cut:.3f}{mark}", "query", -np.inf, cut),
                      (f"pruned: floor {floor} + sufficiency {cut:.3f}{mark}", "pruned", floor, cut)]
        for label, pipeline, min_score, cut in gates:
            on_missing = abstention(found[pipeline, False], min_score, cut)
            on_answerable = abstention(found[pipeline, True], min_score, cut)
            ratio = f"{on_missing / on_answerable:.1f}x" if on_answerable else "-"
            print(f"| {name} | {len(found[pipeline, True])} | {label} | {100 * on_missing:.0f}% | "
                  f"{100 * on_answerable:.0f}% | {ratio} |")


if __name__ == "__main__":
    main()
