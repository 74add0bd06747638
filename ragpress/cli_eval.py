"""``ragpress eval``: ingest an eval set, ask its questions through the service exactly as REST does, and print one
table of what each pipeline (and each pipeline without one of its stages) is worth on that data."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from ragpress.cli_backends import Backend, backend
from ragpress.cli_common import ApiKey, Server, console, err, fail
from ragpress.cli_files import Document
from ragpress.cli_ingest import Outcome, send_documents
from ragpress.evaluation.ablation import CannotAblate, ablated
from ragpress.evaluation.eval_sets import FORMATS, EvalQuestion, EvalSet, EvalSetInvalid, load
from ragpress.evaluation.measures import measure, paired_f1_difference, summarize

KV_POLL_S = 1.0


def evaluate(
    data: Path = typer.Option(..., "--data", help="The eval set: a SQuAD JSON file, a HotpotQA JSON file or a BEIR "
                              "folder (corpus.jsonl, queries.jsonl or claims_*.jsonl, qrels/*.tsv)."),
    fmt: str = typer.Option(..., "--format", help=f"One of {', '.join(FORMATS)}."),
    pipelines: list[str] = typer.Option(["query"], "--pipeline", help="The pipeline to measure; repeat it to "
                                        "measure several in one run (e.g. --pipeline plain --pipeline query)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Ask this many questions, drawn evenly (the same ones "
                              "every run); the whole corpus is still ingested."),
    ablate: list[str] = typer.Option([], "--ablate", help="Also measure each pipeline without this stage (a "
                                     "component name, e.g. pruner); repeat for several."),
    collection: str = typer.Option(None, "--collection", "-c", help="Default: eval-<name of the data>. An "
                                   "existing collection is reused; unchanged documents are not indexed again."),
    generate: bool = typer.Option(None, "--generate/--no-generate", help="Write answers (default: when the set "
                                  "has reference answers or unanswerable questions)."),
    top_k: int = typer.Option(None, "--top-k", min=1, help="Passages per query (default: each pipeline's own)."),
    kv_precompute: str = typer.Option(None, "--kv-precompute", help="eager or lazy: when the collection's cached "
                                      "KV states are computed (default: the collection's or server's choice)."),
    json_out: Path = typer.Option(None, "--json", help="Also write every question's record and the summaries here."),
    server: Server = None, api_key: ApiKey = None,
) -> None:
    """Measure pipelines on your own labelled data: retrieval (nDCG@10, Recall@100), answers (F1, EM),
    pruning (context tokens removed, gold sentences kept), abstention, time to first token and per-stage times.

    Uses a running server, else this machine's index."""
    try:
        found = load(data, fmt)
    except EvalSetInvalid as exc:
        fail(str(exc))
    if kv_precompute not in (None, "eager", "lazy"):
        fail("--kv-precompute must be eager or lazy.")
    questions = found.sample(limit)
    name = collection or _collection_name(found.name)
    answers = generate if generate is not None else any(q.answers or not q.answerable for q in questions)
    options: dict[str, Any] = {"generate": answers, **({"top_k": top_k} if top_k else {})}
    with backend(server, api_key) as target:
        _ingest(target, name, found, kv_precompute)
        variants = _variants(target, pipelines, ablate)
        try:
            records = _ask(target, name, questions, list(variants), options)
        finally:
            _delete(target, variants)
    summaries = {variant: summarize([r for r in rs if "error" not in r]) for variant, rs in records.items()}
    first = next(iter(records))
    for variant in list(records)[1:]:
        summaries[variant].update(paired_f1_difference(records[first], records[variant]))
    _print(found, len(questions), summaries, records)
    if json_out:
        json_out.write_text(json.dumps({"data": str(data), "format": fmt, "collection": name, "options": options,
                                        "summaries": summaries, "records": records}, indent=1, default=list))
        console.print(f"records and summaries written to {json_out}")


def _collection_name(stem: str) -> str:
    return ("eval-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", stem))[:64]


def _ingest(target: Backend, collection: str, found: EvalSet, kv_precompute: str | None) -> None:
    documents = (Document.of(body) for body in found.documents)
    outcome = send_documents(target, collection, documents, len(found.documents), kv_precompute=kv_precompute)
    if outcome.errors:
        err.print(f"{len(outcome.errors)} document(s) could not be indexed; the first: {outcome.errors[0]}",
                  highlight=False, markup=False)
    if outcome.unfinished:
        fail("indexing stalled: `ragpress jobs list` shows where; run the same command again to go on.")
    _wait_for_kv(target, outcome)


def _wait_for_kv(target: Backend, outcome: Outcome) -> None:
    """Cached KV states computed after indexing (eager) are waited for, so queries time reads, not encoding."""
    def queued() -> int:
        return sum(int((target.job(job_id).get("kv") or {}).get("queued", 0)) for job_id in outcome.jobs)

    waiting = queued()
    if not waiting:
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err) as bar:
        task = bar.add_task("cached KV states", total=waiting)
        while waiting:
            time.sleep(KV_POLL_S)
            waiting = queued()
            bar.update(task, completed=bar.tasks[task].total - waiting)


