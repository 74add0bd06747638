"""Does the gate refuse what it cannot answer and answer the rest? SQuAD 2.0 dev and L-Eval, per pipeline.

    OMP_NUM_THREADS=2 python -m ragpress.bench.answerability --threads 2 \
        --pipelines pipelines/pruned.yaml /tmp/old-pruned.yaml

Each pipeline YAML's ``pruner`` and ``gate`` components run as that pipeline runs them, on what its retrieval
would hand them (no answer is generated: the gate decides before the generator):

- SQuAD dev (``training/data.py``'s article split, never trained or calibrated on): ``--questions``
  unanswerable and as many answerable questions (``data.sample``). Each retrieves its ``--pool`` best MiniLM
  hits from the whole SQuAD corpus (2,516 paragraphs), so an unanswerable question meets the paragraph it was
  written beside, on its topic, and an answerable one usually meets its own paragraph.
- L-Eval (``leval_dev``, other domains: NLP papers and public-service web pages): each answerable question
  retrieves its ``--pool`` best chunks of its own document, chunked as ingestion chunks it
  (``ragpress.bench.gate_transfer``); the criterion counts how many of them the gate refuses.

Printed per pipeline: refusals with 95% Wilson intervals, and why (the gate's ``abstain_reason``). For SQuAD's
answerable questions also the refusals among those whose own paragraph reached the gate (a refusal where
retrieval missed it is a refusal a user sees, but not one the gate could have avoided).
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from haystack import Document

from ragpress.base.model_loading import sentence_transformer
from ragpress.bench.gate_transfer import DATASETS as LEVAL_SETS
from ragpress.bench.gate_transfer import chunks
from ragpress.bench.gate_transfer import load as load_leval
from ragpress.bench.rerank_prune import to_document
from ragpress.evaluation.intervals import share_with_interval
from ragpress.pipelines.loader import parse_yaml
from ragpress.pruners.component import ProvencePruner
from ragpress.rerankers.relevance_gate import RelevanceGate
from ragpress.training import data, mining


@dataclass
class Refusals:
    """Why the gate refused each question of one set ("" when it let the question through)."""

    reasons: list[str] = field(default_factory=list)

    def cell(self) -> str:
        return share_with_interval(sum(bool(r) for r in self.reasons), len(self.reasons))

    def why(self) -> str:
        counts = Counter(r for r in self.reasons if r)
        return ", ".join(f"{reason} {count}" for reason, count in counts.most_common()) or "-"


@dataclass
class Stages:
    """The pruner and gate of one pipeline YAML."""

    label: str
    pruner: ProvencePruner
    gate: RelevanceGate

    @classmethod
    def from_yaml(cls, path: Path) -> Stages:
        components = parse_yaml(path.read_text())["components"]
        missing = {"pruner", "gate"} - set(components)
        if missing:
            raise SystemExit(f"{path}: no component named {' or '.join(sorted(missing))}; the bench runs a "
                             "pipeline's 'pruner' and 'gate'")
        stages = cls(str(path), ProvencePruner.from_dict(components["pruner"]),
                     RelevanceGate.from_dict(components["gate"]))
        stages.pruner.warm_up()
        stages.gate.warm_up()
        return stages

    def refusal(self, query: str, documents: list[Document]) -> tuple[str, set[str]]:
        """The gate's reason ("" when it answers) and the ids of the passages it read."""
        kept = self.pruner.run(query=query, documents=documents)["documents"]
        return self.gate.run(query=query, documents=kept)["abstain_reason"], {d.id for d in kept}


def squad_sets(stages: Stages, questions: int, pool: int, root: Path | None) -> dict[str, Refusals]:
    dataset = data.load("squad", root)
    dev = data.split(dataset, dev=True)
    chosen = (data.sample([q for q in dev if not q.answerable], questions)
              + data.sample([q for q in dev if q.answerable], questions))
    hits = mining.search(dataset, [q.text for q in chosen], k=pool)
    found = {"unanswerable": Refusals(), "answerable": Refusals(), "answerable, own paragraph read": Refusals()}
    for query, ranked in zip(chosen, hits, strict=True):
        reason, read = stages.refusal(query.text, [to_document(dataset.passages[pid]) for pid, _ in ranked])
        found["answerable" if query.answerable else "unanswerable"].reasons.append(reason)
        if query.answerable and set(query.relevant) & read:
            found["answerable, own paragraph read"].reasons.append(reason)
    return found


def leval_sets(stages: Stages, pool: int, root: Path) -> dict[str, Refusals]:
    embedder = sentence_transformer("all-MiniLM-L6-v2")
    found = {}
    for name in LEVAL_SETS:
        documents = load_leval(root, name)
        refusals = Refusals()
        for units, (_, pairs) in zip(chunks([text for text, _ in documents]), documents, strict=True):
            vectors = np.asarray(embedder.encode([u.content for u in units], normalize_embeddings=True,
                                                 show_progress_bar=False))
            for question, _answer in pairs:
                query = np.asarray(embedder.encode([question], normalize_embeddings=True, show_progress_bar=False))
                ranked = [units[i] for i in np.argsort(-(vectors @ query[0]))[:pool]]
                refusals.reasons.append(stages.refusal(question, ranked)[0])
        found[f"L-Eval {name}, answerable"] = refusals
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", nargs="+", type=Path, default=[Path("pipelines/pruned.yaml")])
    parser.add_argument("--data", type=Path, default=data.default_root())
    parser.add_argument("--questions", type=int, default=300, help="SQuAD dev questions of each kind")
    parser.add_argument("--pool", type=int, default=12, help="hits retrieved (the pruned pipeline's 12)")
    parser.add_argument("--no-leval", action="store_true", help="SQuAD only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| pipeline | set | questions | refused [95% CI] | why |\n|---|---|---|---|---|")
    for path in args.pipelines:
        stages = Stages.from_yaml(path)
        found = squad_sets(stages, args.questions, args.pool, args.data)
        if not args.no_leval:
            found |= leval_sets(stages, args.pool, args.data)
        for name, refusals in found.items():
            print(f"| {path} | {name} | {len(refusals.reasons)} | {refusals.cell()} | {refusals.why()} |",
                  flush=True)


if __name__ == "__main__":
    main()
