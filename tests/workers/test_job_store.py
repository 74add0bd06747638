"""The job store's contract, run against SQLite (embedded default) and PostgreSQL (distributed mode)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import postgres_database

from ragpress.base.schema import content_hash
from ragpress.workers.job_store import JobStore, jobs

pytestmark = pytest.mark.integration

@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    if request.param == "sqlite":
        yield JobStore(f"sqlite:///{tmp_path / 'jobs.db'}")
        return
    for url in postgres_database():
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


def _indexed(store: JobStore, doc_id: str, text: str, units: int = 2, meta: dict[str, str] | None = None) -> None:
    job_id = store.create_job("t", "c", [(doc_id, content_hash(text), text, meta or {})])
    store.claim(job_id, [0])
    store.finish_document(job_id, 0, "t", "c", units=units)


def test_files_refused_before_indexing_are_failed_documents_of_their_job(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("good.txt", "fine text")],
                              failed=[("bad.pdf", "bad.pdf: not a readable PDF (EOF).", {"filename": "bad.pdf"})])
    job = store.job(job_id, "t")
    assert job["total"] == 2 and store.pending_seqs(job_id) == [0]
    assert job["errors"] == [{"doc_id": "bad.pdf", "error": "bad.pdf: not a readable PDF (EOF)."}]
    (pending,) = store.claim(job_id, [0])
    store.finish_document(job_id, pending.seq, "t", "c", units=1)
    assert store.job(job_id, "t")["status"] == "partial"
    failed = store.document_state("t", "c", "bad.pdf")
    assert failed is not None and failed["status"] == "failed" and failed["error"].startswith("bad.pdf: not")
    assert failed["units"] == 0 and failed["content_hash"] is None and failed["meta"] == {"filename": "bad.pdf"}


def test_documents_are_listed_by_id_a_page_at_a_time_with_their_state(store: JobStore) -> None:
    for name in ("d", "a", "b/x"):
        _indexed(store, name, f"text of {name}", units=3, meta={"n": name})
    store.create_job("t", "c", [_doc("c", "still queued")])
    failing = store.create_job("t", "c", [_doc("e", "will fail")])
    store.claim(failing, [0])
    store.fail_document(failing, 0, "e: no text after conversion.")
    _indexed(store, "elsewhere", "more text")
    store.create_job("t", "other", [_doc("z", "another collection")])

    first, more = store.document_page("t", "c", limit=3)
    assert [d["id"] for d in first] == ["a", "b/x", "c"] and more
    second, more = store.document_page("t", "c", limit=3, after="c")
    assert [d["id"] for d in second] == ["d", "e", "elsewhere"] and not more
    states = {d["id"]: d for d in first + second}
    assert states["a"]["status"] == "indexed" and states["a"]["units"] == 3 and states["a"]["meta"] == {"n": "a"}
    assert states["a"]["content_hash"] == content_hash("text of a")
    assert states["c"]["status"] == "queued" and states["c"]["units"] == 0
    assert states["e"]["status"] == "failed" and states["e"]["error"] == "e: no text after conversion."
    assert "error" not in states["a"]
    assert store.document_page("someone-else", "c", limit=10) == ([], False)


def test_a_failed_replacement_shows_failed_while_the_old_version_stays_indexed_until_one_succeeds(
    store: JobStore,
) -> None:
    _indexed(store, "a", "version one", units=4)
    job_id = store.create_job("t", "c", [_doc("a", "version two")])
    store.claim(job_id, [0])
    store.fail_document(job_id, 0, "a: broken")
    state = store.document_state("t", "c", "a")
    assert state is not None and (state["status"], state["units"], state["error"]) == ("failed", 4, "a: broken")
    assert state["content_hash"] == content_hash("version one")  # what the index holds
    store.create_job("t", "c", [_doc("a", "version one")])  # sent again unchanged: its indexed version is current
    assert store.document_state("t", "c", "a")["status"] == "indexed"


def test_removing_documents_forgets_them_whatever_their_state(store: JobStore) -> None:
    _indexed(store, "indexed", "indexed text")
    queued_job = store.create_job("t", "c", [_doc("queued", "queued text"), _doc("kept", "kept text")])
    store.create_job("t", "c", [], failed=[("failed", "failed: unreadable", {})])
    known = store.remove_documents("t", "c", ["indexed", "queued", "failed", "never-there"])
    assert known == {"indexed", "queued", "failed"}
    assert [d["id"] for d in store.document_page("t", "c", limit=10)[0]] == ["kept"]
    assert store.pending_seqs(queued_job) == [1]  # its queued copy will not index it again
    assert store.remove_documents("other-tenant", "c", ["kept"]) == set()


def test_a_job_is_found_by_a_unique_prefix_of_its_id_within_its_tenant(store: JobStore) -> None:
    job_id = store.create_job("t", "c", [_doc("a", "alpha")])
    assert store.job_ids_with_prefix("t", job_id[:8]) == [job_id]
    assert store.job_ids_with_prefix("t", job_id) == [job_id]
    assert store.job_ids_with_prefix("someone-else", job_id[:8]) == []
    assert store.job_ids_with_prefix("t", "%") == [] and store.job_ids_with_prefix("t", "________") == []
    with store.engine.begin() as conn:  # two ids sharing a prefix, as uuids rarely but possibly do
        conn.execute(jobs.insert(), [{"id": f"abcdef01-{n}", "tenant": "t", "collection": "c", "cancelled": False,
                                      "created_at": datetime.now(UTC)} for n in (1, 2)])
    assert store.job_ids_with_prefix("t", "abcdef01") == ["abcdef01-1", "abcdef01-2"]


def test_deleting_a_collection_cancels_its_jobs_and_drops_its_rows(store: JobStore) -> None:
    _indexed(store, "a", "alpha")
    job_id = store.create_job("t", "c", [_doc("b", "beta"), _doc("c", "gamma")])
    store.claim(job_id, [0])
    store.set_collection_options("t", "c", "eager")
    store.cancel_collection_jobs("t", "c")
    assert store.claim(job_id, [1]) == []  # nothing queued is handed out any more
    assert store.running_documents("t", "c") == 1  # what a worker already holds finishes
    assert store.drop_collection("t", "c") == ["a"]
    assert store.collection("t", "c") is None and store.collection_options("t", "c") == {}
    assert store.document_state("t", "c", "a") is None
    assert store.job(job_id, "t")["status"] == "cancelled"
