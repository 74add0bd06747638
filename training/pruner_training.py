"""Train the reranker-pruner (LoRA adapters, relevance and keep heads, fusion scalars on the bundled MiniLM).

The shipped weights come from three runs (see docs/benchmarks.md, "Reranker and pruner"; ``--time-budget``
seconds cut a run short when a step is slower than the plan allows; the third, with SQuAD, took 55 minutes on
this machine's two cores: 8 to embed the corpora and mine negatives, 37 to train, 10 to calibrate before the
calibration was capped at 100 queries per dataset, which brings that part to about 2)::

    OMP_NUM_THREADS=1 python -m ragpress.training.pruner_training --out /tmp/rp/run2 --time-budget 1500
    OMP_NUM_THREADS=1 python -m ragpress.training.pruner_training --init /tmp/rp/run2 --seed 14 --time-budget 660 \
        --out /tmp/rp/run3
    OMP_NUM_THREADS=2 python -m ragpress.training.pruner_training --init /tmp/rp/run3 --seed 16 --threads 2 \
        --time-budget 2400 --out ragpress/scoring/weights/provence-minilm
    OMP_NUM_THREADS=2 python -m ragpress.training.fit_sentence_fusion --threads 2

A run cut short by its budget can be continued: ``--init`` its output with the same seed and ``--skip-steps``.

``--rank-weight`` adds a within-passage sentence ranking loss (``sentence_rank_loss``); a further run with it
was measured and not shipped (docs/benchmarks.md, "Sentence ranking loss").

Examples come from the TRAIN side of every split in ``ragpress.training.data`` (dev queries are never read):
positives are the labelled relevant passages, hard negatives the top MiniLM hits that are not labelled
relevant and, for SQuAD 2.0's unanswerable questions, the on-topic paragraph that does not answer them (so the
relevance head learns "answers", not "on topic"); keep labels are the tokens of gold sentences (tokens of
negatives are all "drop"). Silver
examples turn one sentence of a SciFact abstract into a pseudo-query (a subsequence of its content words)
with that sentence as the gold one; abstracts relevant to dev claims are excluded from them. A tenth of the
train queries is held out of training to calibrate the default sentence thresholds saved with the weights
(absolute here, relative in ragpress.training.pruner_calibration).
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ragpress.scoring.passage_scoring import (
    build_sequence,
    encode_passage,
    pad_batch,
    query_ids,
    score_passages,
    window_ranges,
)
from ragpress.scoring.provence_model import (
    ADAPTER_FILE,
    DEFAULT_WEIGHTS,
    ProvenceConfig,
    ProvenceModel,
    new_trainable,
    save,
)
from ragpress.training import data, mining
from ragpress.training.pruner_calibration import CALIBRATION_QUERIES, calibrate_relative_threshold, recall_quantile

logger = logging.getLogger("ragpress.training.pruner_training")
IGNORE = -100.0
SCALAR_LR_FACTOR = 30


@dataclass
class Item:
    query: str
    passage: data.Passage
    relevant: bool
    gold: list[int] | None  # None: relevant but without sentence labels


@dataclass
class Window:
    ids: list[int]
    types: list[int]
    sentences: list[int]  # sentence index per input token, -1 outside the passage's sentences
    keep: list[float]  # per input token; IGNORE where unlabelled
    relevance: float  # IGNORE when the window's relevance is unknown


def mine_items(
    dataset: data.Dataset, queries: list[data.Query], negatives: int, rng: random.Random
) -> list[Item]:
    hits = mining.search(dataset, [q.text for q in queries], k=negatives * 4 + 10)
    items = []
    for query, ranked in zip(queries, hits, strict=True):
        for pid in query.relevant:
            items.append(Item(query.text, dataset.passages[pid], True, query.gold.get(pid)))
        # An unanswerable question's own paragraph is the hardest negative there is: on its topic, no answer.
        items += [Item(query.text, dataset.passages[pid], False, []) for pid in query.near]
        candidates = [pid for pid, _ in ranked if pid not in query.relevant and pid not in query.near]
        # Mostly the hardest negatives, with one drawn deeper so the head also sees easier ones.
        chosen = candidates[: negatives - 1] + rng.sample(candidates[negatives - 1 :], 1)
        items += [Item(query.text, dataset.passages[pid], False, []) for pid in chosen[:negatives]]
    return items


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9-]{3,}")


def silver_items(dataset: data.Dataset, count: int, rng: random.Random) -> list[Item]:
    """Pseudo-queries from single SciFact sentences; the source sentence is the gold one."""
    banned = {pid for q in data.split(dataset, dev=True) for pid in q.relevant}
    pids = sorted(p for p in dataset.passages if p not in banned and len(dataset.passages[p].sentences) > 3)
    items = []
    for pid in rng.sample(pids, count):
        passage = dataset.passages[pid]
        index = rng.randrange(1, len(passage.sentences))
        words = _WORD.findall(passage.sentences[index])
        if len(words) < 5:
            continue
        keep = sorted(rng.sample(range(len(words)), k=min(len(words), rng.randint(4, 8))))
        items.append(Item(" ".join(words[i] for i in keep), passage, True, [index]))
        other = dataset.passages[rng.choice(pids)]
        items.append(
            Item(" ".join(words[i] for i in keep), other, other.pid == pid, [] if other.pid != pid else None)
        )
    return items


def to_windows(item: Item, tokenizer: object, config: ProvenceConfig) -> list[Window]:
    q_ids = query_ids(tokenizer, item.query, config.max_query_tokens)
    encoded = encode_passage(tokenizer, item.passage.text, item.passage.spans())
    gold = set(item.gold or [])
    windows = []
    for index, (start, end) in enumerate(
        window_ranges(encoded.token_sentence, config.max_length - len(q_ids) - 3)
    ):
        sentences = encoded.token_sentence[start:end]
        if item.gold is None:
            # Relevant without sentence labels: trust only the first window's relevance, learn no keep labels.
            if index > 0:
                continue
            labels, relevance = [IGNORE] * len(sentences), 1.0
        else:
            labels = [1.0 if s in gold else 0.0 for s in sentences]
            has_gold = any(labels)
            relevance = 1.0 if has_gold else (0.0 if not item.relevant else IGNORE)
        ids, types, sentence_ids = build_sequence(
            tokenizer.cls_token_id, tokenizer.sep_token_id, q_ids, encoded.ids[start:end], sentences
        )
        keep = [IGNORE] * (len(q_ids) + 2) + labels + [IGNORE]
        windows.append(Window(ids, types, sentence_ids, keep, relevance))
    return windows


def batches(windows: list[Window], batch_size: int, rng: random.Random) -> list[list[Window]]:
    """Shuffled batches of similar length (less padding), in shuffled order."""
    rng.shuffle(windows)
    pool = batch_size * 50
    result = []
    for first in range(0, len(windows), pool):
        chunk = sorted(windows[first : first + pool], key=lambda w: len(w.ids))
        result += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(result)
    return result


@dataclass
class Losses:
    relevance: torch.Tensor
    keep: torch.Tensor
    rank: torch.Tensor


def loss_of(model: ProvenceModel, batch: list[Window], pad_id: int, rank: bool = False) -> Losses:
    """Mean relevance and keep binary cross-entropies over the labelled windows and tokens of ``batch``, and
    with ``rank`` the within-passage sentence ranking loss (``sentence_rank_loss``; a Python loop per window,
    so it is skipped when its weight is 0)."""
    inputs = pad_batch([(w.ids, w.types, w.sentences) for w in batch], pad_id)
    relevance, keep = model(**inputs)
    width = inputs["input_ids"].shape[1]
    keep_labels = torch.tensor([w.keep + [IGNORE] * (width - len(w.keep)) for w in batch])
    rel_labels = torch.tensor([w.relevance for w in batch])
    bce = nn.functional.binary_cross_entropy_with_logits
    zero = torch.zeros(())
    mask = rel_labels != IGNORE
    relevance_loss = bce(relevance[mask], rel_labels[mask]) if mask.any() else zero
    mask = keep_labels != IGNORE
    keep_loss = bce(keep[mask], keep_labels[mask]) if mask.any() else zero
    ranking = sentence_rank_loss(keep, inputs["sentence_ids"], keep_labels) if rank else zero
    return Losses(relevance_loss, keep_loss, ranking)


def sentence_rank_loss(keep: torch.Tensor, sentence_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pairwise logistic loss that each gold sentence's mean keep logit exceeds each other sentence's of the
    same window, averaged over the windows holding both kinds.

    The token cross-entropy is dominated by whole irrelevant passages (all "drop"), so it mostly learns
    passage relevance: inside a relevant SciFact abstract every sentence ends up with about the same keep
    score, and one threshold cannot separate the evidence from its neighbours. This term only compares
    sentences that share a passage and a query."""
    losses = []
    for row in range(keep.shape[0]):
        labelled = (labels[row] != IGNORE) & (sentence_ids[row] >= 0)
        if not labelled.any():
            continue
        sentences, inverse = sentence_ids[row][labelled].unique(return_inverse=True)
        counts = torch.zeros(len(sentences)).index_add(0, inverse, torch.ones(int(labelled.sum())))
        means = torch.zeros(len(sentences)).index_add(0, inverse, keep[row][labelled]) / counts
        gold = torch.zeros(len(sentences)).index_add(0, inverse, labels[row][labelled]) > 0
        if gold.all() or not gold.any():
            continue
        losses.append(nn.functional.softplus(means[~gold][None, :] - means[gold][:, None]).mean())
    return torch.stack(losses).mean() if losses else torch.zeros(())


