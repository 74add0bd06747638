"""``ragpress jobs``: what a running server says about its jobs, one line each, and its errors as one line."""

from __future__ import annotations

import pytest
from fake_server import FakeServer
from typer.testing import CliRunner

from ragpress import cli_common
from ragpress.cli_jobs import jobs_app

pytestmark = pytest.mark.unit

JOB = {"job_id": "j1", "status": "partial", "done": 2, "total": 3, "failed": 1, "skipped": 0, "collection": "docs",
       "created_at": "2025-01-01T00:00:00", "errors": [{"doc_id": "scan.pdf", "error": "no text"}]}


def run(monkeypatch: pytest.MonkeyPatch, server: FakeServer, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(cli_common, "running_server", lambda _url, _key: server.client())
    result = CliRunner().invoke(jobs_app, list(args))
    return result.exit_code, " ".join(result.output.split())


def test_list_prints_each_job_with_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run(monkeypatch, FakeServer({("GET", "/v1/jobs"): (200, {"jobs": [JOB]})}), "list")
    assert code == 0 and "j1 partial 2/3 done, 1 failed, 0 unchanged (docs," in output and "scan.pdf: no text" in output


def test_show_says_what_became_of_the_jobs_kv_states_and_why_some_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    job = {**JOB, "kv": {"queued": 0, "done": 2, "lazy": 0, "budget": 1, "failed": 0, "entries": 9},
           "warnings": [{"doc_id": "b.md", "warning": "KV pre-compute failed (model m: boom)"}]}
    code, output = run(monkeypatch, FakeServer({("GET", "/v1/jobs/j1"): (200, job)}), "show", "j1")
    assert code == 0
    assert "KV states of documents: 2 computed, 1 left to first use (the KV store's budget is full" in output
    assert "9 entries stored" in output and "b.md: KV pre-compute failed (model m: boom)" in output


def test_cancel_asks_the_server_to_cancel_that_job(monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeServer({("POST", "/v1/jobs/j1/cancel"): (200, {**JOB, "status": "cancelled"})})
    code, output = run(monkeypatch, server, "cancel", "j1")
    assert code == 0 and "j1 cancelled" in output and [r.method for r in server.requests] == ["POST"]


def test_an_unknown_job_is_the_servers_message(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run(monkeypatch, FakeServer({}), "show", "nope")
    assert code == 1 and "error: No such thing." in output


def test_an_answer_no_ragpress_server_gives_is_a_message_not_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = run(monkeypatch, FakeServer({("GET", "/v1/jobs"): (200, {"detail": "Not Found"})}), "list")
    assert code == 1 and "answered GET /v1/jobs with an object without 'jobs'" in output
