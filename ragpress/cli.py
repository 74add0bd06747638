"""The ``ragpress`` command: serve, worker, query, models; ``ingest`` and ``eval`` are in ``ragpress.cli_ingest`` and
``ragpress.cli_eval``, and ``jobs``,
``keys`` and ``pipeline`` in ``cli_jobs``, ``cli_keys`` and ``cli_pipeline``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ragpress.base import models
from ragpress.base.settings import get_settings
from ragpress.cli_backends import backend
from ragpress.cli_common import ApiKey, Server, console, err, fail, url_of
from ragpress.cli_eval import evaluate
from ragpress.cli_ingest import ingest
from ragpress.cli_jobs import jobs_app
from ragpress.cli_keys import keys_app
from ragpress.cli_pipeline import pipeline_app

app = typer.Typer(help="ragpress: retrieval-augmented generation that reads less and reuses its work.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Fetch, list and verify the bundled models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(jobs_app, name="jobs")
app.add_typer(keys_app, name="keys")
app.add_typer(pipeline_app, name="pipeline")


# --- models ---------------------------------------------------------------------------------------
@models_app.command("fetch")
def models_fetch(names: list[str] = typer.Argument(None, help="Models to fetch; default: the bundled defaults."),
                 force: bool = typer.Option(False, help="Fetch again even if cached."),
                 all_: bool = typer.Option(False, "--all", help="Also fetch the optional models.")) -> None:
    """Fetch models into the cache (pinned versions, sha256-checked); later runs never download."""
    wanted = names or ([m.name for m in models.REGISTRY] if all_ else models.default_models())
    for name in wanted:
        with console.status(f"fetching {name} ..."):
            try:
                path = models.fetch(name, force=force)
            except models.ModelError as exc:
                fail(str(exc))
        console.print(f"[green]ok[/green] {name} -> {path}")


@models_app.command("calibrate")
def models_calibrate(model: str = typer.Argument("SmolLM2-135M-Instruct", help="Generator to calibrate."),
                     questions: int = typer.Option(12, help="Dev questions per dataset."),
                     objective: str = typer.Option("answers", help="answers: gold tokens the greedy answers "
                                                   "miss; kl: fidelity to sequential prefill; nll: gold NLL."),
                     data: Path = typer.Option(None, help="Folder with xquad_en/ and hipporag_mini/.")) -> None:
    """Pick the KV generator's APE temperature and scale on dev questions; store them in the server's
    KV store, where the generator reads them."""
    # The search is offline code, which the CLI never imports: it runs as its own module, with these arguments.
    command = [sys.executable, "-m", "ragpress.training.kv_calibration", "--model", model,
               "--questions", str(questions), "--objective", objective, *(["--data", str(data)] if data else [])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"calibration exited with status {done.returncode}"])[-1]
        fail(last.removeprefix("error: "))
    result = json.loads(done.stdout)
    console.print(f"[green]calibrated[/green] {model}: T={result['temperature']} S={result['scale']} "
                  f"(dev {objective} {result['dev_mean_' + objective]}, naive {result['naive_mean_' + objective]})")


@models_app.command("list")
def models_list() -> None:
    """List the bundled models and whether they are fetched."""
    table = Table("name", "role", "optional", "fetched", "licence", "path")
    for row in models.status():
        table.add_row(row["name"], row["role"], row["optional"], row["fetched"], row["licence"], row["path"])
    console.print(table)


@models_app.command("verify")
def models_verify() -> None:
    """Check every fetched model's weights against its recorded sha256."""
    bad = 0
    for row in models.status():
        if row["fetched"] != "yes":
            continue
        try:
            models.verify(row["name"])
            console.print(f"[green]ok[/green] {row['name']}")
        except models.ModelError as exc:
            bad += 1
            err.print(f"[red]bad[/red] {exc}")
    raise typer.Exit(1 if bad else 0)


# --- serving --------------------------------------------------------------------------------------
@app.command()
def serve(host: str = typer.Option(None, help="Bind address (default from settings)."),
          port: int = typer.Option(None, min=1, max=65535, help="Port (default from settings).")) -> None:
    """Run the API server; in the embedded default it also runs the workers and owns the index."""
    import uvicorn

    from ragpress.api.app import create_app

    # The app decides from the address it really listens on whether keys are needed beyond localhost.
    configured = get_settings()
    settings = configured.model_copy(update={"host": host or configured.host, "port": port or configured.port})
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    mode = "distributed" if settings.broker_url else "embedded"
    err.print(f"ragpress {mode} mode; data in {settings.data_path}; settings: {json.dumps(settings.public_dict())}",
              highlight=False)
    for line in served_urls(settings.host, settings.port):
        err.print(line, highlight=False)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")


