"""The ``ragpress`` command: serve, worker, ingest, query, models."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ragpress.base import models
from ragpress.base.settings import get_settings

app = typer.Typer(help="ragpress: retrieval-augmented generation that reads less and reuses its work.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
models_app = typer.Typer(help="Fetch, list and verify the bundled models.", no_args_is_help=True)
app.add_typer(models_app, name="models")
jobs_app = typer.Typer(help="List, inspect and cancel ingestion jobs on a running server.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
keys_app = typer.Typer(help="Create, list and revoke API keys (run where the server's database is).",
                       no_args_is_help=True)
app.add_typer(keys_app, name="keys")
pipeline_app = typer.Typer(help="Validate, show, diff and apply pipeline YAML on a running server.",
                           no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


def _server_url(server: str | None) -> str:
    settings = get_settings()
    return server or f"http://{settings.host}:{settings.port}"


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
                _fail(str(exc))
        console.print(f"[green]ok[/green] {name} -> {path}")


@models_app.command("calibrate")
def models_calibrate(model: str = typer.Argument("SmolLM2-135M-Instruct", help="Generator to calibrate."),
                     questions: int = typer.Option(12, help="Dev questions per dataset."),
                     objective: str = typer.Option("kl", help="kl: fidelity to sequential prefill; nll: gold NLL."),
                     data: Path = typer.Option(None, help="Folder with xquad_en/ and hipporag_mini/.")) -> None:
    """Pick the KV generator's APE temperature and scale on dev questions; store them in the server's
    KV store, where the generator reads them."""
    from ragpress.generators.kv_calibration import calibrate
    from ragpress.generators.kv_scoring import DATASETS

    try:
        result = calibrate(model, None, questions, objective=objective, data=data or DATASETS)
    except (FileNotFoundError, ValueError, models.ModelError) as exc:
        _fail(str(exc))
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


# --- jobs -----------------------------------------------------------------------------------------
def _client(server: str | None) -> Any:
    from ragpress.client import Client

    client = Client(_server_url(server))
    if not client.alive():
        _fail(f"no ragpress server answers at {_server_url(server)}; start one with `ragpress serve`.")
    return client


def _print_job(job: dict[str, Any]) -> None:
    console.print(f"{job['job_id']}  {job['status']:<9}  {job['done']}/{job['total']} done, {job['failed']} failed, "
                  f"{job.get('skipped', 0)} unchanged  ({job['collection']}, {job['created_at']})")
    for error in job.get("errors", []):
        console.print(f"    {error['doc_id']}: {error['error']}")


@jobs_app.command("list")
def jobs_list(server: str = typer.Option(None, help="Server URL.")) -> None:
    """The most recent jobs."""
    for job in _client(server).http.get("/v1/jobs").json()["jobs"]:
        _print_job(job)


@jobs_app.command("show")
def jobs_show(job_id: str, server: str = typer.Option(None, help="Server URL.")) -> None:
    """One job with its per-document errors."""
    from ragpress.client import ServerError

    try:
        _print_job(_client(server).job(job_id))
    except ServerError as exc:
        _fail(exc.message)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, server: str = typer.Option(None, help="Server URL.")) -> None:
    """Cancel a job: documents not yet started are skipped."""
    from ragpress.client import ServerError

    try:
        _print_job(_client(server)._call("POST", f"/v1/jobs/{job_id}/cancel"))
    except ServerError as exc:
        _fail(exc.message)


# --- keys -----------------------------------------------------------------------------------------
def _key_store() -> Any:
    from ragpress.base.api_keys import KeyStore
    from ragpress.base.database import make_engine

    return KeyStore(make_engine(get_settings().resolved_database_url))


@keys_app.command("create")
def keys_create(tenant: str = typer.Option(None, help="The tenant the key belongs to."),
                admin: bool = typer.Option(False, help="An admin key (manages tenants and keys)."),
                label: str = typer.Option("", help="A note to recognise the key by.")) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    try:
        key_id, key = _key_store().create_key(None if admin else tenant, admin=admin, label=label)
    except ValueError as exc:
        _fail(f"{exc} (pass --tenant NAME or --admin).")
    console.print(f"key id {key_id} ({'admin' if admin else 'tenant ' + tenant}); the key, shown only now:")
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Keys by id, tenant and state (never the keys themselves)."""
    table = Table("id", "tenant", "admin", "label", "created", "revoked")
    for row in _key_store().list_keys():
        table.add_row(row["id"], row["tenant"] or "-", str(row["admin"]), row["label"], row["created_at"],
                      str(row["revoked"]))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: str) -> None:
    """Revoke a key at once."""
    if not _key_store().revoke(key_id):
        _fail(f"no active key '{key_id}'.")
    console.print(f"revoked {key_id}")


