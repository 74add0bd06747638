"""A worker killed with SIGKILL in the middle of a job loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import REPO, ServerProcess, models_dir, redis_available, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REDIS_URL = "redis://127.0.0.1:6379/14"

if not redis_available(REDIS_URL):
    pytest.skip("needs a Redis server at 127.0.0.1:6379 (start one with `redis-server --daemonize yes`)",
                allow_module_level=True)


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ragpress", "worker", "--concurrency", "1"],
                            env={**os.environ, **env}, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)


def test_a_job_survives_its_worker_being_killed(tmp_path: Path, xquad: dict[str, Any]) -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    home = tmp_path / "home"
    env = {"REDIS_URL": REDIS_URL, "RAGPRESS_CONSUME_INGEST_QUEUE": "false", "RAGPRESS_INGEST_BATCH_SIZE": "2",
           "RAGPRESS_TASK_VISIBILITY_TIMEOUT_S": "8", "RAGPRESS_HOME": str(home),
           "RAGPRESS_MODELS_DIR": str(models_dir())}
    server = ServerProcess(home, env=env)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        server.wait_ready()
        client = httpx.Client(base_url=server.url, timeout=60)
        paragraphs = [p["context"] for a in xquad["data"] for p in a["paragraphs"]]
        documents = [{"id": f"p{i}-{k}", "text": f"Copy {k}. {text}"} for k in range(2)
                     for i, text in enumerate(paragraphs)]
        job_id = client.post("/v1/collections/crash/documents", json={"documents": documents}).json()["job_id"]
        workers.append(_start_worker(env, tmp_path / "worker1.log"))
        deadline = time.monotonic() + 180
        while client.get(f"/v1/jobs/{job_id}").json()["done"] < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait()
        partway = client.get(f"/v1/jobs/{job_id}").json()
        assert partway["status"] == "running" and 0 < partway["done"] < len(documents)
        workers.append(_start_worker(env, tmp_path / "worker2.log"))
        job = wait_for_job(client, job_id, timeout_s=300)
        assert job["status"] == "succeeded" and job["done"] == len(documents) and job["failed"] == 0
        collection = client.get("/v1/collections/crash").json()
        assert collection["documents"] == len(documents)
        assert collection["indexed_units"] == collection["units"]  # every unit exactly once in the index
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()
                worker.wait(timeout=20)
        server.stop()
