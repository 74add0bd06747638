"""A `ragpress serve` killed with SIGKILL mid-job finishes the job at its next start, and no document ends up
with two versions in the index.

The embedded default keeps its task queue in memory, so the kill loses every queued task; the job store keeps
the documents. At start the server reconciles the documents its workers held (the index keeps the registered
version only) and sends the unfinished documents again.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from haystack import Document
from support import ServerProcess, wait_for_job

from ragpress.base import schema
from ragpress.base.document_stores import scope_filters, shared_store
from ragpress.base.settings import get_settings
from ragpress.indexers.chunk_writer import ChunkWriter
from ragpress.pipelines.loader import builtin_yaml, load_pipeline
from ragpress.workers import runtime
from ragpress.workers.ingestion import process_batch
from ragpress.workers.job_store import JobStore
from ragpress.workers.recovery import recover_interrupted_jobs

DOCUMENTS = 200
COLLECTION = "notes"


def _text(i: int, version: int) -> str:
    if version == 1:
        return f"Note {i} describes the mill of village {i}. It was written for the first edition."
    return (f"Note {i} describes the mill of village {i} again. The second edition rewrote it from the start. "
            f"It adds that the mill of village {i} ground wheat and barley for the valley until the floods came. "
            f"The wheel was rebuilt twice, and the miller kept a ledger of every sack that crossed the bridge.")


def _documents(version: int) -> list[dict[str, Any]]:
    return [{"id": f"note-{i}", "text": _text(i, version)} for i in range(DOCUMENTS)]


def _hashes(version: int) -> list[str]:
    return [schema.content_hash(_text(i, version)) for i in range(DOCUMENTS)]


def _client(server: ServerProcess) -> httpx.Client:
    server.wait_ready()
    return httpx.Client(base_url=server.url, timeout=120)


def _kill_mid_job(server: ServerProcess, client: httpx.Client, job_id: str) -> None:
    """SIGKILL the server once some but not all of the job's documents are indexed."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert job["done"] < job["total"], "the job finished before the kill"
        if job["done"] > 0:
            break
        time.sleep(0.02)
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()


def _left_unfinished(home: Path, job_id: str) -> dict[str, Any]:
    """The job as the killed server left it in its job store."""
    store = JobStore(f"sqlite:///{home / 'data' / 'ragpress.db'}")
    try:
        return store.job(job_id, schema.DEFAULT_TENANT) or {}
    finally:
        store.engine.dispose()


def _found_by_hash(client: httpx.Client, hashes: list[str]) -> list[dict[str, Any]]:
    """Passages of the collection whose document content hash is one of ``hashes``."""
    body = {"query": "the mill of the village", "generate": False, "top_k": 100,
            "filters": {"field": f"meta.{schema.CONTENT_HASH}", "operator": "in", "value": hashes}}
    response = client.post(f"/v1/collections/{COLLECTION}/query", json=body)
    assert response.status_code == 200, response.text
    return response.json()["documents"]


def _assert_each_document_indexed_once(client: httpx.Client) -> None:
    collection = client.get(f"/v1/collections/{COLLECTION}").json()
    assert collection["documents"] == DOCUMENTS
    # the registry counts each document's units of its recorded version; the index holds exactly those
    assert collection["indexed_units"] == collection["units"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_job_killed_mid_way_finishes_after_restart_with_each_document_indexed_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home)
    try:
        client = _client(server)
        job_id = client.post(f"/v1/collections/{COLLECTION}/documents",
                             json={"documents": _documents(1)}).json()["job_id"]
        _kill_mid_job(server, client, job_id)
        partway = _left_unfinished(home, job_id)
        assert partway["status"] == "running" and 0 < partway["done"] < DOCUMENTS

        server = ServerProcess(home)  # the same RAGPRESS_HOME: its job store and index
        client = _client(server)
        job = wait_for_job(client, job_id, timeout_s=300)
        assert job["status"] == "succeeded" and job["done"] == DOCUMENTS and job["failed"] == 0
        _assert_each_document_indexed_once(client)
    finally:
        server.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_a_replace_killed_mid_way_leaves_each_document_with_one_version(tmp_path: Path) -> None:
    home = tmp_path / "home"
    server = ServerProcess(home)
    try:
        client = _client(server)
        first = client.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": _documents(1)}).json()
        assert wait_for_job(client, first["job_id"])["status"] == "succeeded"
        job_id = client.post(f"/v1/collections/{COLLECTION}/documents",
                             json={"documents": _documents(2)}).json()["job_id"]
        _kill_mid_job(server, client, job_id)
        assert 0 < _left_unfinished(home, job_id)["done"] < DOCUMENTS

        server = ServerProcess(home)  # the same RAGPRESS_HOME: its job store and index
        client = _client(server)
        job = wait_for_job(client, job_id, timeout_s=300)
        assert job["status"] == "succeeded" and job["done"] == DOCUMENTS
        _assert_each_document_indexed_once(client)
        assert _found_by_hash(client, _hashes(1)) == []  # not one unit of the replaced version is left
        assert _found_by_hash(client, _hashes(2))  # the filter does find the version that replaced it
    finally:
        server.stop()


@pytest.mark.integration
def test_recovery_keeps_the_registered_version_of_a_document_cut_between_write_and_retire() -> None:
    """In-process, the exact moment a kill can land in a replace: the new units are written, the old ones not yet
    retired, the document still running. Recovery leaves the registered version only; the re-run then replaces it."""
    runtime.declare_index_owner(True)
    store, pipeline, collection = runtime.job_store(), load_pipeline(builtin_yaml("ingestion")), "cut"
    pipeline.warm_up()
    old, new = _text(0, 1), _text(0, 2)
    first = store.create_job(schema.DEFAULT_TENANT, collection, [("note-0", schema.content_hash(old), old, {})])
    process_batch(store, pipeline, first, store.pending_seqs(first), owns_index=True)
    replace = store.create_job(schema.DEFAULT_TENANT, collection, [("note-0", schema.content_hash(new), new, {})])

    def write_then_die(job_id: str, units: list[dict[str, Any]], done: dict[int, int]) -> None:
        ChunkWriter(replace_previous_versions=False).run(documents=[Document.from_dict(u) for u in units])

    process_batch(store, pipeline, replace, store.pending_seqs(replace), owns_index=False, hand_off=write_then_die)
    assert _hashes_in_index(collection) == {schema.content_hash(old), schema.content_hash(new)}
    assert (store.job(replace, schema.DEFAULT_TENANT) or {})["status"] == "running"

    assert recover_interrupted_jobs(get_settings()) >= 1
    assert _hashes_in_index(collection) == {schema.content_hash(old)}
    process_batch(store, pipeline, replace, [0], owns_index=True)  # what the task sent again does
    assert (store.job(replace, schema.DEFAULT_TENANT) or {})["status"] == "succeeded"
    assert _hashes_in_index(collection) == {schema.content_hash(new)}


def _hashes_in_index(collection: str) -> set[str]:
    units = shared_store().filter_documents(scope_filters(schema.DEFAULT_TENANT, collection))
    return {u.meta[schema.CONTENT_HASH] for u in units}