# --- pipelines ------------------------------------------------------------------------------------
def _pipeline_call(server: str | None, method: str, path: str, **kwargs: Any) -> Any:
    from ragpress.client import ServerError

    try:
        return _client(server)._call(method, path, **kwargs)
    except ServerError as exc:
        _fail(exc.message)


def _print_problems(problems: list[dict[str, Any]]) -> None:
    for problem in problems:
        where = ", ".join(x for x in (f"line {problem['line']}" if problem.get("line") else "",
                                      problem.get("field") or "") if x)
        err.print(f"[red]invalid[/red] {where + ': ' if where else ''}{problem['message']}")


@pipeline_app.command("validate")
def pipeline_validate(file: Path) -> None:
    """Validate a YAML file (syntax, allowed components, connections, this configuration's cost ceilings)
    without saving it."""
    from ragpress.base.limits import ceilings
    from ragpress.pipelines.loader import PipelineInvalid
    from ragpress.pipelines.registry import validate

    text = file.read_text(encoding="utf-8")
    try:
        validate(text, ceilings(get_settings()))
    except PipelineInvalid as exc:
        _print_problems([p.as_dict() for p in exc.problems])
        raise typer.Exit(1) from None
    console.print(f"[green]valid[/green] {file}")


@pipeline_app.command("show")
def pipeline_show(name: str, version: int = typer.Option(None), server: str = typer.Option(None)) -> None:
    """Print a saved pipeline's YAML."""
    params = {"version": version} if version is not None else {}
    print(_pipeline_call(server, "GET", f"/v1/pipelines/{name}", params=params)["yaml"])


@pipeline_app.command("diff")
def pipeline_diff(name: str, file: Path, server: str = typer.Option(None)) -> None:
    """Show how a YAML file differs from the saved pipeline."""
    import difflib

    saved = _pipeline_call(server, "GET", f"/v1/pipelines/{name}")
    diff = difflib.unified_diff(saved["yaml"].splitlines(), file.read_text(encoding="utf-8").splitlines(),
                                f"{name} (v{saved['version']})", str(file), lineterm="")
    print("\n".join(diff) or "no differences")


@pipeline_app.command("apply")
def pipeline_apply(name: str, file: Path, server: str = typer.Option(None)) -> None:
    """Validate and save a YAML file as the pipeline's next version; the next request uses it."""
    from ragpress.client import ServerError

    try:
        saved = _client(server)._call("PUT", f"/v1/pipelines/{name}", content=file.read_bytes(),
                                      headers={"content-type": "application/yaml"})
    except ServerError as exc:
        _fail(exc.message)
    console.print(f"[green]saved[/green] {name} version {saved['version']}")


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
        _fail("`ragpress worker` needs a broker: set REDIS_URL (or RAGPRESS_BROKER_URL). "
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
            _fail(f"{path}: no such file or directory.")
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
        _fail("nothing to ingest.")
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
        from ragpress.service import QueryRequest

        return self.service.query(schema.DEFAULT_TENANT, collection, QueryRequest(query=text, **options))


def _with_backend(server: str | None, action: Any) -> Any:
    """Use the server when one answers (it owns the index); otherwise run embedded in this process."""
    from ragpress.base.document_stores import IndexUnavailable
    from ragpress.client import ServerError
    from ragpress.service import InvalidRequest, NotFound

    remote = _Remote(_server_url(server))
    if remote.client.alive():
        backend: Any = remote
    elif server:
        _fail(f"no ragpress server answers at {server}.")
    else:
        try:
            backend = _Embedded()
        except (IndexUnavailable, models.ModelError) as exc:
            _fail(str(exc))
    try:
        return action(backend)
    except ServerError as exc:
        _fail(exc.message)
    except (NotFound, InvalidRequest, models.ModelError) as exc:
        _fail(str(exc))
    finally:
        if isinstance(backend, _Embedded):
            backend.service.stop()

