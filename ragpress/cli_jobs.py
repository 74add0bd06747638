"""``ragpress jobs``: list, show and cancel ingestion jobs on a running server."""

from __future__ import annotations

from typing import Any

import typer

from ragpress.cli_common import ApiKey, Server, ask, console

jobs_app = typer.Typer(help="List, inspect and cancel ingestion jobs on a running server.", no_args_is_help=True)
JobId = typer.Argument(..., help="The job's id, or its first 8 characters or more (as the console shows).")


# A job's KV follow-up, per document status, as a sentence says it.
KV_STATUS_WORDS = {"done": "computed", "queued": "queued", "lazy": "left to first use (lazy collection)",
                   "budget": "left to first use (the KV store's budget is full: RAGPRESS_KV_MAX_BYTES)",
                   "failed": "failed"}


def _print_job(job: dict[str, Any]) -> None:
    console.print(f"{job.get('job_id')}  {job.get('status', '?'):<9}  {job.get('done', 0)}/{job.get('total', 0)} done, "
                  f"{job.get('failed', 0)} failed, {job.get('skipped', 0)} unchanged  ({job.get('collection', '?')}, "
                  f"{job.get('created_at', '?')})", highlight=False, markup=False)
    for error in job.get("errors", []):
        console.print(f"    {error.get('doc_id')}: {error.get('error')}", highlight=False, markup=False)
    kv = job.get("kv") or {}
    counts = [f"{kv[status]} {words}" for status, words in KV_STATUS_WORDS.items() if kv.get(status)]
    if counts:
        console.print(f"    KV states of documents: {', '.join(counts)}; {kv.get('entries', 0)} entries stored",
                      highlight=False, markup=False)
    for warning in job.get("warnings", []):
        console.print(f"    {warning.get('doc_id')}: {warning.get('warning')}", highlight=False, markup=False)


@jobs_app.command("list")
def jobs_list(server: Server = None, api_key: ApiKey = None) -> None:
    """The most recent jobs."""
    for job in ask(server, api_key, lambda client: client.jobs()):
        _print_job(job)


@jobs_app.command("show")
def jobs_show(job_id: str = JobId, server: Server = None, api_key: ApiKey = None) -> None:
    """One job with its per-document errors."""
    _print_job(ask(server, api_key, lambda client: client.job(job_id)))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str = JobId, server: Server = None, api_key: ApiKey = None) -> None:
    """Cancel a job: documents not yet started are skipped."""
    _print_job(ask(server, api_key, lambda client: client.cancel(job_id)))
