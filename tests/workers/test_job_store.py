"""The job store's contract, run against SQLite (embedded default) and PostgreSQL (distributed mode)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ragpress.base.schema import content_hash
from ragpress.workers.job_store import JobStore

pytestmark = pytest.mark.integration

PG_ADMIN_URL = os.environ.get("RAGPRESS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _postgres_database() -> Iterator[str]:
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"ragpress_test_{uuid.uuid4().hex[:8]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.skip(f"needs PostgreSQL at {PG_ADMIN_URL} ({exc.__class__.__name__}); set RAGPRESS_TEST_POSTGRES")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        yield JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    for url in _postgres_database():
        job_store = JobStore(url)
        yield job_store
        job_store.engine.dispose()


def _doc(doc_id: str, text: str) -> tuple[str, str, str, dict[str, str]]:
    return doc_id, content_hash(text), text, {}


def test_a_new_job_is_queued_with_every_document_pending(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha"), _doc("b", "beta")])
    job = store.job(job_id, "t")
    assert job is not None and job["status"] == "queued" and job["total"] == 2
    assert store.pending_seqs(job_id) == [0, 1]


def test_a_job_is_invisible_to_other_tenants(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha")])
    assert store.job(job_id, "someone-else") is None
    assert store.cancel(job_id, "someone-else") is False


def test_finished_documents_are_registered_and_identical_content_is_skipped_next_time(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha")])
    (pending,) = store.claim(job_id, [0])
    store.finish_document(job_id, pending.seq, "t", "c", units=3)
    assert store.job(job_id, "t")["status"] == "succeeded"
    again = store.create_job("t", "c", [_doc("a", "alpha"), _doc("b", "beta")])
    job = store.job(again, "t")
    assert job["skipped"] == 1 and store.pending_seqs(again) == [1]
    assert store.list_collections("t") == [{**store.list_collections("t")[0], "name": "c", "documents": 1, "units": 3}]


def test_one_failure_among_successes_makes_the_job_partial_with_its_reason(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha"), _doc("b", "beta")])
    store.claim(job_id, [0, 1])
    store.finish_document(job_id, 0, "t", "c", units=1)
    store.fail_document(job_id, 1, "b: not valid UTF-8")
    job = store.job(job_id, "t")
    assert job["status"] == "partial" and job["errors"] == [{"doc_id": "b", "error": "b: not valid UTF-8"}]


def test_documents_left_running_by_a_dead_worker_are_claimed_again(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha")])
    assert len(store.claim(job_id, [0])) == 1
    assert [p.doc_id for p in store.claim(job_id, [0])] == ["a"]  # redelivered task finds it again


def test_a_cancelled_job_hands_out_no_more_work(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha"), _doc("b", "beta")])
    assert store.cancel(job_id, "t")
    assert store.claim(job_id, [0, 1]) == []
    assert store.job(job_id, "t")["status"] == "cancelled"


def test_forgetting_a_document_lets_its_content_be_indexed_again(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha")])
    store.claim(job_id, [0])
    store.finish_document(job_id, 0, "t", "c", units=1)
    assert store.forget_document("t", "c", "a")
    assert store.pending_seqs(store.create_job("t", "c", [_doc("a", "alpha")])) == [0]
