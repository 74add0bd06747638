"""Pick APE's attention temperature T and scaling factor S for a model on dev data, and store them.

    python -m generators.kv_calibration --model SmolLM2-135M-Instruct --questions 12

Dev questions come from the ``dev`` halves of XQuAD and HotpotQA (the benchmark evaluates on the
disjoint ``eval`` halves). Each (T, S) on the grid is scored by the gold answers' mean teacher-forced
negative log-likelihood under parallel encoding; the best pair is written to the KV store's settings
for the model and system prompt, where ``KVCacheGenerator`` reads it when T/S are not set explicitly.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from generators import parallel_attention
from generators.kv_context import KVContextBuilder
from generators.kv_generator import calibration_name
from generators.kv_scoring import Example, hotpot_examples, score_parallel, xquad_examples
from generators.kv_store import KVEntry, LocalKVStore, open_store
from generators.prompting import DEFAULT_SYSTEM_PROMPT, build_prompt

logger = logging.getLogger(__name__)

TEMPERATURES = (0.6, 0.7, 0.8, 0.9, 1.0)
SCALES = (0.7, 0.8, 0.9, 1.0)


@dataclass
class Prepared:
    example: Example
    entries: list[KVEntry]
    suffix: list[int]
    answer: list[int]


def prepare(builder: KVContextBuilder, examples: list[Example]) -> list[Prepared]:
    """Every example's chunk entries (encoded once, read back from the store) and token ids."""
    prepared = []
    for example in examples:
        entries = []
        for chunk in example.chunks:
            entry = builder.load(chunk) or builder.encode_alone(chunk)
            assert entry is not None
            entries.append(entry)
        suffix = build_prompt(builder.tokenizer, example.question, [], builder.system_prompt).suffix
        answer = builder.tokenizer.encode(example.answers[0], add_special_tokens=False)
        prepared.append(Prepared(example, entries, suffix, answer))
    return prepared


def mean_nll(builder: KVContextBuilder, prepared: list[Prepared], temperature: float, scale: float) -> float:
    total = 0.0
    for item in prepared:
        context = builder.assemble(item.example.chunks, item.entries, temperature, scale, prune=False)
        total += score_parallel(builder.lm, context, item.suffix, item.answer).nll
    return total / len(prepared)


def _evaluate(builder: KVContextBuilder, prepared: list[Prepared], grid: dict[tuple[float, float], float],
              temperature: float, scale: float) -> None:
    key = (round(temperature, 3), round(scale, 3))
    if key not in grid:
        grid[key] = mean_nll(builder, prepared, *key)
        logger.info("T=%.2f S=%.2f mean NLL %.4f", key[0], key[1], grid[key])


def _extend_past_edges(builder: KVContextBuilder, prepared: list[Prepared],
                       grid: dict[tuple[float, float], float], rounds: int = 4) -> None:
    """If the best pair sits on the grid's edge, keep stepping outwards (0.1 at a time, T >= 0.2,
    S in [0.5, 1.5]) while that improves: the optimum differs per model and may lie outside the grid."""
    for _ in range(rounds):
        (t, s), best = min(grid.items(), key=lambda item: item[1])
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
            _evaluate(builder, prepared, grid, *step)
        if not steps or min(grid.values()) >= best:
            return


def calibrate(
    model: str = "SmolLM2-135M-Instruct",
    store: dict[str, Any] | None = None,
    questions: int = 12,
    temperatures: tuple[float, ...] = TEMPERATURES,
    scales: tuple[float, ...] = SCALES,
    system_prompt: str = DEFAULT_SYSTEM_PROMPT,
    seed: int = 1,
) -> dict[str, Any]:
    """Grid-search T and S on ``questions`` dev questions per dataset; store and return the result."""
    with tempfile.TemporaryDirectory(prefix="ragpress-calib-") as scratch:
        # dev chunks' states go to a scratch store, not the serving store
        # fp16 states: half the memory of fp32, and the same NLL to three decimals
        builder = KVContextBuilder(model, LocalKVStore(scratch), "fp16", system_prompt)
        parallel_attention.enable(builder.lm)
        examples = xquad_examples("dev", questions, seed=seed) + hotpot_examples("dev", questions, seed=seed)
        prepared = prepare(builder, examples)
        logger.info("prepared %d dev questions", len(prepared))
        grid: dict[tuple[float, float], float] = {}
        for temperature, scale in itertools.product(temperatures, scales):
            _evaluate(builder, prepared, grid, temperature, scale)
        _extend_past_edges(builder, prepared, grid)
    (best_t, best_s), best = min(grid.items(), key=lambda item: item[1])
    result = {
        "temperature": best_t,
        "scale": best_s,
        "dev_mean_nll": round(best, 4),
        "naive_mean_nll": round(grid.get((1.0, 1.0), float("nan")), 4),
        "dev_questions": len(prepared),
        "grid": {f"{t}/{s}": round(v, 4) for (t, s), v in grid.items()},
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
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    result = calibrate(
        args.model,
        json.loads(args.store) if args.store else None,
        args.questions,
        tuple(float(t) for t in args.temperatures.split(",")),
        tuple(float(s) for s in args.scales.split(",")),
    )
    print(json.dumps({k: v for k, v in result.items() if k != "grid"}, indent=2))


if __name__ == "__main__":
    main()
