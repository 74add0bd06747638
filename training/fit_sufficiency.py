"""Fit the sufficiency model of RelevanceGate on held-out calibration TRAIN questions; dev is never read.

    OMP_NUM_THREADS=1 nice -n 5 python -m ragpress.training.fit_sufficiency --threads 1

Questions are ``ragpress.training.data.is_calibration`` train questions (the pruner never trained on them),
labelled as ``ragpress.bench.answer_quality.labelled_contexts`` labels them: SQuAD 2.0's by the dataset (its
unanswerable questions sit beside an on-topic paragraph that does not answer them), every other dataset's
twice, from the full corpus (answerable, label 1) and from the corpus without its gold passages
(unanswerable, label 0). ProvencePruner keeps ``--context`` of the top
``--pool`` MiniLM hits, ordered by ``--ranking`` (``input``, retrieval's order, as ``pipelines/pruned.yaml``
runs it), and prunes them, LocalGenerator answers from the kept sentences, and the signals of
``ragpress.rerankers.sufficiency`` are recorded (cached on disk: generating is the slow part; ``--evidence-only`` skips
it, and with it the answer-side signals, which are compared but never kept).

A logistic model of answerability is fitted on each candidate feature set (standardised, light L2). Its
threshold follows the service rule: the highest cut on the probability that wrongly refuses at most
``--max-false`` of the answerable questions, read off out-of-fold probabilities (folds by question, so a
question's contexts stay together), so it is not picked on the very fit. The evidence-only set refusing
most unanswerable questions at its threshold is refitted on all questions and saved.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from haystack import Document

from ragpress.base.model_loading import sentence_transformer
from ragpress.base.settings import get_settings
from ragpress.bench.answer_quality import labelled_contexts
from ragpress.generators.local_generator import NO_ANSWER, LocalGenerator
from ragpress.pruners.component import ProvencePruner
from ragpress.rerankers import sufficiency
from ragpress.rerankers.relevance_gate import RelevanceGate
from ragpress.scoring.provence_model import ADAPTER_FILE, DEFAULT_WEIGHTS
from ragpress.scoring.selection import RANKINGS
from ragpress.training import answer_signals, data
from ragpress.training.fit_fusion import fit_logistic
from ragpress.training.pruner_calibration import recall_quantile

logger = logging.getLogger(__name__)

FOLDS = 5
L2 = 1e-2  # few features, a few hundred examples: a light penalty only steadies correlated weights
CANDIDATES = [
    ("relevance",),
    ("sentence",),
    ("cosine",),
    ("lexical",),
    ("relevance", "sentence"),
    ("relevance", "lexical"),
    ("sentence", "lexical"),
    ("cosine", "lexical"),
    ("relevance", "cosine"),
    ("relevance", "sentence", "cosine"),
    ("relevance", "sentence", "cosine", "lexical"),
    sufficiency.EVIDENCE_FEATURES,
    ("answer_logprob", "answer_min_logprob", "decline_logprob"),
    sufficiency.FEATURES,
]


@dataclass
class Example:
    """One question answered from one corpus (full: answerable), with the gate's signals."""

    qid: str
    dataset: str
    answerable: bool
    features: dict[str, float]


def collect(name: str, questions: int, pool: int, context: int, ranking: str, answers: bool,
            root: Path | None) -> list[Example]:
    """The calibration examples of one dataset (cached by the questions, the settings and the pruner's weights,
    whose scores the features are); ``answers``: also generate each answer for the answer-side signals (the
    slow part)."""
    dataset = data.load(name, root)
    queries = data.sample([q for q in data.split(dataset, dev=False) if data.is_calibration(q)], questions)
    names = sufficiency.FEATURES if answers else sufficiency.EVIDENCE_FEATURES
    weights = hashlib.sha256((DEFAULT_WEIGHTS / ADAPTER_FILE).read_bytes()).hexdigest()
    settings = f"{[q.qid for q in queries]}:{pool}:{context}:{names}:{ranking}:{weights}"
    digest = hashlib.sha256(settings.encode()).hexdigest()[:12]
    path = get_settings().home / "cache" / "sufficiency" / f"{name}-{digest}.json"
    if path.is_file():
        return [Example(r["qid"], r["dataset"], r["answerable"], r["features"]) for r in json.loads(path.read_text())]
    pruner = ProvencePruner(top_k=context, ranking=ranking)
    generator = LocalGenerator(max_new_tokens=32) if answers else None
    if generator is not None:
        generator.warm_up()  # the answer-side scoring reads its model even when a reply is an abstention
    embedder = sentence_transformer("all-MiniLM-L6-v2")
    examples = []
    for number, (query, answerable, documents) in enumerate(labelled_contexts(dataset, queries, pool)):
        kept = pruner.run(query=query.text, documents=documents)["documents"]
        features = sufficiency.evidence_features(embedder, query.text, kept)
        if generator is not None:
            features |= answer_side(generator, query.text, kept)
        examples.append(Example(query.qid, name, answerable, features))
        if number % 50 == 49:
            logger.info("%s: %d contexts", name, number + 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(e) for e in examples]))
    return examples


def answer_side(generator: LocalGenerator, query: str, documents: list[Document]) -> dict[str, float]:
    """The answer-side signals of the reply ``generator`` gives from ``documents``."""
    reply = generator.run(query=query, documents=documents)["replies"][0]
    prompt = generator.fit_to_budget(query, documents).sequential()
    return answer_signals.answer_features(generator._lm, generator._tokenizer, prompt, reply, NO_ANSWER)