def param_groups(model: ProvenceModel, lr: float) -> list[dict]:
    """The fusion scalars start at guesses of order 1-10; at the adapters' learning rate they could barely
    move in one run, so they get a larger one (and no weight decay)."""
    scalars = [p for name, p in model.named_parameters() if p.requires_grad and name.startswith("fusion.")]
    rest = [p for name, p in model.named_parameters() if p.requires_grad and not name.startswith("fusion.")]
    return [{"params": rest, "lr": lr}, {"params": scalars, "lr": SCALAR_LR_FACTOR * lr, "weight_decay": 0.0}]


def collect(args: argparse.Namespace, rng: random.Random) -> tuple[list[Item], list[Item]]:
    """Training items, and the gold passages (with sentence labels) of the held-out calibration queries."""
    items: list[Item] = []
    held_out: list[Item] = []
    for name in data.DATASETS:
        dataset = data.load(name, args.data)
        queries = data.split(dataset, dev=False)
        held_out += [
            Item(q.text, dataset.passages[pid], True, gold)
            for q in data.sample([q for q in queries if q.gold and data.is_calibration(q)], CALIBRATION_QUERIES)
            for pid, gold in q.gold.items()
        ]
        queries = [q for q in queries if not data.is_calibration(q)]
        cap = args.max_queries.get(name)
        if cap and len(queries) > cap:
            queries = rng.sample(queries, cap)
        found = mine_items(dataset, queries, args.negatives, rng)
        if name == "scifact" and args.silver:
            found += silver_items(dataset, args.silver, rng)
        logger.info("%s: %d train queries -> %d items", name, len(queries), len(found))
        items += found
    return items, held_out


