"""Back-pressure: per-key rate limits answer 429 and a full query queue 503, both with Retry-After."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from support import ServerProcess, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def server(tmp_path: Any) -> Any:
    proc = ServerProcess(tmp_path / "home", env={"RAGPRESS_RATE_LIMIT_PER_MINUTE": "30",
                                                 "RAGPRESS_MAX_CONCURRENT_QUERIES": "1",
                                                 "RAGPRESS_MAX_QUEUED_QUERIES": "0"})
    proc.wait_ready()
    yield proc
    proc.stop()


def test_a_full_queue_answers_503_and_a_busy_key_429(server: Any) -> None:
    http = httpx.Client(base_url=server.url, timeout=120)
    wait_for_job(http, http.post("/v1/collections/c/documents", json={"documents": [
        {"text": "The museum opens at nine in the morning."}]}).json()["job_id"])
    body = {"query": "When does the museum open?", "top_k": 1}
    with ThreadPoolExecutor(4) as pool:
        statuses = [r.status_code for r in pool.map(lambda _: http.post("/v1/collections/c/query", json=body),
                                                    range(4))]
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1 and set(statuses) <= {200, 503}
    responses = [http.get("/v1/collections") for _ in range(40)]
    limited = [r for r in responses if r.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"