def _variants(target: Backend, pipelines: list[str], stages: list[str]) -> dict[str, str | None]:
    """Each pipeline, and each without each of ``stages`` it can do without, saved for this run under a name of
    its own: name -> the saved pipeline to delete afterwards (None for the pipelines named). A stage no pipeline
    can do without ends the run; one only some can is noted."""
    variants: dict[str, str | None] = {}
    refusals: dict[str, list[str]] = {stage: [] for stage in stages}
    for pipeline in pipelines:
        variants[pipeline] = None
        for stage in stages:
            try:
                text = ablated(target.pipeline_yaml(pipeline), stage)
            except CannotAblate as exc:
                refusals[stage].append(f"{pipeline}: {exc}")
                continue
            saved = f"{pipeline}-without-{stage}"[:64]
            if _exists(target, saved):
                _delete(target, variants)
                fail(f"a pipeline named {saved!r} exists already; --ablate would replace it and delete it after the "
                     "run: rename it first.")
            target.save_pipeline(saved, text)
            variants[saved] = saved
    for stage, reasons in refusals.items():
        if len(reasons) == len(pipelines):
            _delete(target, variants)
            fail(f"--ablate {stage}: " + "; ".join(reasons))
        for reason in reasons:
            err.print(f"--ablate {stage} skipped on {reason}", highlight=False, markup=False)
    return variants


def _exists(target: Backend, name: str) -> bool:
    try:
        target.pipeline_yaml(name)
    except Exception:  # not found: the server's 404 or the embedded registry's PipelineNotFound
        return False
    return True


def _delete(target: Backend, variants: dict[str, str | None]) -> None:
    for saved in variants.values():
        if saved:
            target.delete_pipeline(saved)


def _ask(target: Backend, collection: str, questions: list[EvalQuestion], variants: list[str],
         options: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Every question through every variant, one question at a time, so a drift in the machine's speed falls on
    all of them alike; a failed query is recorded with its error and the run goes on."""
    records: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err) as bar:
        task = bar.add_task("questions", total=len(questions) * len(variants))
        for question in questions:
            for variant in variants:
                try:
                    response = target.query(collection, question.text, {**options, "pipeline": variant})
                    records[variant].append(measure(question, response))
                except Exception as exc:  # one bad question must not end the run: it is counted and shown
                    records[variant].append({"qid": question.qid, "error": f"{exc.__class__.__name__}: {exc}"})
                bar.advance(task)
    return records


COLUMNS = (  # summary key, row heading, kind
    ("ndcg10", "nDCG@10", "share"), ("recall100", "R@100", "share"), ("f1", "F1", "share"),
    ("f1_vs_first", "F1 minus the first pipeline's (paired)", "share"), ("em", "EM", "share"),
    ("removed", "context tokens removed", "share"), ("gold_kept", "gold sentences kept", "share"),
    ("abstain_unanswerable", "abstains: unanswerable", "share"),
    ("abstain_answerable", "abstains: answerable", "share"),
    ("ttft_ms", "time to first token ms", "ms"), ("retrieve_ms", "retrieve ms", "ms"), ("rerank_ms", "rerank ms", "ms"),
    ("prune_ms", "prune ms", "ms"), ("total_ms", "total ms", "ms"), ("kv_hit_ratio", "KV hit ratio", "share"),
    ("kv_masked", "cached tokens masked (pruned)", "share"), ("kv_bytes_per_token", "KV bytes per token", "ms"),
)


def _print(found: EvalSet, asked: int, summaries: dict[str, dict[str, Any]],
           records: dict[str, list[dict[str, Any]]]) -> None:
    """One column per pipeline, one row per measure the records allow (so several pipelines fit a terminal)."""
    table = Table(title=f"{found.name}: {asked} questions, {len(found.documents)} documents")
    table.add_column("measure (95% interval; times are medians)")
    for variant in summaries:
        table.add_column(variant, justify="right")
    for key, heading, kind in COLUMNS:
        if any(key in s for s in summaries.values()):
            table.add_row(heading, *(_cell(summary, key, kind) for summary in summaries.values()))
    console.print(table)
    for variant, rs in records.items():
        failed = [r["error"] for r in rs if "error" in r]
        if failed:
            err.print(f"{variant}: {len(failed)} question(s) failed, e.g. {failed[0]}", highlight=False, markup=False)


def _cell(summary: dict[str, Any], key: str, kind: str) -> str:
    if key not in summary:
        return "-"
    if kind == "ms":
        return f"{summary[key]:,.0f}"
    low, high = summary.get(f"{key}_ci", (None, None))
    interval = f" [{100 * low:.0f}-{100 * high:.0f}]" if low is not None else ""
    return f"{100 * summary[key]:.1f}{interval}"
