"""The default pipeline's stages failing through a real `ragpress serve`, as a user meets them.

An operator who fetched the embedder but not the generator: documents are indexed and searchable, a query that
asks for an answer is refused with the command that fixes it, and one that asks for passages only is answered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from support import ServerProcess, serving, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TEXT = ("# Millau Viaduct\n\nThe Millau Viaduct is a cable-stayed bridge in southern France. "
        "It was opened to traffic on 16 December 2004.")


@pytest.fixture(scope="module")
def fetched(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Path:
    """The operator's model folder: the embedder only, to begin with."""
    folder = tmp_path_factory.mktemp("embedder-only")
    (folder / "all-MiniLM-L6-v2").symlink_to(models_dir / "all-MiniLM-L6-v2")
    return folder


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, fetched: Path) -> Iterator[httpx.Client]:
    server: ServerProcess
    for server in serving(tmp_path_factory.mktemp("failures-home"), env={"RAGPRESS_MODELS_DIR": str(fetched),
                                                                                 "RAGPRESS_KV_PRECOMPUTE": "eager"}):
        with httpx.Client(base_url=server.url, timeout=300) as http:
            yield http


@pytest.fixture(scope="module")
def indexed(client: httpx.Client) -> dict:
    response = client.post("/v1/collections/bridges/documents", json={"documents": [{"id": "millau", "text": TEXT}]})
    assert response.status_code == 202, response.text
    job = wait_for_job(client, response.json()["job_id"])
    deadline = time.monotonic() + 120
    while job["kv"]["queued"] and time.monotonic() < deadline:  # the states' follow-up runs after indexing
        time.sleep(0.2)
        job = client.get(f"/v1/jobs/{job['job_id']}").json()
    return job


def test_while_the_generator_is_missing_passages_only_queries_still_retrieve_and_prune(
        client: httpx.Client, indexed: dict) -> None:
    response = client.post("/v1/collections/bridges/query",
                           json={"query": "When did the Millau Viaduct open?", "generate": False})
    assert response.status_code == 200, response.text
    passages = response.json()["documents"]
    assert passages and passages[0]["doc_id"] == "millau"
    assert "16 December 2004" in passages[0]["pruned_text"], "the pruner ran and kept the answer"


def test_a_missing_generator_is_named_with_the_command_that_fetches_it_and_works_once_fetched(
        client: httpx.Client, indexed: dict, fetched: Path, models_dir: Path) -> None:
    assert indexed["status"] == "succeeded" and indexed["done"] == 1
    assert indexed["kv"]["failed"] == 1, "the states could not be computed: a warning on the job, not a failure"
    response = client.post("/v1/collections/bridges/query", json={"query": "When did the Millau Viaduct open?"})
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and "ragpress models fetch SmolLM2-135M-Instruct" in error["message"]

    (fetched / "SmolLM2-135M-Instruct").symlink_to(models_dir / "SmolLM2-135M-Instruct")  # what the command does
    answered = client.post("/v1/collections/bridges/query", json={"query": "When did the Millau Viaduct open?"})
    assert answered.status_code == 200 and answered.json()["answer"], "no restart needed"
