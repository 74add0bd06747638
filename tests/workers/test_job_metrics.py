"""Ingestion metrics against a real job store (SQLite): a job's duration is recorded once, when it finishes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from ragpress.base.schema import content_hash
from ragpress.workers import job_metrics
from ragpress.workers.job_store import JobStore

pytestmark = pytest.mark.unit


def finished_jobs(status: str) -> float:
    return REGISTRY.get_sample_value("ragpress_ingestion_job_seconds_count", {"status": status}) or 0.0


def test_a_jobs_duration_is_recorded_once_when_its_last_document_finishes(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    texts = ("first document", "second document")
    job_id = store.create_job("t", "c", [(f"d{i}", content_hash(t), t, {}) for i, t in enumerate(texts)])
    before = finished_jobs("partial")
    store.finish_document(job_id, 0, "t", "c", units=1)
    job_metrics.batch_done(store, job_id)  # one document still queued: not finished
    assert finished_jobs("partial") == before
    store.fail_document(job_id, 1, "unreadable")
    job_metrics.batch_done(store, job_id)
    job_metrics.batch_done(store, job_id)  # a second batch that sees it finished too
    assert finished_jobs("partial") == before + 1


def test_when_the_job_store_cannot_answer_the_job_goes_unmeasured_and_the_task_does_not_fail(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
    store.engine.dispose()
    (tmp_path / "jobs.db").unlink()
    (tmp_path / "jobs.db").mkdir()  # the database file is gone, a folder in its place
    job_metrics.batch_done(store, "no-such-job")
