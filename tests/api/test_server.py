"""The REST contract against a real `ragpress serve` subprocess (embedded mode: in-process workers)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import ServerProcess, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    proc = ServerProcess(tmp_path_factory.mktemp("server-home"), env={"RAGPRESS_MAX_DOCUMENT_BYTES": "2000000"})
    proc.wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=300)


@pytest.fixture(scope="module")
def indexed(client: httpx.Client, xquad: dict[str, Any]) -> dict[str, Any]:
    paragraphs = [(f"{a['title']}-{i}", p) for a in xquad["data"] for i, p in enumerate(a["paragraphs"])]
    documents = [{"id": doc_id, "text": p["context"], "meta": {"title": doc_id.rsplit("-", 1)[0]}}
                 for doc_id, p in paragraphs]
    response = client.post("/v1/collections/xquad/documents", json={"documents": documents})
    assert response.status_code == 202
    job = wait_for_job(client, response.json()["job_id"])
    return {"job": job, "paragraphs": paragraphs}


def test_an_ingestion_job_indexes_every_document_and_succeeds(indexed: dict[str, Any]) -> None:
    job = indexed["job"]
    assert job["status"] == "succeeded"
    assert job["total"] == job["done"] == len(indexed["paragraphs"])
    assert job["failed"] == 0 and job["errors"] == []


def test_the_passage_holding_the_answer_comes_back_first(client: httpx.Client, indexed: dict[str, Any]) -> None:
    hits = 0
    questions = [(doc_id, qa) for doc_id, p in indexed["paragraphs"] for qa in p["qas"][:1]]
    for doc_id, qa in questions:
        body = client.post("/v1/collections/xquad/query",
                           json={"query": qa["question"], "generate": False, "top_k": 5}).json()
        hits += body["documents"][0]["doc_id"] == doc_id
    assert hits / len(questions) >= 0.8, f"gold passage first for only {hits}/{len(questions)} questions"


def test_a_query_answers_from_the_retrieved_passages(client: httpx.Client, indexed: dict[str, Any]) -> None:
    body = client.post("/v1/collections/xquad/query",
                       json={"query": "Who won the Ekstraklasa Championship in 2000?", "top_k": 2}).json()
    assert "Polonia" in body["answer"]
    assert body["abstained"] is False
    first = body["documents"][0]
    assert {"id", "doc_id", "text", "score"} <= first.keys()
    assert body["usage"]["context_tokens"] > 0
    assert {"retrieve", "rerank", "prune", "ttft", "total"} <= body["timings_ms"].keys()


@pytest.mark.parametrize(("body", "message"), [
    ({"params": {"rerankr": {"top_k": 3}}}, "no component 'rerankr'; its components are embedder, retriever"),
    ({"params": {"generator": {"max_tokens": 8}}}, "params.generator.max_tokens: 'generator' takes no such input"),
    ({"params": {"retriever": {"scope": {}}}}, "params.retriever.scope is set by the server"),
    ({"params": {"generator": {"max_new_tokens": -5}}}, "params.generator: max_new_tokens must be at least 1"),
    ({"params": {"generator": {"max_new_tokens": 5000}}}, "params.generator.max_new_tokens: 5000 is above this "
                                                          "server's limit of 1024"),
    ({"params": {"retriever": {"top_k": 10_000}}}, "params.retriever.top_k: 10000 is above this server's limit"),
    ({"top_k": 500}, "top_k: 500 is above this server's limit of 100"),
    ({"filters": {"operator": "==", "value": "x"}}, "filters: "),
])
def test_a_query_the_pipeline_cannot_run_as_asked_gets_a_422_saying_what_to_fix(
    client: httpx.Client, indexed: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    response = client.post("/v1/collections/xquad/query", json={"query": "Who won in 2000?", **body})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert message in response.json()["error"]["message"]


def test_a_streamed_query_reports_the_callers_mistake_as_such(client: httpx.Client, indexed: dict[str, Any]) -> None:
    # params and filter syntax are checked before the stream starts; a well-formed filter the index cannot
    # evaluate (Qdrant has no "equals null") shows up only while retrieving
    for body in ({"params": {"generator": {"max_tokens": 8}}}, {"filters": {"operator": "==", "value": "x"}}):
        refused = client.post("/v1/collections/xquad/query", json={"query": "Who won in 2000?", "stream": True, **body})
        assert refused.status_code == 422
    with client.stream("POST", "/v1/collections/xquad/query", json={
            "query": "Who won in 2000?", "stream": True,
            "filters": {"field": "meta.title", "operator": "==", "value": None}}) as resp:
        text = "".join(resp.iter_text())
    assert "event: error" in text and '"code": "invalid_request"' in text and "filters: " in text


def test_a_retrieval_only_query_ignores_params_for_the_stages_it_skips(
    client: httpx.Client, indexed: dict[str, Any]
) -> None:
    body = client.post("/v1/collections/xquad/query", json={
        "query": "Who won in 2000?", "generate": False, "params": {"generator": {"max_new_tokens": 8}}}).json()
    assert body["documents"] and "answer" not in body


def test_streaming_sends_tokens_then_the_result(client: httpx.Client, indexed: dict[str, Any]) -> None:
    events: list[str] = []
    with client.stream("POST", "/v1/collections/xquad/query",
                       json={"query": "What is the Saxon Garden in Polish?", "top_k": 1, "stream": True}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [line.split(": ", 1)[1] for line in resp.iter_lines() if line.startswith("event: ")]
    assert events[0] == "token" and events[-2:] == ["result", "done"]


def test_resending_identical_content_is_a_no_op(client: httpx.Client, indexed: dict[str, Any]) -> None:
    before = client.get("/v1/collections/xquad").json()
    doc_id, paragraph = indexed["paragraphs"][0]
    job_id = client.post("/v1/collections/xquad/documents",
                         json={"documents": [{"id": doc_id, "text": paragraph["context"]}]}).json()["job_id"]
    job = wait_for_job(client, job_id)
    assert job["status"] == "succeeded" and job["skipped"] == 1
    assert client.get("/v1/collections/xquad").json()["units"] == before["units"]


def test_new_content_for_an_id_replaces_the_old_chunks(client: httpx.Client, indexed: dict[str, Any]) -> None:
    text = "The quokka is a small marsupial that lives on Rottnest Island near Perth."
    first = client.post("/v1/collections/swap/documents", json={"documents": [{"id": "q", "text": "Old text. " * 40}]})
    wait_for_job(client, first.json()["job_id"])
    second = client.post("/v1/collections/swap/documents", json={"documents": [{"id": "q", "text": text}]})
    assert wait_for_job(client, second.json()["job_id"])["status"] == "succeeded"
    body = client.post("/v1/collections/swap/query", json={"query": "old text", "generate": False, "top_k": 10}).json()
    assert [d["text"] for d in body["documents"]] == [text]


def test_deleting_a_document_removes_all_its_units(client: httpx.Client, indexed: dict[str, Any]) -> None:
    documents = [{"id": "gone", "text": "First sentence here. " * 60}, {"id": "kept", "text": "Another document."}]
    job_id = client.post("/v1/collections/del/documents", json={"documents": documents}).json()["job_id"]
    wait_for_job(client, job_id)
    response = client.delete("/v1/collections/del/documents/gone")
    assert response.status_code == 200 and response.json()["units_removed"] >= 1
    body = client.post("/v1/collections/del/query", json={"query": "first sentence", "generate": False}).json()
    assert {d["doc_id"] for d in body["documents"]} == {"kept"}
    assert client.delete("/v1/collections/del/documents/gone").status_code == 404


def test_a_bad_document_inside_a_good_batch_makes_the_job_partial(client: httpx.Client) -> None:
    job_id = client.post("/v1/collections/mixed/documents", json={"documents": [
        {"id": "good", "text": "Lisbon is the capital of Portugal."},
        {"id": "bad", "text": "PK\u0003\u0004 zipped", "meta": {"content_type": "application/zip"}}]}).json()["job_id"]
    job = wait_for_job(client, job_id)
    assert job["status"] == "partial" and job["done"] == 1 and job["failed"] == 1
    assert job["errors"][0]["doc_id"] == "bad" and "unsupported content type" in job["errors"][0]["error"]


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"", 400, "empty_body"),
    (b"{not json", 400, "invalid_json"),
    (b'{"documents": [{"text": "caf\xe9"}]}', 400, "invalid_utf8"),
    (b'{"documents": []}', 422, "invalid_request"),
    (b'{"documents": [{"text": 123}]}', 422, "invalid_request"),
    (b'{"documents": [{"text": {"nested": "object"}}]}', 422, "invalid_request"),
    (b'{"documents": [{"text": "  "}]}', 422, "invalid_request"),
    (b'{"documents": [{"text": "ok"}], "surprise": 1}', 422, "invalid_request"),
    (b'{"documents": [{"text": "ok", "meta": {"tenant": "other"}}]}', 422, "invalid_request"),
])
def test_bad_ingestion_bodies_get_a_clear_4xx(client: httpx.Client, body: bytes, status: int, code: str) -> None:
    response = client.post("/v1/collections/bad/documents", content=body,
                           headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    assert client.get("/v1/collections/bad").status_code == 404  # nothing was stored


def test_a_50_mb_document_is_refused_whole(client: httpx.Client) -> None:
    huge = "x" * (50 * 1024 * 1024)
    response = client.post("/v1/collections/huge/documents", json={"documents": [{"id": "big", "text": huge}]})
    assert response.status_code == 413
    assert "nothing from this request was stored" in response.json()["error"]["message"].lower()
    assert client.get("/v1/collections/huge").status_code == 404


def test_a_document_over_the_per_document_limit_is_refused(client: httpx.Client) -> None:
    response = client.post("/v1/collections/big/documents", json={"documents": [{"id": "b", "text": "y" * 3_000_000}]})
    assert response.status_code == 413 and response.json()["error"]["code"] == "document_too_large"


def test_unknown_collections_and_jobs_are_404(client: httpx.Client) -> None:
    assert client.post("/v1/collections/nowhere/query", json={"query": "hi"}).status_code == 404
    assert client.get("/v1/collections/nowhere").json()["error"]["code"] == "not_found"
    assert client.get("/v1/jobs/0000").status_code == 404


def test_health_and_metrics_answer(client: httpx.Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").json()["info"]["title"] == "ragpress"


def test_a_document_the_registry_knows_but_the_index_lost_is_indexed_again(tmp_path: Any) -> None:
    home = tmp_path / "home"
    first = ServerProcess(home, env={"RAGPRESS_EMBEDDED_ENGINE": "local"})
    first.wait_ready()
    client = httpx.Client(base_url=first.url, timeout=120)
    body = {"documents": [{"id": "viaduct", "text": "The Millau Viaduct opened on 14 December 2004."}]}
    wait_for_job(client, client.post("/v1/collections/moved/documents", json=body).json()["job_id"])
    # qdrant-client's local mode holds no BM25 vectors: the default pipeline's hybrid retrieval searches dense only
    hits = client.post("/v1/collections/moved/query", json={"query": "Millau", "generate": False})
    assert hits.status_code == 200 and [d["doc_id"] for d in hits.json()["documents"]] == ["viaduct"]
    first.stop()
    second = ServerProcess(home)  # same registry, a different (empty) index: the Edge engine
    second.wait_ready()
    try:
        client = httpx.Client(base_url=second.url, timeout=120)
        job = wait_for_job(client, client.post("/v1/collections/moved/documents", json=body).json()["job_id"])
        assert job["status"] == "succeeded" and job["skipped"] == 0
        hits = client.post("/v1/collections/moved/query", json={"query": "Millau", "generate": False}).json()
        assert [d["doc_id"] for d in hits["documents"]] == ["viaduct"]
    finally:
        second.stop()


def test_the_pruned_pipeline_answers_from_kept_sentences(client: httpx.Client, indexed: dict[str, Any]) -> None:
    body = client.post("/v1/collections/xquad/query", json={
        "query": "Who won the Ekstraklasa Championship in 2000?", "pipeline": "pruned", "top_k": 2}).json()
    assert body["abstained"] is False
    assert "Polonia" in " ".join(d["text"] for d in body["documents"])
    assert body["usage"]["context_tokens"] > 0


def test_the_pruned_pipeline_abstains_when_nothing_is_relevant(client: httpx.Client, indexed: dict[str, Any]) -> None:
    body = client.post("/v1/collections/xquad/query", json={
        "query": "What is the recommended torque for bicycle pedal threads?", "pipeline": "pruned"}).json()
    assert body["abstained"] is True
    assert body["abstain_reason"] == "no_relevant_passage"
    assert body["documents"] and body["usage"]["context_tokens"] == 0


def test_the_pruned_pipeline_abstains_when_on_topic_passages_do_not_hold_the_answer(
    client: httpx.Client, indexed: dict[str, Any]
) -> None:
    # The Warsaw passages are relevant to the question (they clear the relevance floor), but none gives a
    # population for 1800: the sufficiency model, not the floor, must refuse.
    body = client.post("/v1/collections/xquad/query", json={
        "query": "What is the population of Warsaw in 1800?", "pipeline": "pruned"}).json()
    assert body["abstained"] is True
    assert body["abstain_reason"] == "insufficient_evidence"
    # the refusal shows the pruned passages it judged, which the generator never read
    assert "Warsaw" in " ".join(d["text"] for d in body["documents"])
    assert all("pruned_text" in d for d in body["documents"])
    assert body["usage"]["context_tokens"] == body["usage"]["context_tokens_after_pruning"] == 0


def test_a_retrieval_only_query_returns_what_a_gate_would_refuse(client: httpx.Client, indexed: dict[str, Any]) -> None:
    # generate: false asks for the ranked, pruned passages; whether to answer from them is not its question.
    body = client.post("/v1/collections/xquad/query", json={
        "query": "What is the population of Warsaw in 1800?", "pipeline": "pruned", "generate": False}).json()
    assert body["documents"] and all("pruned_text" in d for d in body["documents"])
    assert "answer" not in body and "abstained" not in body
