"""Pick APE's attention temperature T and scaling factor S for a model on dev data, and store them.

    python -m ragpress.training.kv_calibration --model SmolLM2-135M-Instruct --questions 12
    ragpress models calibrate SmolLM2-135M-Instruct --questions 12     # the same, into the server's store

Dev questions come from the ``dev`` halves of XQuAD and HotpotQA (the benchmark evaluates on the
disjoint ``eval`` halves). The default objective is what a user reads: each (T, S) on the grid answers every
question greedily, and the pair whose answers hold the most of the gold answers' tokens wins (on the
generated-answer benchmark, ``ragpress.bench.kv_answers``, the KL pick T = 0.7, S = 0.5 answered worse than
T = 0.7, S = 1.0; docs/benchmarks.md). ``--objective kl`` scores fidelity instead, teacher-forced: the mean
KL divergence of parallel encoding's next-token distributions from sequential prefill's along the gold answer;
``--objective nll`` the gold answers' mean negative log-likelihood. Every objective reports the other
measures too. The best pair is written to the KV store's settings for the model and system prompt, where
``KVCacheGenerator`` reads it when T/S are not set.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragpress.base.models import ModelError
from ragpress.evaluation.answers import answer_recall
from ragpress.generators import parallel_attention
from ragpress.generators.kv_context import KVContextBuilder
from ragpress.generators.kv_generator import calibration_name
from ragpress.generators.kv_store import KVEntry, LocalKVStore, open_store
from ragpress.generators.prompting import DEFAULT_SYSTEM_PROMPT, build_prompt
from ragpress.training.kv_scoring import (
    DATASETS,
    Example,
    Scores,
    answer_kl,
    hotpot_examples,
    score_parallel,
    score_sequential,
    xquad_examples,
)

logger = logging.getLogger(__name__)

TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0)
SCALES = (0.7, 0.8, 0.9, 1.0)
OBJECTIVES = ("answers", "kl", "nll")
ANSWER_TOKENS = 24  # a one-sentence answer; the gold span is usually within its first words
Grid = dict[tuple[float, float], dict[str, float]]  # (T, S) -> mean "nll", "kl" (and "answers") over dev questions


@dataclass
class Prepared:
    example: Example
    entries: list[KVEntry]
    suffix: list[int]
    answer: list[int]
    reference: Scores | None = None  # sequential prefill's teacher-forced scores


def sequential_prompt(builder: KVContextBuilder, item: Prepared) -> list[int]:
    """The token ids sequential prefill reads: the system prefix, every chunk in order, the question."""
    return builder.prefix_ids + [t for e in item.entries for t in e.token_ids] + item.suffix


def prepare(builder: KVContextBuilder, examples: list[Example], reference: bool = False) -> list[Prepared]:
    """Every example's chunk entries (encoded once, read back from the store) and token ids; with
    ``reference``, also sequential prefill's scores (what the KL objective compares against)."""
    prepared = []
    for example in examples:
        entries = []
        for chunk in example.chunks:
            entry = builder.load(chunk) or builder.encode_alone(chunk)
            assert entry is not None
            entries.append(entry)
        suffix = build_prompt(builder.tokenizer, example.question, [], builder.system_prompt).suffix
        answer = builder.tokenizer.encode(example.answers[0], add_special_tokens=False)
        item = Prepared(example, entries, suffix, answer)
        if reference:
            item.reference = score_sequential(builder.lm, sequential_prompt(builder, item), answer)
        prepared.append(item)
    return prepared


def measure(builder: KVContextBuilder, prepared: list[Prepared], temperature: float,
            scale: float, answers: bool = False) -> dict[str, float]:
    """Mean gold-answer NLL and mean answer KL from sequential prefill under parallel encoding; with ``answers``,
    also ``answers``: the mean share of the gold answer's tokens the greedy answer misses (lower is better, as
    for the other two)."""
    nll = kl = missed = 0.0
    for item in prepared:
        context = builder.assemble(item.example.chunks, item.entries, temperature, scale, prune=False)
        scores = score_parallel(builder.lm, context, item.suffix, item.answer)
        assert item.reference is not None, "prepare(..., reference=True) first"
        nll += scores.nll
        kl += answer_kl(item.reference, scores)
        if answers:
            missed += 1.0 - answer_recall(builder.answer(context, item.suffix, ANSWER_TOKENS, time.perf_counter()).text,
                                        item.example.answers)
    measured = {"nll": nll / len(prepared), "kl": kl / len(prepared)}
    return measured | ({"answers": missed / len(prepared)} if answers else {})


def _evaluate(builder: KVContextBuilder, prepared: list[Prepared], grid: Grid, objective: str, temperature: float,
              scale: float) -> None:
    key = (round(temperature, 3), round(scale, 3))
    if key not in grid:
        grid[key] = measure(builder, prepared, *key, answers=objective == "answers")
        logger.info("T=%.2f S=%.2f %s", *key, " ".join(f"{m} {v:.4f}" for m, v in grid[key].items()))


