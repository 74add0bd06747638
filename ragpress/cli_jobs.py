"""``ragpress jobs``: list, show and cancel ingestion jobs on a running server."""

from __future__ import annotations

from typing import Any

import typer

from ragpress.cli_common import ask, console

jobs_app = typer.Typer(help="List, inspect and cancel ingestion jobs on a running server.", no_args_is_help=True)


def _print_job(job: dict[str, Any]) -> None:
    console.print(f"{job['job_id']}  {job['status']:<9}  {job['done']}/{job['total']} done, {job['failed']} failed, "
                  f"{job.get('skipped', 0)} unchanged  ({job['collection']}, {job['created_at']})")
    for error in job.get("errors", []):
        console.print(f"    {error['doc_id']}: {error['error']}")


@jobs_app.command("list")
def jobs_list(server: str = typer.Option(None, help="Server URL.")) -> None:
    """The most recent jobs."""
    for job in ask(server, lambda client: client.jobs()):
        _print_job(job)


@jobs_app.command("show")
def jobs_show(job_id: str, server: str = typer.Option(None, help="Server URL.")) -> None:
    """One job with its per-document errors."""
    _print_job(ask(server, lambda client: client.job(job_id)))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str, server: str = typer.Option(None, help="Server URL.")) -> None:
    """Cancel a job: documents not yet started are skipped."""
    _print_job(ask(server, lambda client: client.cancel(job_id)))
