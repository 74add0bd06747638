"""``ragpress ingest``: files and folders into a collection, any number of them.

Files are read lazily and sent in batches within the server's per-request limits, one job per batch with a few
in flight at a time, under one progress bar and one summary. Re-sending what did not change is a no-op on the
server (it compares content hashes), so running the command again is how an interrupted ingest resumes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from ragpress.base.settings import get_settings
from ragpress.cli_backends import PAGE, Backend, backend
from ragpress.cli_common import ApiKey, Server, console, err, fail
from ragpress.cli_files import Document, NotIngestible, Plan, Skip, batches, plan, read, skipped_summary

IN_FLIGHT = 4  # jobs queued at once: enough to keep the workers busy, few enough that memory and polling stay flat
POLL_S = 0.3
STALL_S = 600  # no job moved for this long: stop waiting (they go on on the server)
SHOWN_FAILURES = 20


@dataclass
class Outcome:
    """What the jobs of one ingest did, summed."""

    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # job id -> its last state
    skipped: list[Skip] = field(default_factory=list)

    def total(self, key: str) -> int:
        return sum(int(job.get(key, 0)) for job in self.jobs.values())

    @property
    def unfinished(self) -> list[str]:
        return [job_id for job_id, job in self.jobs.items() if job["status"] in ("queued", "running")]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [error for job in self.jobs.values() for error in job.get("errors", [])]

    @property
    def cancelled(self) -> list[str]:
        return [job_id for job_id, job in self.jobs.items() if job["status"] == "cancelled"]


def ingest(paths: list[Path] = typer.Argument(..., help="Files or folders (.txt .md .html .pdf .docx ...); a "
                                                        "folder's files get the id '<folder name>/<path in it>'."),
           collection: str = typer.Option(..., "--collection", "-c"),
           delete_missing: bool = typer.Option(False, "--delete-missing", help="Also remove the collection's "
                                               "documents under the folders given whose files are gone."),
           verbose: bool = typer.Option(False, "--verbose", "-v", help="List every skipped file and failure."),
           server: Server = None, api_key: ApiKey = None) -> None:
    """Ingest files and folders; uses a running server, else this machine's index.

    Hidden files and folders are left out; batches of any size are sent under one progress bar and one summary."""
    from ragpress.api.schemas import NAME_PATTERN

    if not re.match(NAME_PATTERN, collection):
        fail(f"'{collection}' cannot name a collection: use letters, digits, '_', '.' and '-' (at most 64, starting "
             "with a letter or digit).")
    try:
        found = plan(paths)
    except NotIngestible as exc:
        fail(str(exc))
    if delete_missing and not found.prefixes:
        fail("--delete-missing removes the documents of files gone from a folder: give at least one folder.")
    if not found.sources and not delete_missing:
        _print_skipped(found.skipped, verbose)
        fail("nothing to ingest: no file of a supported type.")
    with backend(server, api_key) as target:
        outcome = send(target, collection, found)
        removed = remove_missing(target, collection, found) if delete_missing else []
    _report(collection, outcome, removed, verbose)
    if outcome.errors or outcome.cancelled or outcome.unfinished:
        raise typer.Exit(1)


def send(target: Backend, collection: str, found: Plan) -> Outcome:
    """Every source of ``found`` read and sent, batch by batch; returns when every job ended (or stalled)."""
    settings = get_settings()
    skipped = list(found.skipped)
    documents = _documents(read(found.sources, settings.max_document_bytes, settings.max_request_bytes), skipped)
    return send_documents(target, collection, documents, len(found.sources), skipped)


def send_documents(target: Backend, collection: str, documents: Iterable[Document], total: int,
                   skipped: list[Skip] | None = None, kv_precompute: str | None = None) -> Outcome:
    """``documents`` sent in batches within the request limits under one progress bar of ``total``; returns when
    every job ended (or stalled). ``skipped`` is filled while ``documents`` is read and counts on the bar."""
    settings = get_settings()
    outcome = Outcome(skipped=skipped if skipped is not None else [])
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err) as bar:
        flight = _Flight(target, outcome, bar, bar.add_task("indexing", total=total), kv_precompute)
        for batch in batches(documents, settings.max_documents_per_request, settings.max_request_bytes):
            flight.submit(collection, batch)
        flight.land()
    return outcome


def _documents(items: Iterable[Document | Skip], skipped: list[Skip]) -> Iterator[Document]:
    for item in items:
        if isinstance(item, Skip):
            skipped.append(item)
        else:
            yield item


class _Flight:
    """Jobs in flight: at most IN_FLIGHT at once, polled until they end, the bar counting every file settled."""

    def __init__(self, target: Backend, outcome: Outcome, bar: Progress, task: TaskID,
                 kv_precompute: str | None = None) -> None:
        self.target, self.outcome, self.bar, self.task = target, outcome, bar, task
        self.kv_precompute = kv_precompute
        self.already_skipped = len(outcome.skipped)
        self.moved_at = time.monotonic()

    def submit(self, collection: str, batch: list[Document]) -> None:
        while len(self.outcome.unfinished) >= IN_FLIGHT and self._poll():
            time.sleep(POLL_S)
        job_id = self._sent(lambda: self.target.submit(collection, [d.body for d in batch], self.kv_precompute))
        self.outcome.jobs[job_id] = {"job_id": job_id, "status": "queued", "total": len(batch)}
        self._show()

    def land(self) -> None:
        while self.outcome.unfinished and self._poll():
            time.sleep(POLL_S)

    def _poll(self) -> bool:
        """Refresh the unfinished jobs; False once none has moved for STALL_S seconds."""
        for job_id in self.outcome.unfinished:
            job = self._sent(lambda job_id=job_id: self.target.job(job_id))
            if job != self.outcome.jobs[job_id]:
                self.moved_at = time.monotonic()
            self.outcome.jobs[job_id] = job
        self._show()
        return time.monotonic() - self.moved_at < STALL_S

    def _show(self) -> None:
        settled = self.outcome.total("done") + self.outcome.total("failed")
        self.bar.update(self.task, completed=settled + len(self.outcome.skipped) - self.already_skipped)

    def _sent(self, call: Callable[[], Any]) -> Any:
        """``call``'s answer; a server's refusal mid-way also says what was already sent and how to go on."""
        from ragpress.client import ServerError

        try:
            return call()
        except ServerError as exc:
            if exc.status == 401 or not self.outcome.jobs:
                raise
            limits = (" This machine's limits (RAGPRESS_MAX_REQUEST_BYTES, RAGPRESS_MAX_DOCUMENTS_PER_REQUEST, "
                      "RAGPRESS_MAX_DOCUMENT_BYTES) size the batches: set them to the server's."
                      if exc.status == 413 else "")
            raise ServerError(exc.status, exc.code, f"{exc.message}{limits} {len(self.outcome.jobs)} batch(es) were "
                              "already sent (`ragpress jobs list`); run the command again to go on: what did not "
                              "change is skipped.") from None


def remove_missing(target: Backend, collection: str, found: Plan) -> list[str]:
    """Delete the collection's documents under the folders' prefixes whose files are gone; their ids."""
    prefixes = tuple(found.prefixes)
    gone: list[str] = []
    after: str | None = None
    while True:
        page = target.documents(collection, after)
        gone += [d["id"] for d in page["documents"] if d["id"].startswith(prefixes) and d["id"] not in found.present]
        after = page.get("next_after")
        if not after:
            break
    for start in range(0, len(gone), PAGE):
        target.delete_documents(collection, gone[start:start + PAGE])
    return gone


def _print_skipped(skipped: list[Skip], verbose: bool) -> None:
    for line in skipped_summary(skipped, verbose):
        err.print(line, highlight=False, markup=False)


def _report(collection: str, outcome: Outcome, removed: list[str], verbose: bool) -> None:
    unchanged = outcome.total("skipped")
    console.print(f"collection '{collection}': {outcome.total('done') - unchanged:,} indexed, {unchanged:,} "
                  f"unchanged, {outcome.total('failed'):,} failed, {len(outcome.skipped):,} skipped "
                  f"({len(outcome.jobs)} job{'s' if len(outcome.jobs) != 1 else ''})", highlight=False)
    _print_skipped(outcome.skipped, verbose)
    if removed:
        console.print(f"removed {len(removed):,} document(s) whose files are gone"
                      + (": " + ", ".join(removed) if verbose else ""), highlight=False, markup=False)
    errors = outcome.errors
    for error in errors if verbose else errors[:SHOWN_FAILURES]:
        err.print(f"failed {error['doc_id']}: {error['error']}", highlight=False, markup=False)
    if len(errors) > SHOWN_FAILURES and not verbose:
        err.print(f"... and {len(errors) - SHOWN_FAILURES:,} more failures (--verbose lists them)")
    for job_id in outcome.cancelled:
        err.print(f"job {job_id} was cancelled: its documents not yet indexed were left out.", highlight=False)
    for job_id in outcome.unfinished:
        err.print(f"job {job_id} has not moved for {STALL_S} s and goes on on the server: follow it with "
                  f"`ragpress jobs show {job_id}`.", highlight=False)
