"""Compressed-KV generation against sequential prefill, on the same 8 chunks, in one run.

    OMP_NUM_THREADS=1 nice -n 10 python -m ragpress.bench.kv_generation --questions 20 --repeats 3

Variants: (a) sequential prefill of prefix + chunks + question; (b) naive parallel encoding (cached chunk
states side by side, positions reused, T = S = 1); (c) parallel + APE corrections (calibrated T, S from
the store, see ``ragpress.training.kv_calibration``) on fp32 states, and on fp16 states as the quantization
reference; (d) (c) + pruning by masking (the gold supporting sentences stand in for the pruner, so this is
an oracle pruner); (e) (c) with int8 and int4 states; (f) the chunks laid out one after another instead
(keys re-rotated, no corrections), as loaded and with CacheBlend recomputing the most deviating share of
the context tokens (``ragpress.generators.kv_blend``). All variants see identical token ids.

TTFT for the cached variants includes reading the entries from the store, checksum, dequantization,
laying out the cache and prefilling the question (and, for CacheBlend, its probe and recompute). Quality
is teacher-forced against the gold answer (mean NLL; KL from (a) at the first answer token and averaged
over all answer tokens; top-1 first-token agreement with (a)); greedy F1 beside it. Below each table, the
quantized variants' NLL change against fp16 states (the compression criterion).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ragpress.evaluation.answers import f1
from ragpress.generators import kv_blend, parallel_attention
from ragpress.generators.decoding import greedy_decode
from ragpress.generators.kv_cache import ChunkKV, cache_tensors
from ragpress.generators.kv_context import KVContextBuilder, ParallelContext
from ragpress.generators.kv_generator import DEFAULT_SCALE, DEFAULT_TEMPERATURE, calibration_for
from ragpress.generators.kv_quantization import dequantize
from ragpress.generators.kv_store import KVEntry, LocalKVStore, encode_entry, open_store
from ragpress.generators.prompting import DEFAULT_SYSTEM_PROMPT
from ragpress.training.kv_calibration import Prepared, prepare, sequential_prompt
from ragpress.training.kv_scoring import (
    Example,
    Scores,
    answer_kl,
    first_token_kl,
    hotpot_examples,
    scores_from_logits,
    top1_agrees,
    xquad_examples,
)

MODEL = "SmolLM2-135M-Instruct"
VARIANTS = (
    "a_sequential", "b_naive_parallel", "c_ape", "c_ape_fp16", "d_ape_masked", "e_ape_int8", "e_ape_int4",
    "f_concat", "f_blend",
)
STATE_FORMAT = {"c_ape_fp16": "fp16", "e_ape_int8": "int8", "e_ape_int4": "int4"}


@dataclass
class Result:
    ttft_s: float
    scores: Scores
    answer: str
    bytes_per_token: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _timed_first_token(run: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    out = run()
    int(torch.argmax(out.logits[0, -1]))
    return time.perf_counter() - started, out


@torch.inference_mode()
def sequential(builder: KVContextBuilder, item: Prepared, repeats: int, new_tokens: int) -> Result:
    ids = sequential_prompt(builder, item)
    times = []
    for _ in range(repeats):
        elapsed, out = _timed_first_token(
            lambda: builder.lm(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        )
        times.append(elapsed)
    keys, values = cache_tensors(out.past_key_values)
    answer = item.answer
    follow = builder.lm(
        input_ids=torch.tensor([answer]),
        position_ids=torch.arange(len(ids), len(ids) + len(answer)).unsqueeze(0),
        past_key_values=parallel_attention.build_cache(keys, values),
    )
    scores = scores_from_logits(torch.cat([out.logits[0, -1:], follow.logits[0]]), answer)
    decoded = greedy_decode(builder.lm, builder.tokenizer, parallel_attention.build_cache(keys, values),
                            out.logits[0, -1], len(ids), new_tokens, time.perf_counter())
    return Result(statistics.median(times), scores, decoded.text, extra={"prompt_tokens": len(ids)})


@torch.inference_mode()
def parallel(builder: KVContextBuilder, item: Prepared, temperature: float, scale: float, prune: bool,
             repeats: int, new_tokens: int, blend: float | None = None) -> Result:
    """A cached variant; ``blend`` (a share of context tokens to recompute) selects the sequential layout."""
    chunks = item.example.chunks
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        entries = [builder.load(chunk) for chunk in chunks]  # store read + checksum + decode
        assert all(e is not None for e in entries)
        context = builder.assemble(chunks, entries, temperature, scale, prune=prune,  # type: ignore[arg-type]
                                   sequential=blend is not None)
        recomputed = kv_blend.recompute(builder.lm, context, blend or 0.0)
        out = _question(builder, context, item.suffix, last_only=True)
        int(torch.argmax(out.logits[0, -1]))
        times.append(time.perf_counter() - started)
    follow = _question(builder, context, item.suffix + item.answer, past=context.cache())
    scores = scores_from_logits(follow.logits[0, len(item.suffix) - 1 :], item.answer)
    start = context.layout.question_position + len(item.suffix)
    decoded = greedy_decode(builder.lm, builder.tokenizer, out.past_key_values, out.logits[0, -1], start,
                            new_tokens, time.perf_counter(), forward_kwargs={"ape_layout": context.layout})
    size = sum(e.stored_bytes for e in entries if e) / sum(e.n_tokens for e in entries if e)
    return Result(statistics.median(times), scores, decoded.text, size,
                  {"masked": context.masked_tokens, "recomputed": recomputed})


def _question(builder: KVContextBuilder, context: ParallelContext, ids: list[int], past: Any = None,
              last_only: bool = False) -> Any:
    start = context.layout.question_position
    return builder.lm(
        input_ids=torch.tensor([ids]),
        position_ids=torch.arange(start, start + len(ids)).unsqueeze(0),
        past_key_values=past if past is not None else context.cache(),
        use_cache=True,
        logits_to_keep=1 if last_only else 0,
        ape_layout=context.layout,
    )


def store_requantized(source: list[KVEntry], chunks: list[Any], builder: KVContextBuilder) -> None:
    """Store fp32 states under another quantization without encoding the chunks again."""
    for entry, chunk in zip(source, chunks, strict=True):
        keys, values = dequantize(entry.tensors, entry.quantization)
        state = ChunkKV(keys, values, entry.token_ids, entry.token_spans)
        builder.store.put(builder.keys_for(chunk)[-1], encode_entry(builder.to_entry(state, "")))


def run_example(builders: dict[str, KVContextBuilder], item: Prepared, t: float, s: float,
                repeats: int, new_tokens: int, blend_share: float,
                variants: tuple[str, ...] = VARIANTS) -> dict[str, Result]:
    base = builders["none"]

    def quantized(fmt: str) -> Result:
        store_requantized(item.entries, item.example.chunks, builders[fmt])
        return parallel(builders[fmt], item, t, s, False, repeats, new_tokens)

    runs = {
        "a_sequential": lambda: sequential(base, item, repeats, new_tokens),
        "b_naive_parallel": lambda: parallel(base, item, 1.0, 1.0, False, repeats, new_tokens),
        "c_ape": lambda: parallel(base, item, t, s, False, repeats, new_tokens),
        "d_ape_masked": lambda: parallel(base, item, t, s, True, repeats, new_tokens),
        **{variant: (lambda fmt=fmt: quantized(fmt)) for variant, fmt in STATE_FORMAT.items()},
        "f_concat": lambda: parallel(base, item, t, s, False, repeats, new_tokens, blend=0.0),
        "f_blend": lambda: parallel(base, item, t, s, False, repeats, new_tokens, blend=blend_share),
    }
    results = {variant: runs[variant]() for variant in variants}
    if "c_ape" in results:
        results["a_sequential"].bytes_per_token = results["c_ape"].bytes_per_token
    return results


def chosen_variants(names: str) -> tuple[str, ...]:
    """The requested variants in table order, plus what their ratios need: (a), and fp16 states for (e)."""
    wanted = set(names.split(",")) if names else set(VARIANTS)
    unknown = wanted - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    wanted.add("a_sequential")
    if wanted & {"e_ape_int8", "e_ape_int4"}:
        wanted.add("c_ape_fp16")
    return tuple(v for v in VARIANTS if v in wanted)


def record(example: Example, results: dict[str, Result]) -> dict[str, dict[str, float]]:
    """Per-variant numbers of one question (what the tables aggregate), JSON-serializable."""
    base = results["a_sequential"]
    return {
        variant: {
            "ttft_s": r.ttft_s,
            "nll": r.scores.nll,
            "kl_vs_a": first_token_kl(base.scores, r.scores),
            "answer_kl_vs_a": answer_kl(base.scores, r.scores),
            "top1_agree": float(top1_agrees(base.scores, r.scores)),
            "f1": f1(r.answer, example.answers),
            "bytes_per_token": r.bytes_per_token,
            "answer": r.answer,  # type: ignore[dict-item]
        }
        for variant, r in results.items()
    }


def summarize(rows: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    summary: dict[str, dict[str, float]] = {}
    for variant in (v for v in VARIANTS if v in rows[0]):
        summary[variant] = {
            "ttft_ms": 1000 * statistics.median(r[variant]["ttft_s"] for r in rows),
            "speedup_vs_a": statistics.median(r["a_sequential"]["ttft_s"] / r[variant]["ttft_s"] for r in rows),
            **{m: statistics.fmean(r[variant][m] for r in rows)
               for m in ("nll", "kl_vs_a", "answer_kl_vs_a", "top1_agree", "f1", "bytes_per_token")},
        }
    return summary


def table(title: str, rows: list[dict[str, dict[str, float]]]) -> str:
    summary = summarize(rows)
    lines = [f"**{title}**", "",
             "| variant | TTFT ms (median) | speedup vs (a) | gold NLL | NLL vs (a) | first-token KL "
             "| answer KL | top-1 agree | F1 | stored bytes/token |", "|---|---|---|---|---|---|---|---|---|---|"]
    base = summary["a_sequential"]["nll"]
    for variant, row in summary.items():
        lines.append(
            f"| {variant} | {row['ttft_ms']:.0f} | {row['speedup_vs_a']:.1f}x | {row['nll']:.3f} | "
            f"{100 * (row['nll'] / base - 1):+.1f}% | {row['kl_vs_a']:.3f} | {row['answer_kl_vs_a']:.3f} | "
            f"{row['top1_agree']:.2f} | "
            f"{row['f1']:.3f} | {row['bytes_per_token']:.0f} |"
        )
    lines.append("")
    lines += [quantization_line(rows, v) for v in ("e_ape_int8", "e_ape_int4") if v in summary]
    return "\n".join(lines)


def quantization_line(rows: list[dict[str, dict[str, float]]], variant: str) -> str:
    """NLL change against fp16 states, with the standard error of the paired per-question differences:
    single questions move by far more than the mean change, so the mean alone can mislead."""
    reference = statistics.fmean(r["c_ape_fp16"]["nll"] for r in rows)
    differences = [r[variant]["nll"] - r["c_ape_fp16"]["nll"] for r in rows]
    error = statistics.stdev(differences) / len(differences) ** 0.5 if len(differences) > 1 else float("nan")
    return (f"- {variant} NLL vs fp16 states: {100 * statistics.fmean(differences) / reference:+.2f}% "
            f"(standard error {100 * error / reference:.2f} points over {len(rows)} questions)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=20, help="eval questions per dataset")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs: 1 is steadier)")
    parser.add_argument("--store", default=None, help="JSON config of the store holding the calibration")
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--blend-share", type=float, default=0.15,
                        help="share of context tokens CacheBlend recomputes in variant f_blend")
    parser.add_argument("--datasets", default="xquad,hotpotqa")
    parser.add_argument("--variants", default="",
                        help="comma-separated subset of the variants (default all; (a) is always run)")
    parser.add_argument("--out", default=None, help="append per-question results here (JSON lines)")
    parser.add_argument("--summarize", default=None, help="only print the tables of an --out file")
    args = parser.parse_args(argv)
    if args.summarize:
        summarize_file(args.summarize)
        return
    torch.set_num_threads(args.threads)
    variants = chosen_variants(args.variants)
    stored = calibration_for(open_store(json.loads(args.store) if args.store else None), MODEL,
                             DEFAULT_SYSTEM_PROMPT)
    t = args.temperature or stored.get("temperature", DEFAULT_TEMPERATURE)
    s = args.scale or stored.get("scale", DEFAULT_SCALE)
    print(f"T={t} S={s} (calibration: {'stored or shipped' if stored else 'none, APE default'})", flush=True)
    with tempfile.TemporaryDirectory(prefix="ragpress-kvbench-") as scratch:
        store = LocalKVStore(scratch)
        builders = {q: KVContextBuilder(MODEL, store, q) for q in ("none", "fp16", "int8", "int4")}
        parallel_attention.enable(builders["none"].lm)
        loaders = {"xquad": ("XQuAD", xquad_examples), "hotpotqa": ("HotpotQA", hotpot_examples)}
        for name, loader in (loaders[d] for d in args.datasets.split(",")):
            rows = []
            for index, example in enumerate(loader("eval", args.questions, seed=7)):
                # one question at a time: the store's byte budget may evict earlier questions' entries
                item = prepare(builders["none"], [example])[0]
                results = run_example(builders, item, t, s, args.repeats, args.new_tokens, args.blend_share,
                                      variants)
                row = record(item.example, results)
                rows.append(row)
                if args.out:  # one JSON line per question, so a partial run can still be summarized
                    with open(args.out, "a") as out:
                        out.write(json.dumps({"dataset": name, "question": item.example.question, **row}) + "\n")
                times = " ".join(f"{v.split('_')[0]}={r['ttft_s']:.3f}s" for v, r in row.items())
                print(f"{name} {index + 1}/{args.questions} {times}", flush=True)
            print(table(f"{name} ({len(rows)} questions, 8 chunks)", rows) + "\n", flush=True)


def summarize_file(path: str) -> None:
    """Tables from the JSON lines of ``--out`` (also of an interrupted run)."""
    with open(path) as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    for name in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == name]
        print(table(f"{name} ({len(rows)} questions, 8 chunks)", rows) + "\n")


if __name__ == "__main__":
    main()
