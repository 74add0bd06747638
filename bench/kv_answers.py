"""Generated answers from cached KV states against sequential prefill, on the passages retrieval returns.

    OMP_NUM_THREADS=1 python -m ragpress.bench.kv_answers --datasets xquad squad hotpotqa_dev --questions 100 \
        --variants sequential kv kv:quantization=int4 --out /tmp/kv_answers.jsonl
    python -m ragpress.bench.kv_answers --summarize /tmp/kv_answers.jsonl

This measures what a user sees. Each dev question (training/data.py's splits; SQuAD's answerable ones) is
searched over its dataset's whole corpus (MiniLM), and the top ``--context`` passages go, most relevant first,
to the generator components themselves, greedy decoding:

- ``sequential``: ``LocalGenerator``, prefill of the whole prompt (the baseline every ratio names);
- ``kv``, optionally with options: ``KVCacheGenerator`` (``kv:quantization=int4``,
  ``kv:temperature=0.8,scale=0.7``, ``kv:blend_share=0.1``); options are its init parameters.

A KV variant's passage states are computed before its timed run, as ingestion does, so its time to first token
is the cached path's. One JSON line per question and variant (answer, F1, EM, time to first token) goes to
``--out``; a rerun skips the pairs already there, so variants can be added to an earlier run. The summary gives
per set and variant: token F1 (SQuAD normalisation) and answer recall (the share of the reference's tokens the
answer holds: the generator answers in a sentence, whose extra words lower F1 whether or not the answer is right),
each with its ratio to sequential's and a paired bootstrap interval over questions; exact match; how often it
abstained; the median time to first token and the median per-question speedup.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from haystack import Document

from ragpress.base.settings import get_settings
from ragpress.bench.answer_quality import rankings
from ragpress.bench.rerank_prune import to_document
from ragpress.evaluation.answers import answer_recall, exact_match, f1
from ragpress.evaluation.intervals import bootstrap_ratio
from ragpress.generators.kv_context import builder_for, precompute_document_kv
from ragpress.generators.kv_generator import KVCacheGenerator
from ragpress.generators.local_generator import LocalGenerator
from ragpress.training import data

MODEL = "SmolLM2-135M-Instruct"
BASELINE = "sequential"
QA_SETS = ("xquad", "squad", "hotpotqa_dev")
KV_OPTION_TYPES = {"quantization": str, "temperature": float, "scale": float, "blend_share": float}
CONTEXT_TOKENS = 2048  # both paths read every passage retrieved (five SQuAD paragraphs are ~800 tokens)


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``kv:quantization=int4,scale=0.7`` -> ("kv", {"quantization": "int4", "scale": 0.7})."""
    kind, _, rest = spec.partition(":")
    if kind == BASELINE and not rest:
        return kind, {}
    if kind != "kv":
        raise SystemExit(f"unknown variant {spec!r}: use '{BASELINE}' or 'kv[:option=value,...]'")
    options: dict[str, Any] = {}
    for pair in filter(None, rest.split(",")):
        name, _, value = pair.partition("=")
        if name not in KV_OPTION_TYPES:
            raise SystemExit(f"unknown kv option {name!r} in {spec!r}; choose from {sorted(KV_OPTION_TYPES)}")
        options[name] = KV_OPTION_TYPES[name](value)
    return kind, options


class Variant:
    """One generator configuration, with its passages' states computed before they are timed."""

    def __init__(self, spec: str, store: dict[str, Any], max_new_tokens: int) -> None:
        self.spec = spec
        kind, self.options = parse_variant(spec)
        self.store = store
        if kind == BASELINE:
            self.generator: Any = LocalGenerator(MODEL, max_new_tokens, max_context_tokens=CONTEXT_TOKENS)
        else:
            self.generator = KVCacheGenerator(MODEL, store=store, max_new_tokens=max_new_tokens,
                                              max_context_tokens=CONTEXT_TOKENS, on_miss="prefill", **self.options)
        self.generator.warm_up()

    def precompute(self, documents: list[Document]) -> None:
        if not isinstance(self.generator, KVCacheGenerator):
            return
        builder = builder_for(MODEL, self.store, self.generator.quantization)
        for document in documents:
            if builder.load(document) is None:  # kept from an earlier question or run
                text = document.content or ""
                precompute_document_kv(text, [(0, len(text))], model=MODEL, store=self.store,
                                       quantization=self.generator.quantization)

    def answer(self, question: str, documents: list[Document]) -> dict[str, Any]:
        self.precompute(documents)
        result = self.generator.run(query=question, documents=documents)
        return {"answer": result["replies"][0], **result["meta"][0]}


def questions(name: str, count: int) -> tuple[data.Dataset, list[data.Query]]:
    dataset = data.load(name)
    answerable = [q for q in data.split(dataset, dev=True) if q.answerable and q.answers]
    return dataset, data.sample(answerable, count)


def contexts(dataset: data.Dataset, queries: list[data.Query], k: int) -> Iterator[tuple[data.Query, list[Document]]]:
    for query, ranked in zip(queries, rankings(dataset, queries, k, "dense"), strict=True):
        yield query, [to_document(dataset.passages[pid]) for pid in ranked]


