"""Distributed ingestion: a real `ragpress worker` process over the local Redis does the ingestion work.

The server here does not consume the ingest queue, so a job can only finish if the worker process
converted, chunked and embedded its documents and handed the units to the server, which owns the index.
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from support import REPO, ServerProcess, models_dir, redis_available, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own, flushed before use

if not redis_available(REDIS_URL):
    pytest.skip("needs a Redis server at 127.0.0.1:6379 (start one with `redis-server --daemonize yes`)",
                allow_module_level=True)


@pytest.fixture
def distributed(tmp_path: Any) -> Any:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    env = {"REDIS_URL": REDIS_URL, "RAGPRESS_CONSUME_INGEST_QUEUE": "false"}
    server = ServerProcess(tmp_path / "home", env=env)
    worker_log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "ragpress", "worker", "--concurrency", "1"],
        env={**os.environ, "RAGPRESS_HOME": str(tmp_path / "home"), "RAGPRESS_MODELS_DIR": str(models_dir()),
             **env},
        stdout=worker_log.open("w"), stderr=subprocess.STDOUT, cwd=REPO,
    )
    try:
        server.wait_ready()
        yield server, worker, worker_log
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.stop()


def test_a_worker_process_over_redis_ingests_and_the_owner_indexes(distributed: Any,
                                                                   xquad: dict[str, Any]) -> None:
    server, worker, worker_log = distributed
    client = httpx.Client(base_url=server.url, timeout=120)
    paragraphs = xquad["data"][1]["paragraphs"]
    documents = [{"id": f"warsaw-{i}", "text": p["context"]} for i, p in enumerate(paragraphs)]
    job_id = client.post("/v1/collections/dist/documents", json={"documents": documents}).json()["job_id"]
    job = wait_for_job(client, job_id, timeout_s=240)
    assert job["status"] == "succeeded", worker_log.read_text()[-2000:]
    assert job["done"] == len(documents)
    assert worker.poll() is None, "the worker process should still be running"
    assert "ragpress.workers.tasks.ingest_batch" in worker_log.read_text()
    question = paragraphs[0]["qas"][0]["question"]
    body = client.post("/v1/collections/dist/query", json={"query": question, "generate": False}).json()
    assert body["documents"][0]["doc_id"] == "warsaw-0"
