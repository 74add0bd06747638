"""Eager and lazy KV pre-compute through a real `ragpress serve` (its embedded Celery worker does the work).

Entries are counted as files in the server's local KV store; the follow-up task's progress is read from
the job (``kv`` counts), so the tests wait for it instead of sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerProcess, serving, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[ServerProcess]:
    # The default models only: a tenant's pipeline may name gemma-3-270m (a bundled generator) though this
    # operator has not fetched it, which is how a pre-compute fails for one pipeline and not the others.
    fetched = tmp_path_factory.mktemp("kv-models")
    for name in ("all-MiniLM-L6-v2", "SmolLM2-135M-Instruct"):
        (fetched / name).symlink_to(models_dir / name)
    yield from serving(tmp_path_factory.mktemp("kv-home"), env={"RAGPRESS_MODELS_DIR": str(fetched),
                                                                 "RAGPRESS_KV_PRECOMPUTE": "eager"})


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=300)


@pytest.fixture(scope="module")
def paragraphs(xquad: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for article in xquad["data"] for p in article["paragraphs"]]


def entries(server: ServerProcess) -> set[str]:
    return {f.name for f in (server.home / "data" / "kv" / "entries").glob("*/*.kv")}


def ingest(client: httpx.Client, collection: str, documents: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    """Ingest and wait until both the indexing and its KV follow-up have finished."""
    response = client.post(f"/v1/collections/{collection}/documents", json={"documents": documents, **body})
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    job = wait_for_job(client, job_id)
    assert job["status"] == "succeeded", job
    deadline = time.monotonic() + 300
    while job["kv"]["queued"] and time.monotonic() < deadline:
        time.sleep(0.3)
        job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["kv"]["queued"] == 0, job
    return job


def kv_query(client: httpx.Client, collection: str, question: str) -> dict[str, Any]:
    response = client.post(f"/v1/collections/{collection}/query",
                           json={"query": question, "pipeline": "kv", "top_k": 2})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_collection_option_is_validated_and_shown(client: httpx.Client) -> None:
    assert client.put("/v1/collections/opts", json={"kv_precompute": "sometimes"}).status_code == 422
    created = client.put("/v1/collections/opts", json={"kv_precompute": "lazy"})
    assert created.status_code == 200 and created.json()["kv_precompute"] == "lazy"
    assert client.put("/v1/collections/opts", json={}).json()["kv_precompute"] == "eager"  # the server default
    listed = {c["name"]: c for c in client.get("/v1/collections").json()["collections"]}
    assert listed["opts"]["kv_precompute"] == "eager"


def test_eager_states_are_stored_at_ingestion_and_used_by_the_first_query(
        server: ServerProcess, client: httpx.Client, paragraphs: list[dict[str, Any]]) -> None:
    paragraph = paragraphs[0]
    before = entries(server)
    job = ingest(client, "eager", [{"id": "p0", "text": paragraph["context"]}], kv_precompute="eager")
    stored = entries(server) - before
    assert job["kv"]["done"] == 1 and job["kv"]["entries"] == len(stored) > 0 and job["warnings"] == []
    assert client.get("/v1/collections/eager").json()["kv_precompute"] == "eager"
    body = kv_query(client, "eager", paragraph["qas"][0]["question"])
    assert body["answer"]
    assert entries(server) - before == stored  # every chunk's states were found: nothing encoded at query time


def test_lazy_states_appear_only_at_the_first_query(server: ServerProcess, client: httpx.Client,
                                                    paragraphs: list[dict[str, Any]]) -> None:
    paragraph = paragraphs[1]
    client.put("/v1/collections/lazy", json={"kv_precompute": "lazy"})
    before = entries(server)
    job = ingest(client, "lazy", [{"id": "p1", "text": paragraph["context"]}])
    assert job["kv"]["lazy"] == 1 and job["kv"]["entries"] == 0
    assert entries(server) == before
    kv_query(client, "lazy", paragraph["qas"][0]["question"])
    assert entries(server) - before  # encoded on first use, and kept


def test_replacing_or_deleting_a_document_frees_its_states(server: ServerProcess, client: httpx.Client,
                                                           paragraphs: list[dict[str, Any]]) -> None:
    client.put("/v1/collections/churn", json={"kv_precompute": "eager"})
    base = entries(server)
    ingest(client, "churn", [{"id": "doc", "text": paragraphs[2]["context"]}])
    first = entries(server) - base
    assert first
    ingest(client, "churn", [{"id": "doc", "text": paragraphs[3]["context"]}])  # new content for the same id
    second = entries(server) - base
    assert second and not second & first  # the old version's states are gone, the new one's are there
    assert client.delete("/v1/collections/churn/documents/doc").status_code == 200
    assert entries(server) == base


def test_a_kv_failure_is_a_warning_never_a_failed_document(server: ServerProcess, client: httpx.Client,
                                                           paragraphs: list[dict[str, Any]]) -> None:
    kv_yaml = client.get("/v1/pipelines/kv").json()["yaml"]
    broken = kv_yaml.replace("model: SmolLM2-135M-Instruct", "model: gemma-3-270m")
    assert client.put("/v1/pipelines/kvbroken", content=broken,
                      headers={"content-type": "application/yaml"}).status_code in (200, 201)
    try:
        before = entries(server)
        job = ingest(client, "warned", [{"id": "p4", "text": paragraphs[4]["context"]}], kv_precompute="eager")
        assert job["done"] == 1 and job["failed"] == 0
        assert job["kv"]["failed"] == 1 and "gemma-3-270m" in job["warnings"][0]["warning"]
        assert job["kv"]["entries"] == len(entries(server) - before) > 0  # the working pipeline's states exist
        hits = client.post("/v1/collections/warned/query", json={"query": "anything", "generate": False}).json()
        assert hits["documents"]  # searchable all the same
    finally:
        client.delete("/v1/pipelines/kvbroken")
