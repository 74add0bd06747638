"""The ``ragpress`` command: serve, worker, ingest, query, models; ``jobs``, ``keys`` and ``pipeline`` are in
``ragpress.cli_jobs``, ``cli_keys`` and ``cli_pipeline``."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ragpress.base import models
from ragpress.base.settings import get_settings
from ragpress.cli_common import console, err, fail, server_url
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
                     objective: str = typer.Option("kl", help="kl: fidelity to sequential prefill; nll: gold NLL."),
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
          port: int = typer.Option(None, help="Port (default from settings).")) -> None:
    """Run the API server; in the embedded default it also runs the workers and owns the index."""
    import uvicorn

    from ragpress.api.app import create_app

    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    mode = "distributed" if settings.broker_url else "embedded"
    err.print(f"ragpress {mode} mode; data in {settings.data_path}; settings: {json.dumps(settings.public_dict())}")
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port, log_level="warning")


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


# --- ingest and query -----------------------------------------------------------------------------
def _read_documents(paths: list[Path]) -> list[dict[str, Any]]:
    from ragpress.indexers.converters import ConversionError, content_type_for, pdf_to_text

    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")))
        elif path.is_file():
            files.append(path)
        else:
            fail(f"{path}: no such file or directory.")
    documents = []
    for file in files:
        try:
            content_type = content_type_for(file)
            data = file.read_bytes()
            if content_type == "application/pdf":  # JSON carries text, so PDFs are converted here
                text, content_type = pdf_to_text(data, file.name), "text/plain"
            else:
                text = data.decode("utf-8-sig")
        except (ConversionError, UnicodeDecodeError) as exc:
            err.print(f"[yellow]skipped[/yellow] {file}: {exc}")
            continue
        documents.append({"id": file.name, "text": text, "meta": {"content_type": content_type,
                                                                   "source": str(file)}})
    return documents


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err)


@app.command()
def ingest(paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .pdf)."),
           collection: str = typer.Option(..., "--collection", "-c"),
           server: str = typer.Option(None, help="Server URL; default: the configured one if it answers, "
                                                 "otherwise run embedded in this process.")) -> None:
    """Ingest documents and wait for the job, with a progress bar."""
    documents = _read_documents(paths)
    if not documents:
        fail("nothing to ingest.")
    job = _with_backend(server, lambda b: b.ingest(collection, documents))
    console.print(f"job {job['job_id']}: {job['status']} ({job['done']} indexed, {job['failed']} failed, "
                  f"{job.get('skipped', 0)} unchanged)")
    for error in job["errors"]:
        err.print(f"[red]failed[/red] {error['doc_id']}: {error['error']}")
    if job["status"] not in ("succeeded", "partial"):
        raise typer.Exit(1)


@app.command()
def query(text: str = typer.Argument(..., help="The question."),
          collection: str = typer.Option(..., "--collection", "-c"),
          top_k: int = typer.Option(None, help="Passages to retrieve."),
          generate: bool = typer.Option(True, help="Generate an answer (else only retrieve)."),
          as_json: bool = typer.Option(False, "--json", help="Print the raw JSON response."),
          server: str = typer.Option(None, help="Server URL; default: configured server or embedded.")) -> None:
    """Ask a question; prints the answer and the passages it used."""
    options: dict[str, Any] = {"generate": generate}
    if top_k:
        options["top_k"] = top_k
    result = _with_backend(server, lambda b: b.query(collection, text, options))
    if as_json:
        console.print_json(json.dumps(result))
        return
    if "answer" in result:
        label = "answer"
        if result.get("abstained"):
            reason = result.get("abstain_reason", "model_declined")
            label = f"answer (abstained: {reason}; the passages below were judged, not used)"
        console.print(f"[bold]{label}:[/bold] {result['answer']}\n")
    for rank, doc in enumerate(result["documents"], start=1):
        snippet = " ".join((doc.get("pruned_text") or doc["text"]).split())[:300]
        console.print(f"[{rank}] {doc['doc_id']}  score={doc['score']:.3f}\n    {snippet}")
    console.print(f"\ntimings (ms): {result['timings_ms']}")


class _Remote:
    def __init__(self, url: str) -> None:
        from ragpress.client import Client

        self.client = Client(url)

    def ingest(self, collection: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
        job_id = self.client.add_documents(collection, documents)
        with _progress() as bar:
            task = bar.add_task("indexing", total=len(documents))
            return self.client.wait(job_id, on_progress=lambda j: bar.update(task, completed=j["done"] + j["failed"]))

    def query(self, collection: str, text: str, options: dict[str, Any]) -> dict[str, Any]:
        return self.client.query(collection, text, **options)


class _Embedded:
    def __init__(self) -> None:
        from ragpress.service import Service

        self.service = Service(get_settings())
        self.service.start()

    def ingest(self, collection: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
        from ragpress.base import schema
        from ragpress.service import IncomingDocument

        incoming = [IncomingDocument(text=d["text"], id=d["id"], meta=d["meta"]) for d in documents]
        job_id = self.service.submit(schema.DEFAULT_TENANT, collection, incoming)
        with _progress() as bar:
            task = bar.add_task("indexing", total=len(documents))
            return self.service.wait(schema.DEFAULT_TENANT, job_id,
                                     on_progress=lambda j: bar.update(task, completed=j["done"] + j["failed"]))

    def query(self, collection: str, text: str, options: dict[str, Any]) -> dict[str, Any]:
        from ragpress.base import schema
        from ragpress.pipelines.query_pipeline import QueryRequest

        return self.service.query(schema.DEFAULT_TENANT, collection, QueryRequest(query=text, **options))

    def stop(self) -> None:
        self.service.stop()


def _with_backend(server: str | None, action: Any) -> Any:
    """Use the server when one answers (it owns the index); otherwise run embedded in this process."""
    from ragpress.base.document_stores import IndexUnavailable
    from ragpress.client import ServerError
    from ragpress.pipelines.query_pipeline import InvalidRequest
    from ragpress.service import NotFound

    remote = _Remote(server_url(server))
    if remote.client.alive():
        backend: Any = remote
    elif server:
        fail(f"no ragpress server answers at {server}.")
    else:
        try:
            backend = _Embedded()
        except (IndexUnavailable, models.ModelError) as exc:
            fail(str(exc))
    try:
        return action(backend)
    except ServerError as exc:
        fail(exc.message)
    except (NotFound, InvalidRequest, models.ModelError) as exc:
        fail(str(exc))
    finally:
        if isinstance(backend, _Embedded):
            backend.stop()