def served_urls(host: str, port: int) -> list[str]:
    """Where the server answers, as lines to print."""
    base = url_of(host, port)
    where = f" (listening on {host}, every interface)" if host in ("0.0.0.0", "::") else ""
    return [f"serving on {base}{where}", f"  API      {base}/v1", f"  console  {base}/console/",
            f"  docs     {base}/docs", f"  metrics  {base}/metrics"]


@app.command()
def worker(concurrency: int = typer.Option(1, help="Worker threads in this process."),
           queues: str = typer.Option("ingest", help="Comma-separated queues to consume.")) -> None:
    """Run a Celery worker process over the broker (REDIS_URL); scale by starting more of them."""
    settings = get_settings()
    if not settings.broker_url:
        fail("`ragpress worker` needs a broker: set REDIS_URL (or RAGPRESS_BROKER_URL). "
              "In the embedded default `ragpress serve` runs the workers itself.")
    from ragpress.workers import runtime
    from ragpress.workers.celery_app import get_celery

    runtime.declare_index_owner(settings.qdrant_url is not None)
    get_celery().worker_main(["worker", "-Q", queues, "-c", str(concurrency), "-P", "threads",
                              "--loglevel", settings.log_level, "-n", f"ragpress-worker-{os.getpid()}@%h",
                              "--without-gossip", "--without-mingle"])


# --- ingest, query and eval ------------------------------------------------------------------------
app.command()(ingest)
app.command("eval")(evaluate)


@app.command()
def query(text: str = typer.Argument(..., help="The question."),
          collection: str = typer.Option(..., "--collection", "-c"),
          top_k: int = typer.Option(None, help="Passages to retrieve."),
          pipeline: str = typer.Option(None, help="The pipeline that answers (`ragpress pipeline list`); "
                                                  "default: query."),
          generate: bool = typer.Option(True, help="Generate an answer (else only retrieve)."),
          as_json: bool = typer.Option(False, "--json", help="Print the raw JSON response."),
          server: Server = None, api_key: ApiKey = None) -> None:
    """Ask a question; prints the answer and the passages it used.

    Uses a running server, else this machine's index."""
    options: dict[str, Any] = {"generate": generate}
    if top_k:
        options["top_k"] = top_k
    if pipeline:
        options["pipeline"] = pipeline
    with backend(server, api_key) as target:
        result = target.query(collection, text, options)
    if as_json:
        console.print_json(json.dumps(result))
        return
    _print_answer(result)


def _print_answer(result: dict[str, Any]) -> None:
    if "answer" in result:
        label = "answer"
        if result.get("abstained"):
            reason = result.get("abstain_reason", "model_declined")
            label = f"answer (abstained: {reason}; the passages below were judged, not used)"
        console.print(f"[bold]{label}:[/bold] {result['answer']}\n")
    for rank, doc in enumerate(result["documents"], start=1):
        console.print(f"[{rank}] {doc.get('doc_id')}  score={doc.get('score', 0):.3f}", highlight=False, markup=False)
        for line in _passage_lines(doc):
            console.print(f"    {line}", highlight=False, markup=False)
    usage, cache = result.get("usage", {}), result.get("kv_cache")
    read = f"context: {usage.get('context_tokens', 0)} tokens, {usage.get('context_tokens_after_pruning', 0)} read"
    cached = f"; cached states: {cache['hits']} found, {cache['misses']} encoded" if cache else ""
    console.print(f"\n{read}{cached}\ntimings (ms): {result.get('timings_ms')}", highlight=False)


def _passage_lines(doc: dict[str, Any], width: int = 300) -> list[str]:
    """The passage, or after a pruner the sentences it kept and those it dropped."""
    text = doc.get("text") or ""
    if "kept_sentences" not in doc:
        return [" ".join(text.split())[:width]]
    kept = set(doc["kept_sentences"])
    dropped = [text[s:e] for i, (s, e) in enumerate(doc.get("sentences") or []) if i not in kept]
    lines = [f"kept: {' '.join(doc.get('pruned_text', '').split())[:width] or '(nothing)'}"]
    if dropped:
        lines.append(f"pruned ({len(dropped)}): {' | '.join(' '.join(d.split()) for d in dropped)[:width]}")
    return lines
