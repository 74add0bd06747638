"""Pipeline YAML through the API: validated before saving, versioned, used by the next request."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from support import ServerProcess, wait_for_job

pytestmark = [pytest.mark.integration, pytest.mark.slow]
YAML = {"content-type": "application/yaml"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = ServerProcess(tmp_path_factory.mktemp("pipelines"))
    server.wait_ready()
    http = httpx.Client(base_url=server.url, timeout=120)
    docs = [{"id": f"d{i}", "text": f"Fact number {i}: the sky looked different on day {i}."} for i in range(5)]
    wait_for_job(http, http.post("/v1/collections/c/documents", json={"documents": docs}).json()["job_id"])
    yield http
    server.stop()


def test_a_bad_edit_is_refused_with_its_line_and_never_replaces_the_working_pipeline(client: httpx.Client) -> None:
    original = client.get("/v1/pipelines/query").json()
    bad = original["yaml"].replace("ragpress.indexers.retrievers.ScopedEmbeddingRetriever", "os.system")
    response = client.put("/v1/pipelines/query", content=bad, headers=YAML)
    assert response.status_code == 422
    problem = response.json()["error"]["problems"][0]
    assert problem["field"] == "components.retriever.type" and "os.system" in bad.splitlines()[problem["line"] - 1]
    assert client.get("/v1/pipelines/query").json()["version"] == original["version"]
    check = client.post("/v1/pipelines/query/validate", content=bad, headers=YAML).json()
    assert check["valid"] is False and check["problems"][0]["line"] == problem["line"]


def test_a_saved_version_is_used_by_the_next_request_and_can_be_rolled_back(client: httpx.Client) -> None:
    yaml_text = client.get("/v1/pipelines/plain").json()["yaml"].replace("top_k: 4", "top_k: 1")
    check = client.post("/v1/pipelines/narrow/validate", content=yaml_text, headers=YAML,
                        params={"dry_run": True, "collection": "c", "query": "sky"}).json()
    assert check["valid"] and {n["name"] for n in check["graph"]["nodes"]} >= {"embedder", "retriever"}
    assert len(check["dry_run"]["documents"]) == 1
    saved = client.put("/v1/pipelines/narrow", content=yaml_text, headers=YAML).json()
    assert saved["version"] == 1
    body = client.post("/v1/collections/c/query", json={"query": "sky", "generate": False, "pipeline": "narrow"})
    assert len(body.json()["documents"]) == 1
    wider = yaml_text.replace("top_k: 1", "top_k: 3")
    assert client.put("/v1/pipelines/narrow", content=wider, headers=YAML).json()["version"] == 2
    body = client.post("/v1/collections/c/query", json={"query": "sky", "generate": False, "pipeline": "narrow"})
    assert len(body.json()["documents"]) == 3
    assert client.post("/v1/pipelines/narrow/rollback", json={"version": 1}).json()["version"] == 3
    assert "top_k: 1" in client.get("/v1/pipelines/narrow").json()["yaml"]
    assert [v["version"] for v in client.get("/v1/pipelines/narrow/versions").json()["versions"]] == [1, 2, 3]
    assert client.delete("/v1/pipelines/narrow").status_code == 200
    assert client.get("/v1/pipelines/narrow").status_code == 404


def test_unknown_pipelines_are_404(client: httpx.Client) -> None:
    assert client.post("/v1/collections/c/query", json={"query": "x", "pipeline": "nope"}).status_code == 404


def test_a_pipeline_cannot_name_server_resources(client: httpx.Client) -> None:
    wipe = "      document_store: {type: x, init_parameters: {recreate_index: true}}\n"
    yaml_text = client.get("/v1/pipelines/plain").json()["yaml"].replace("      top_k: 4\n", "      top_k: 4\n" + wipe)
    response = client.put("/v1/pipelines/wipe", content=yaml_text, headers=YAML)
    assert response.status_code == 422
    assert response.json()["error"]["problems"][0]["field"] == "components.retriever.init_parameters.document_store"


def test_a_pipeline_asking_more_than_the_servers_ceilings_is_refused_before_it_is_saved(client: httpx.Client) -> None:
    yaml_text = client.get("/v1/pipelines/query").json()["yaml"].replace("max_new_tokens: 64", "max_new_tokens: 90000")
    check = client.post("/v1/pipelines/costly/validate", content=yaml_text, headers=YAML).json()
    assert check["valid"] is False
    assert check["problems"][0]["field"] == "components.generator.init_parameters.max_new_tokens"
    response = client.put("/v1/pipelines/costly", content=yaml_text, headers=YAML)
    assert response.status_code == 422 and "limit of 1024" in response.json()["error"]["problems"][0]["message"]
    assert client.get("/v1/pipelines/costly").status_code == 404


def test_a_version_or_built_in_above_lowered_ceilings_runs_only_where_the_request_overrides_the_excess(
    tmp_path: Any,
) -> None:
    def serve(limit: int) -> tuple[ServerProcess, httpx.Client]:
        server = ServerProcess(tmp_path / "home", env={"RAGPRESS_MAX_NEW_TOKENS_LIMIT": str(limit)})
        server.wait_ready()
        return server, httpx.Client(base_url=server.url, timeout=120)

    server, http = serve(4000)
    yaml_text = http.get("/v1/pipelines/query").json()["yaml"].replace("max_new_tokens: 64", "max_new_tokens: 3000")
    assert http.put("/v1/pipelines/long", content=yaml_text, headers=YAML).status_code == 200
    assert http.put("/v1/collections/c", json={}).status_code == 200
    server.stop()

    server, http = serve(32)  # below even the built-in query pipeline's max_new_tokens of 64
    try:
        for pipeline, version in (("long", 1), ("query", 0)):
            response = http.post("/v1/collections/c/query", json={"query": "x", "pipeline": pipeline})
            assert response.status_code == 422
            message = response.json()["error"]["message"]
            assert f"pipeline '{pipeline}' version {version}" in message and "limit of 32" in message
        # The generator does not run without an answer, and a request can set its own, lower limit.
        assert http.post("/v1/collections/c/query", json={"query": "x", "generate": False}).status_code == 200
        within = {"query": "x", "params": {"generator": {"max_new_tokens": 16}}}
        assert http.post("/v1/collections/c/query", json=within).status_code == 200
    finally:
        server.stop()