def _best(grid: Grid, objective: str) -> tuple[tuple[float, float], float]:
    key = min(grid, key=lambda k: grid[k][objective])
    return key, grid[key][objective]


def _extend_past_edges(builder: KVContextBuilder, prepared: list[Prepared], grid: Grid, objective: str,
                       rounds: int = 4) -> None:
    """If the best pair sits on the grid's edge, keep stepping outwards (0.1 at a time, T >= 0.2,
    S in [0.5, 1.5]) while that improves: the optimum differs per model and may lie outside the grid."""
    for _ in range(rounds):
        (t, s), best = _best(grid, objective)
        temps = sorted({k[0] for k in grid})
        scales = sorted({k[1] for k in grid})
        steps = []
        if t == temps[0] and t - 0.1 >= 0.2:
            steps.append((t - 0.1, s))
        if t == temps[-1] and t + 0.1 <= 1.5:
            steps.append((t + 0.1, s))
        if s == scales[0] and s - 0.1 >= 0.5:
            steps.append((t, s - 0.1))
        if s == scales[-1] and s + 0.1 <= 1.5:
            steps.append((t, s + 0.1))
        for step in steps:
            _evaluate(builder, prepared, grid, objective, *step)
        if not steps or _best(grid, objective)[1] >= best:
            return


def calibrate(
    model: str = "SmolLM2-135M-Instruct",
    store: dict[str, Any] | None = None,
    questions: int = 12,
    temperatures: tuple[float, ...] = TEMPERATURES,
    scales: tuple[float, ...] = SCALES,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    seed: int = 1,
    objective: str = "answers",
    data: Path = DATASETS,
) -> dict[str, Any]:
    """Grid-search T and S on ``questions`` dev questions per dataset; store and return the result."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}")
    if not (data / "xquad_en").is_dir() or not (data / "hipporag_mini").is_dir():
        raise FileNotFoundError(f"Calibration reads XQuAD and HotpotQA dev questions from {data} "
                                "(xquad_en/, hipporag_mini/); point --data at that folder.")
    with tempfile.TemporaryDirectory(prefix="ragpress-calib-") as scratch:
        # dev chunks' states go to a scratch store, not the serving store
        # fp16 states: half the memory of fp32, and the same NLL to three decimals
        builder = KVContextBuilder(model, LocalKVStore(scratch), "fp16", system_prompt)
        parallel_attention.enable(builder.lm)
        examples = (xquad_examples("dev", questions, seed=seed, root=data)
                    + hotpot_examples("dev", questions, seed=seed, root=data))
        prepared = prepare(builder, examples, reference=True)  # both objectives report both measures
        logger.info("prepared %d dev questions", len(prepared))
        grid: Grid = {}
        # naive parallel encoding (T = S = 1) is always measured: the baseline the result is reported against
        for temperature, scale in [(1.0, 1.0), *itertools.product(temperatures, scales)]:
            _evaluate(builder, prepared, grid, objective, temperature, scale)
        _extend_past_edges(builder, prepared, grid, objective)
    (best_t, best_s), _ = _best(grid, objective)
    naive = grid[1.0, 1.0]
    result = {
        "temperature": best_t,
        "scale": best_s,
        "objective": objective,
        **{f"dev_mean_{m}": round(v, 4) for m, v in grid[best_t, best_s].items()},
        **{f"naive_mean_{m}": round(v, 4) for m, v in naive.items()},
        "dev_questions": len(prepared),
        "grid": {f"{t}/{s}": {m: round(v, 4) for m, v in values.items()} for (t, s), values in grid.items()},
        "calibrated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    open_store(store).put_settings(calibration_name(model, system_prompt), result)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="SmolLM2-135M-Instruct")
    parser.add_argument("--questions", type=int, default=12, help="dev questions per dataset")
    parser.add_argument("--store", default=None,
                        help='store config as JSON, e.g. {"backend": "local", "path": ...}')
    parser.add_argument("--temperatures", default=",".join(map(str, TEMPERATURES)))
    parser.add_argument("--scales", default=",".join(map(str, SCALES)))
    parser.add_argument("--objective", choices=OBJECTIVES, default="answers")
    parser.add_argument("--data", type=Path, default=DATASETS, help="folder holding xquad_en/ and hipporag_mini/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    try:
        result = calibrate(
            args.model,
            json.loads(args.store) if args.store else None,
            args.questions,
            tuple(float(t) for t in args.temperatures.split(",")),
            tuple(float(s) for s in args.scales.split(",")),
            objective=args.objective,
            data=args.data,
        )
    except (FileNotFoundError, ValueError, ModelError) as exc:
        # What to fix, not a trace: `ragpress models calibrate` shows this last line as its error.
        parser.exit(1, f"error: {exc}\n")
    print(json.dumps({k: v for k, v in result.items() if k != "grid"}, indent=2))


if __name__ == "__main__":
    main()
