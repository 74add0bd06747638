"""Eager KV pre-compute over a collection larger than the store's byte budget.

The follow-up runs in-process here (real model, real local KV store, real SQLite job store); the Celery task
that calls it in a server is tested in test_kv_precompute.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from haystack import Document

from ragpress.base import schema
from ragpress.base.settings import get_settings
from ragpress.generators import kv_context
from ragpress.generators.kv_store import LocalKVStore
from ragpress.workers.job_store import JobStore
from ragpress.workers.kv_follow_up import follow_up_items, run_follow_up

pytestmark = pytest.mark.integration
BUDGET = 4_000_000  # about five chunks' int4 states of the default generator


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("RAGPRESS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RAGPRESS_KV_MAX_BYTES", str(BUDGET))
    monkeypatch.setattr(kv_context, "_builders", OrderedDict())  # builders hold the store they were made with
    get_settings.cache_clear()  # settings are read once per process
    yield tmp_path
    get_settings.cache_clear()


def job(store: JobStore, texts: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    """A recorded job over ``texts`` and its eager follow-up items."""
    job_id = store.create_job("t", "papers", [(doc_id, schema.content_hash(text), text, {})
                                               for doc_id, text in texts.items()])
    return job_id, batch(store, job_id, texts)


def batch(store: JobStore, job_id: str, texts: dict[str, str]) -> list[dict[str, Any]]:
    """The eager follow-up items of one indexed batch of a job, one 400-character chunk after another."""
    sources = [Document(content=text, meta={schema.DOC_ID: doc_id, schema.CONTENT_HASH: schema.content_hash(text)})
               for doc_id, text in texts.items()]
    units = [Document(content=text[start:start + 400], meta={
        schema.DOC_ID: doc_id, schema.LEVEL: "chunk", schema.START: start, schema.END: min(start + 400, len(text))})
        for doc_id, text in texts.items() for start in range(0, len(text), 400)]
    store.kv_queued(job_id, list(texts))
    return follow_up_items(sources, units, eager=True)


def entry_times(data_dir: Path) -> dict[str, float]:
    return {f.name: f.stat().st_mtime for f in (data_dir / "kv" / "entries").glob("*/*.kv")}


def test_pre_compute_stays_within_budget_evicting_older_states_but_none_of_its_own(data_dir, xquad):
    contexts = [p["context"] for article in xquad["data"] for p in article["paragraphs"]]
    store = JobStore(f"sqlite:///{data_dir / 'jobs.db'}")
    earlier_id, earlier_items = job(store, {"old": contexts[0]})
    run_follow_up(store, earlier_id, "t", "papers", earlier_items)
    older = set(entry_times(data_dir))
    assert older

    time.sleep(0.05)
    job_id, items = job(store, {f"p{i}": contexts[i] for i in range(1, 9)})
    run_follow_up(store, job_id, "t", "papers", items)

    kv = store.job(job_id, "t")["kv"]
    now = entry_times(data_dir)
    own = set(now) - older
    assert LocalKVStore(data_dir / "kv").total_bytes() <= BUDGET
    assert kv["done"] >= 1 and kv["budget"] >= 1 and kv["queued"] == 0, kv
    assert kv["entries"] == len(own), "every state this job stored is still there: none evicted for a later one"
    assert not older & set(now), "the earlier job's states made room first"


def test_a_later_batch_of_a_job_that_filled_the_budget_computes_nothing(data_dir, xquad, monkeypatch):
    contexts = [p["context"] for article in xquad["data"] for p in article["paragraphs"]]
    store = JobStore(f"sqlite:///{data_dir / 'jobs.db'}")
    job_id, items = job(store, {f"p{i}": contexts[i] for i in range(8)})
    run_follow_up(store, job_id, "t", "papers", items)
    before = store.job(job_id, "t")["kv"]
    assert before["budget"] >= 1

    def encode(*_: Any, **__: Any) -> int:
        raise AssertionError("a document was encoded after its job's states filled the budget")

    monkeypatch.setattr(kv_context, "precompute_document_kv", encode)
    run_follow_up(store, job_id, "t", "papers", batch(store, job_id, {"late": contexts[8]}))
    after = store.job(job_id, "t")["kv"]
    assert (after["queued"], after["failed"], after["budget"]) == (0, 0, before["budget"] + 1), after