def record(dataset: str, query: data.Query, variant: str, out: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": dataset, "qid": query.qid, "variant": variant, "answer": out["answer"],
        "f1": f1(out["answer"], query.answers), "em": float(exact_match(out["answer"], query.answers)),
        "recall": answer_recall(out["answer"], query.answers),
        "ttft_ms": out["ttft_ms"], "abstained": bool(out.get("abstained")), "mode": out.get("mode"),
        "prompt_tokens": out.get("prompt_tokens"), "completion_tokens": out.get("completion_tokens"),
    }


def done_pairs(path: Path) -> set[tuple[str, str, str]]:
    if not path.exists():
        return set()
    return {(r["dataset"], r["qid"], r["variant"]) for r in read_records(path)}


def read_records(path: Path) -> list[dict[str, Any]]:
    """Each question's answer per variant, the first one written (runs sharing a file may both answer one)."""
    with path.open() as lines:
        records = [json.loads(line) for line in lines if line.strip()]
    return list({(r["dataset"], r["qid"], r["variant"]): r for r in reversed(records)}.values())[::-1]


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    store = {"backend": "local", "path": str(args.store), "max_bytes": args.store_bytes}
    variants = [Variant(spec, store, args.new_tokens) for spec in dict.fromkeys([BASELINE, *args.variants])]
    for name in args.datasets:
        dataset, queries = questions(name, args.questions)
        for index, (query, documents) in enumerate(contexts(dataset, queries, args.context)):
            done = done_pairs(out)  # read again each time: runs of other variants may share the file
            for variant in variants:
                if (name, query.qid, variant.spec) in done:
                    continue
                row = record(name, query, variant.spec, variant.answer(query.text, documents))
                with out.open("a") as sink:  # one line at a time: an interrupted run keeps what it measured
                    sink.write(json.dumps(row) + "\n")
            print(f"{name} {index + 1}/{len(queries)}", file=sys.stderr, flush=True)
    print(summary(read_records(out)))


def summary(records: list[dict[str, Any]]) -> str:
    """One table per set: each variant on the questions it shares with the baseline."""
    lines = []
    for name in dict.fromkeys(r["dataset"] for r in records):
        rows = [r for r in records if r["dataset"] == name]
        baseline = {r["qid"]: r for r in rows if r["variant"] == BASELINE}
        lines += [f"**{name}**", "",
                  "| variant | questions | F1 | vs sequential [95% CI] | answer recall | vs sequential [95% CI] | EM "
                  "| abstained | TTFT ms (median) | speedup (median) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for variant in dict.fromkeys(r["variant"] for r in rows):
            paired = [(r, baseline[r["qid"]]) for r in rows if r["variant"] == variant and r["qid"] in baseline]
            lines.append(table_row(variant, paired))
        lines.append("")
    return "\n".join(lines)


def table_row(variant: str, paired: list[tuple[dict[str, Any], dict[str, Any]]]) -> str:
    mine = [r for r, _ in paired]
    speedup = statistics.median(b["ttft_ms"] / max(1e-9, r["ttft_ms"]) for r, b in paired)
    return (f"| {variant} | {len(mine)} | {paired_ratio(paired, 'f1')} | {paired_ratio(paired, 'recall')} "
            f"| {100 * statistics.fmean(r['em'] for r in mine):.1f} "
            f"| {100 * statistics.fmean(r['abstained'] for r in mine):.0f}% "
            f"| {statistics.median(r['ttft_ms'] for r in mine):.0f} | {speedup:.1f}x |")


def paired_ratio(paired: list[tuple[dict[str, Any], dict[str, Any]]], measure: str) -> str:
    """"10.2 | 98% [73-132]": the variant's mean, and its ratio to the baseline's with a paired bootstrap interval."""
    parts = [(r[measure], b[measure]) for r, b in paired]
    mean = 100 * statistics.fmean(p for p, _ in parts)
    baseline = sum(q for _, q in parts)
    if not baseline:  # e.g. a timing run of one token per answer
        return f"{mean:.1f} | -"
    low, high = bootstrap_ratio(parts)
    return f"{mean:.1f} | {100 * sum(p for p, _ in parts) / baseline:.0f}% [{100 * low:.0f}-{100 * high:.0f}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(QA_SETS), choices=QA_SETS)
    parser.add_argument("--questions", type=int, default=100, help="answerable dev questions per set")
    parser.add_argument("--context", type=int, default=5, help="passages retrieved per question")
    parser.add_argument("--variants", nargs="*", default=["kv"], help=f"besides '{BASELINE}', always run")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs: 1 is steadier)")
    parser.add_argument("--store", type=Path, default=get_settings().home / "cache" / "kv_answers",
                        help="where the passages' KV states are kept between runs")
    parser.add_argument("--store-bytes", type=int, default=32 * 2**30)
    parser.add_argument("--out", default="kv_answers.jsonl", help="JSON lines, appended and resumed")
    parser.add_argument("--summarize", type=Path, default=None, help="only print the tables of an --out file")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summary(read_records(args.summarize)))
        return
    run(args)


if __name__ == "__main__":
    main()