def matrix(examples: list[Example], names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.tensor([[e.features[n] for n in names] for e in examples], dtype=torch.float32)
    return x, torch.tensor([float(e.answerable) for e in examples])


def fit(examples: list[Example], names: tuple[str, ...], l2: float) -> sufficiency.SufficiencyWeights:
    """Logistic regression of answerability on the features (``ragpress.training.fit_fusion.fit_logistic``: the output
    stays a calibrated probability, which the threshold is set on)."""
    x, y = matrix(examples, names)
    weights, bias = fit_logistic(x, y, l2)
    return sufficiency.SufficiencyWeights(weights=dict(zip(names, weights, strict=True)), bias=bias, threshold=0.5)


def fold(example: Example) -> int:
    return int(hashlib.sha256(f"sufficiency-fold:{example.dataset}:{example.qid}".encode()).hexdigest(), 16) % FOLDS


def out_of_fold(examples: list[Example], names: tuple[str, ...], l2: float, min_score: float) -> list[float]:
    """Each example's answerability probability from a model fitted without its question's fold; examples
    the gate's relevance floor ``min_score`` refuses anyway get -inf (below every cut)."""
    probabilities = [0.0] * len(examples)
    for k in range(FOLDS):
        model = fit([e for e in examples if fold(e) != k], names, l2)
        for i, e in enumerate(examples):
            if fold(e) == k:
                probabilities[i] = model.probability(e.features)
    return [p if e.features["relevance"] >= min_score else -math.inf
            for p, e in zip(probabilities, examples, strict=True)]


def threshold_for(probabilities: list[float], examples: list[Example], max_false: float) -> float:
    """The highest cut that, with the relevance floor, wrongly refuses at most ``max_false`` of the answerable
    examples (0.0 when the floor alone refuses more)."""
    answerable = [p for p, e in zip(probabilities, examples, strict=True) if e.answerable]
    return max(0.0, recall_quantile(answerable, 1 - max_false))


def refusal_rates(probabilities: list[float], examples: list[Example], cut: float) -> tuple[float, float]:
    """(refused unanswerable, refused answerable) at ``cut``."""
    def share(answerable: bool) -> float:
        chosen = [p for p, e in zip(probabilities, examples, strict=True) if e.answerable == answerable]
        return sum(p < cut for p in chosen) / len(chosen)

    return share(False), share(True)


def choose(examples: list[Example], max_false: float, min_score: float) -> tuple[str, ...]:
    """The candidate feature set that refuses most unanswerable examples out of fold at the service threshold
    (ties: fewer features); every candidate's out-of-fold AUC and refusal rates are logged."""
    best: tuple[float, int, tuple[str, ...]] | None = None
    available = set(examples[0].features)
    for names in (c for c in CANDIDATES if set(c) <= available):
        probabilities = out_of_fold(examples, names, L2, 0.0)
        oof_auc = answer_signals.auc(*([p for p, e in zip(probabilities, examples, strict=True) if e.answerable == ok]
                                    for ok in (True, False)))
        gated = out_of_fold(examples, names, L2, min_score)
        cut = threshold_for(gated, examples, max_false)
        missing, answerable = refusal_rates(gated, examples, cut)
        logger.info("%s: out-of-fold AUC %.3f; with relevance floor %.2f, cut %.3f refuses %.0f%% unanswerable vs "
                    "%.0f%% answerable", "+".join(names), oof_auc, min_score, cut, 100 * missing, 100 * answerable)
        key = (round(missing, 3), -len(names), names)
        # Only a gate before generation can report "gated" in the response: answer-side sets are measured, not kept.
        if not set(names) & set(sufficiency.ANSWER_FEATURES) and (best is None or key[:2] > best[:2]):
            best = key
    assert best is not None
    return best[2]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=sufficiency.DEFAULT_SUFFICIENCY_FILE)
    parser.add_argument("--data", type=Path, default=None, help="shared datasets directory")
    parser.add_argument("--datasets", nargs="+", default=["xquad", "hotpotqa", "musique", "scifact", "squad"])
    parser.add_argument("--questions", type=int, default=45, help="calibration questions per dataset")
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--context", type=int, default=5)
    parser.add_argument("--ranking", choices=RANKINGS, default="input",
                        help="which --context of the pool the pruner keeps (pipelines/pruned.yaml: input)")
    parser.add_argument("--max-false", type=float, default=0.10,
                        help="tolerated refusal of answerable questions by the whole gate (relevance floor and model)")
    parser.add_argument("--min-score", type=float, default=RelevanceGate().min_score,
                        help="the gate's relevance floor, which the model's threshold is chosen on top of")
    parser.add_argument("--evidence-only", action="store_true",
                        help="skip generating answers: only evidence-side feature sets are compared (minutes, not "
                             "half an hour; the answer-side sets are measured, never kept)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    examples = [e for name in args.datasets
                for e in collect(name, args.questions, args.pool, args.context, args.ranking, not args.evidence_only,
                                 args.data)]
    names = choose(examples, args.max_false, args.min_score)
    cut = threshold_for(out_of_fold(examples, names, L2, args.min_score), examples, args.max_false)
    model = fit(examples, names, L2)
    note = (f"logistic fit (L2={L2:g}) on {len(examples)} contexts of held-out calibration train questions of "
            f"{', '.join(args.datasets)} (SQuAD's unanswerable questions as written, the others' also without "
            f"their gold passages; pruner ranking "
            f"{args.ranking}, {args.context} of {args.pool}); threshold: highest cut that with "
            f"relevance floor {args.min_score:g} refuses at most {100 * args.max_false:.0f}% of answerable ones "
            f"out of {FOLDS}-fold; dev never read")
    model = sufficiency.SufficiencyWeights(weights=model.weights, bias=model.bias, threshold=cut, fitted_on=note)
    model.save(args.out)
    logger.info("saved %s: %s bias %.3f threshold %.3f", args.out, model.weights, model.bias, model.threshold)


if __name__ == "__main__":
    main()
