"""Train the reranker-pruner (LoRA adapters + relevance and keep heads on the bundled MiniLM).

Train (the full plan is ~7,255 windows; ``--time-budget`` seconds, default 1500, cuts it short on a busy
machine, and the shipped weights came from such a cut-short run, see docs/benchmarks.md)::

    nice -n 10 python -m pruners.training --data ../shared/datasets --out pruners/weights/provence-minilm \
        --time-budget 0

Examples come from the TRAIN side of every split in ``pruners.data`` (dev queries are never read):
positives are the labelled relevant passages, hard negatives the top MiniLM hits that are not labelled
relevant; keep labels are the tokens of gold sentences (tokens of negatives are all "drop"). Silver
examples turn one sentence of a SciFact abstract into a pseudo-query (a subsequence of its content words)
with that sentence as the gold one; abstracts relevant to dev claims are excluded from them.
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

from pruners import data, mining
from pruners.model import ADAPTER_FILE, ProvenceConfig, ProvenceModel, new_trainable, save
from pruners.scoring import build_sequence, encode_passage, pad_batch, query_ids, window_ranges

logger = logging.getLogger("pruners.training")
IGNORE = -100.0


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
        candidates = [pid for pid, _ in ranked if pid not in query.relevant]
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
        ids, types = build_sequence(
            tokenizer.cls_token_id, tokenizer.sep_token_id, q_ids, encoded.ids[start:end]
        )
        keep = [IGNORE] * (len(q_ids) + 2) + labels + [IGNORE]
        windows.append(Window(ids, types, keep, relevance))
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


def loss_of(model: ProvenceModel, batch: list[Window], pad_id: int, keep_weight: float) -> torch.Tensor:
    inputs = pad_batch([(w.ids, w.types) for w in batch], pad_id)
    relevance, keep = model(**inputs)
    width = inputs["input_ids"].shape[1]
    keep_labels = torch.tensor([w.keep + [IGNORE] * (width - len(w.keep)) for w in batch])
    rel_labels = torch.tensor([w.relevance for w in batch])
    bce = nn.functional.binary_cross_entropy_with_logits
    loss = torch.zeros(())
    if (mask := rel_labels != IGNORE).any():
        loss = loss + bce(relevance[mask], rel_labels[mask])
    if (mask := keep_labels != IGNORE).any():
        loss = loss + keep_weight * bce(keep[mask], keep_labels[mask])
    return loss


def collect(args: argparse.Namespace, rng: random.Random) -> list[Item]:
    items: list[Item] = []
    for name in data.DATASETS:
        dataset = data.load(name, args.data)
        queries = data.split(dataset, dev=False)
        cap = args.max_queries.get(name)
        if cap and len(queries) > cap:
            queries = rng.sample(queries, cap)
        found = mine_items(dataset, queries, args.negatives, rng)
        if name == "scifact" and args.silver:
            found += silver_items(dataset, args.silver, rng)
        logger.info("%s: %d train queries -> %d items", name, len(queries), len(found))
        items += found
    return items


def train(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    torch.manual_seed(args.seed)
    config = ProvenceConfig(max_length=args.max_length, interaction=args.interaction)
    model, tokenizer = new_trainable(config)
    if args.init:
        # Continue a run cut short by the time budget: same seed, same plan, skip the batches already seen.
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(args.init / ADAPTER_FILE)), strict=False)
    windows = [w for item in collect(args, rng) for w in to_windows(item, tokenizer, config)]
    plan = batches(windows, args.batch_size, rng)[args.skip_steps :]
    steps = len(plan) * args.epochs
    logger.info("%d windows, %d steps", len(windows), steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01)
    horizon = {"steps": steps}  # shortened after a few timed steps when the time budget demands it
    warmup = max(1, steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(1.0, s / horizon["steps"])))),
    )
    model.train()
    started, step, running = time.time(), 0, 0.0
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
            loss = loss_of(model, batch, tokenizer.pad_token_id, args.keep_weight)
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            running = 0.95 * running + 0.05 * float(loss) if step > 1 else float(loss)
            if step % 20 == 0:
                elapsed = time.time() - started
                logger.info(
                    "step %d/%d loss %.4f elapsed %.0fs eta %.0fs",
                    step,
                    horizon["steps"],
                    running,
                    elapsed,
                    elapsed / step * (horizon["steps"] - step),
                )
    model.config.max_length = 512  # trained on short windows; inference may use the full window
    save(model, args.out)
    logger.info("saved to %s", args.out)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=data.default_root())
    parser.add_argument("--out", type=Path, default=Path("pruners/weights/provence-minilm"))
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--negatives", type=int, default=2)
    parser.add_argument("--keep-weight", type=float, default=1.0)
    parser.add_argument("--silver", type=int, default=200)
    parser.add_argument("--max-xquad", type=int, default=500, help="cap on XQuAD train questions (time)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--interaction",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="experimental, not yet trained or measured: heads read query/passage interaction features",
    )
    parser.add_argument("--init", type=Path, default=None, help="weights directory to continue from")
    parser.add_argument("--skip-steps", type=int, default=0, help="batches of the plan already trained")
    parser.add_argument(
        "--time-budget", type=float, default=1500, help="seconds; fewer steps if needed (0: off)"
    )
    args = parser.parse_args(argv)
    args.max_queries = {"xquad": args.max_xquad}
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(2)
    train(parse_args(argv))


if __name__ == "__main__":
    main()
