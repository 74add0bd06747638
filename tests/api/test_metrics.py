"""/metrics of a real `ragpress serve`, as an operator's dashboard reads it: KV cache hits and misses as the KV
pipeline really meets them, the bytes the KV store holds, query metrics by pipeline, and ingestion jobs' durations
and document failures by reason class."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from support import ServerProcess, serving, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCUMENTS = [
    {"id": "millau", "text": "The Millau Viaduct is a cable-stayed bridge in southern France. It was opened to "
                             "traffic in December 2004. Its tallest mast rises 343 metres above the base."},
    {"id": "saturn", "text": "Saturn is the sixth planet from the Sun. It has a prominent ring system made mostly "
                             "of ice particles and 146 known moons."},
    # nothing but a script: no text after conversion, so the document fails and its job ends partial
    {"id": "blank", "text": "<script>render()</script>", "meta": {"content_type": "text/html"}},
]
QUESTION = "When was the Millau Viaduct opened?"
LOOKUPS = "ragpress_kv_cache_lookups_total"
KV_BUDGET = 1_000_000_000
FP16_BYTES_PER_TOKEN = 30 * 3 * 64 * 2 * 2  # SmolLM2-135M: layers x KV heads x head dim x (keys, values) x 2 bytes
REASON_CLASSES = {"conversion", "processing", "index_write", "transient", "task"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serving(tmp_path_factory.mktemp("metrics-home"), env={"RAGPRESS_KV_MAX_BYTES": str(KV_BUDGET)})


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def ingested(client: httpx.Client) -> dict[str, Any]:
    # lazy: a passage's KV states are computed on the first query that meets it, not at ingestion
    response = client.post("/v1/collections/landmarks/documents",
                           json={"documents": DOCUMENTS, "kv_precompute": "lazy"})
    assert response.status_code == 202
    return wait_for_job(client, response.json()["job_id"])


def scrape(client: httpx.Client) -> list[Sample]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return [sample for family in text_string_to_metric_families(response.text) for sample in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(s.value for s in samples if s.name == name and labels.items() <= s.labels.items())


def eventually(client: httpx.Client, name: str, at_least: float, timeout_s: float = 30, **labels: str) -> float:
    """The metric once it reaches ``at_least``: a worker records a job's end just after the job reads finished."""
    deadline = time.monotonic() + timeout_s
    while (found := value(scrape(client), name, **labels)) < at_least and time.monotonic() < deadline:
        time.sleep(0.2)
    return found


def test_a_finished_job_records_its_duration_and_its_failed_document_by_reason_class(
    client: httpx.Client, ingested: dict[str, Any]
) -> None:
    assert ingested["status"] == "partial" and ingested["failed"] == 1
    assert eventually(client, "ragpress_ingestion_job_seconds_count", 1, status="partial") == 1
    samples = scrape(client)
    assert value(samples, "ragpress_ingestion_job_seconds_sum", status="partial") > 0
    assert value(samples, "ragpress_ingestion_document_failures_total", reason="conversion") == 1
    # a failure is counted by its class, never by its message (which names the document)
    reasons = {s.labels["reason"] for s in samples if s.name == "ragpress_ingestion_document_failures_total"}
    assert reasons <= REASON_CLASSES


def test_kv_cache_hits_rise_when_the_kv_pipeline_meets_states_it_stored_before(
    client: httpx.Client, ingested: dict[str, Any]
) -> None:
    before = scrape(client)
    answers = [client.post("/v1/collections/landmarks/query", json={"query": QUESTION, "pipeline": "kv"}).json()
               for _ in range(2)]
    first, second = (a["kv_cache"] for a in answers)
    assert first["hits"] == 0 and first["misses"] > 0  # met for the first time: encoded, then stored
    assert (second["hits"], second["misses"]) == (first["misses"], 0)  # the same passages, found in the store
    after = scrape(client)
    gained = {result: value(after, LOOKUPS, pipeline="kv", result=result)
              - value(before, LOOKUPS, pipeline="kv", result=result) for result in ("hit", "miss")}
    assert gained == {"hit": first["hits"] + second["hits"], "miss": first["misses"]}
    assert 0 < value(after, "ragpress_kv_store_bytes") <= value(after, "ragpress_kv_store_budget_bytes") == KV_BUDGET
    evictions = [s.value for s in after if s.name == "ragpress_kv_store_evictions_total"]
    assert evictions == [0], "exported, and nothing evicted under a 1 GB budget"
    read = {name: value(after, name, pipeline="kv") - value(before, name, pipeline="kv")
            for name in ("ragpress_kv_loaded_bytes_total", "ragpress_kv_loaded_tokens_total")}
    assert read == {"ragpress_kv_loaded_bytes_total": sum(a["stored_bytes"] for a in (first, second)),
                    "ragpress_kv_loaded_tokens_total": sum(a["tokens"] for a in (first, second))}
    # the kv pipeline's default (int4) states: at most a third of fp16's bytes per token, scales included
    per_token = read["ragpress_kv_loaded_bytes_total"] / read["ragpress_kv_loaded_tokens_total"]
    assert 0 < per_token <= FP16_BYTES_PER_TOKEN / 3
    assert value(after, "ragpress_queries_total", pipeline="kv") - value(before, "ragpress_queries_total",
                                                                         pipeline="kv") == 2


def test_query_metrics_carry_the_pipeline_that_answered(client: httpx.Client, ingested: dict[str, Any]) -> None:
    before = scrape(client)
    found = client.post("/v1/collections/landmarks/query", json={"query": QUESTION, "generate": False})
    assert found.status_code == 200 and "kv_cache" not in found.json()
    after = scrape(client)
    assert value(after, "ragpress_queries_total", pipeline="query") - value(
        before, "ragpress_queries_total", pipeline="query") == 1
    stages = {s.labels["stage"] for s in after if s.name == "ragpress_stage_seconds_count"
              and s.labels["pipeline"] == "query"}
    assert {"retrieve", "total"} <= stages
    assert value(after, "ragpress_context_tokens_total", pipeline="query") > 0
    # only a KV-cache generator looks states up: no lookups are reported for the plain query pipeline
    assert not [s for s in after if s.name == LOOKUPS and s.labels["pipeline"] == "query"]


def test_a_tenants_own_pipeline_is_counted_as_custom_never_by_its_name(client: httpx.Client,
                                                                       ingested: dict[str, Any]) -> None:
    # /metrics is read without a key: the names tenants give their pipelines must not show there
    saved = client.put("/v1/pipelines/acme-merger-plan", content=client.get("/v1/pipelines/query").json()["yaml"],
                       headers={"content-type": "application/yaml"})
    assert saved.status_code == 200, saved.text
    before = scrape(client)
    found = client.post("/v1/collections/landmarks/query",
                        json={"query": QUESTION, "generate": False, "pipeline": "acme-merger-plan"})
    assert found.status_code == 200
    after = scrape(client)
    assert value(after, "ragpress_queries_total", pipeline="custom") - value(
        before, "ragpress_queries_total", pipeline="custom") == 1
    assert "acme-merger-plan" not in client.get("/metrics").text