def calibrate_threshold(
    model: ProvenceModel, tokenizer: object, held_out: list[Item], recall: float
) -> float:
    """The sentence threshold that keeps ``recall`` of the gold sentences of queries never trained on.

    Keep probabilities are calibrated to the training label mix, not to a fixed cut-off, so the default
    threshold is measured with the weights rather than guessed."""
    model.eval()
    gold_scores = []
    for item in held_out:
        result = score_passages(model, tokenizer, item.query, [(item.passage.text, item.passage.spans())])[0]
        gold_scores += [result.sentence_scores[i] for i in item.gold or [] if i < len(result.sentence_scores)]
    threshold = recall_quantile(gold_scores, recall)
    logger.info("threshold %.4f keeps %.0f%% of %d held-out gold sentences", threshold, 100 * recall,
                len(gold_scores))
    return threshold


def train(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    config = ProvenceConfig(max_length=args.max_length, interaction=args.interaction)
    model, tokenizer = new_trainable(config)
    if args.init:
        # Continue from earlier weights: with the same seed and --skip-steps, the rest of a run cut short by
        # the time budget; with another seed, a further pass over newly drawn negatives.
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(args.init / ADAPTER_FILE)), strict=False)
    items, held_out = collect(args, rng)
    windows = [w for item in items for w in to_windows(item, tokenizer, config)]
    plan = batches(windows, args.batch_size, rng)[args.skip_steps :]
    steps = len(plan) * args.epochs
    logger.info("%d windows, %d steps", len(windows), steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(param_groups(model, args.lr), weight_decay=0.01)
    horizon = {"steps": steps}  # shortened after a few timed steps when the time budget demands it
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / horizon["steps"])))),
    )
    model.train()
    started, step, running = time.time(), 0, torch.zeros(3)
    for epoch in range(args.epochs):
        if epoch:
            plan = batches(windows, args.batch_size, rng)
        for batch in plan:
            # Re-estimated a few times: the machine is shared, so early steps can be unrepresentative.
            if step in (10, 30, 60) and args.time_budget:
                per_step = (time.time() - started) / step
                horizon["steps"] = min(steps, int(args.time_budget / per_step))
                logger.info("%.1fs per step: training %d of %d steps", per_step, horizon["steps"], steps)
            if step >= horizon["steps"]:
                break
            losses = loss_of(model, batch, tokenizer.pad_token_id, rank=args.rank_weight > 0)
            (losses.relevance + args.keep_weight * losses.keep + args.rank_weight * losses.rank).backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            current = torch.tensor([losses.relevance.item(), losses.keep.item(), losses.rank.item()])
            running = 0.95 * running + 0.05 * current if step > 1 else current
            if step % 20 == 0:
                elapsed = time.time() - started
                logger.info(
                    "step %d/%d loss relevance %.4f keep %.4f rank %.4f elapsed %.0fs eta %.0fs",
                    step,
                    horizon["steps"],
                    *running.tolist(),
                    elapsed,
                    elapsed / step * (horizon["steps"] - step),
                )
    model.config.max_length = 512  # trained on short windows; inference may use the full window
    model.config.default_threshold = calibrate_threshold(model, tokenizer, held_out, args.gold_recall)
    model.config.default_relative_threshold = calibrate_relative_threshold(
        model, tokenizer, args.data, args.gold_recall
    )
    save(model, args.out)
    logger.info("saved to %s", args.out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=data.default_root())
    parser.add_argument("--out", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--negatives", type=int, default=2)
    parser.add_argument("--keep-weight", type=float, default=1.0)
    parser.add_argument(
        "--rank-weight", type=float, default=0.0, help="weight of the within-passage sentence ranking loss"
    )
    parser.add_argument("--silver", type=int, default=200)
    parser.add_argument("--max-xquad", type=int, default=500, help="cap on XQuAD train questions (time)")
    parser.add_argument("--max-squad", type=int, default=4000, help="cap on SQuAD train questions (time)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--gold-recall", type=float, default=0.97, help="share of held-out gold sentences the default threshold keeps"
    )
    parser.add_argument(
        "--interaction",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="query isolation + interaction features + cosine fusion (see ragpress.scoring.provence_model); "
        "off: plain heads",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    parser.add_argument("--init", type=Path, default=None, help="weights directory to continue from")
    parser.add_argument("--skip-steps", type=int, default=0, help="batches of the plan already trained")
    parser.add_argument(
        "--time-budget", type=float, default=1500, help="seconds; fewer steps if needed (0: off)"
    )
    args = parser.parse_args(argv)
    args.max_queries = {"xquad": args.max_xquad, "squad": args.max_squad}
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
