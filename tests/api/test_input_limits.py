"""Bounded input against a real server: what a tenant sends can neither break the index nor get a 500.

Each finding of the input-limits review is replayed here as an ordinary tenant would send it, and must get a
clear 4xx; then the index must still answer and take new documents. The last test ingests meta at every limit
the API accepts and follows it through query, delete and a restart on the same data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from input_cases import meta_at_every_limit
from support import ServerProcess, serving, wait_for_job

from ragpress.base.input_limits import (
    MAX_INT,
    MAX_JSON_DEPTH,
    MAX_META_BYTES,
    MAX_META_KEY_CHARS,
    MAX_META_KEYS,
    MAX_VERSION,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from serving(tmp_path_factory.mktemp("limits-home"))


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def collection(client: httpx.Client) -> str:
    job = client.post("/v1/collections/bounded/documents", json={"documents": [
        {"id": "lisbon", "text": "Lisbon is the capital of Portugal.", "meta": {"country": "PT"}}]}).json()
    assert wait_for_job(client, job["job_id"])["status"] == "succeeded"
    return "bounded"


def deep_object(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"n": value}
    return value


def post_raw(client: httpx.Client, path: str, body: bytes | str) -> httpx.Response:
    content = body.encode("utf-8") if isinstance(body, str) else body
    return client.post(path, content=content, headers={"content-type": "application/json"})


def assert_refused(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert all(word in error["message"] for word in words), error["message"]


# ------------------------------------------------------------------ finding 1: meta nested 127 levels deep

def test_a_document_whose_meta_nests_127_levels_is_refused_and_nothing_is_stored(
    client: httpx.Client, collection: str
) -> None:
    # 127 levels: beyond what any JSON body may nest, so refused before it is even parsed
    body = {"documents": [{"id": "deep", "text": "Nested meta.", "meta": {"deep": deep_object(127)}}]}
    assert_refused(client.post(f"/v1/collections/{collection}/documents", json=body), 400, "json_too_deep",
                   f"the limit is {MAX_JSON_DEPTH}")
    # within the body's bound, but deeper than meta allows: the meta rule names the key
    body = {"documents": [{"id": "deep", "text": "Nested meta.", "meta": {"deep": deep_object(20)}}]}
    assert_refused(client.post(f"/v1/collections/{collection}/documents", json=body), 422, "invalid_request",
                   "documents.0.meta", "meta['deep']['n']", "object inside an object", "1 level deep")
    assert client.delete(f"/v1/collections/{collection}/documents/deep").status_code == 404


def test_a_meta_one_level_deep_is_taken_and_two_levels_are_refused(client: httpx.Client, collection: str) -> None:
    ok = {"documents": [{"id": "shallow", "text": "One level of nesting.", "meta": {"source": {"year": 2024}}}]}
    job = client.post(f"/v1/collections/{collection}/documents", json=ok).json()
    assert wait_for_job(client, job["job_id"])["status"] == "succeeded"
    too_deep = {"documents": [{"text": "Two levels.", "meta": {"source": {"year": {"value": 2024}}}}]}
    assert_refused(client.post(f"/v1/collections/{collection}/documents", json=too_deep), 422, "invalid_request",
                   "meta['source']['year']")


# ------------------------------------------------------------------ finding 2: a number Python reads as inf

@pytest.mark.parametrize(("raw", "status", "code", "words"), [
    ('{"documents": [{"text": "t", "meta": {"x": 1e400}}]}', 422, "invalid_request", ["1e400", "64-bit float"]),
    ('{"documents": [{"text": "t", "meta": {"x": -1e400}}]}', 422, "invalid_request", ["64-bit float"]),
    ('{"documents": [{"text": "t", "meta": {"x": NaN}}]}', 400, "invalid_json", ["NaN is not a JSON number"]),
    ('{"documents": [{"text": "t", "meta": {"x": Infinity}}]}', 400, "invalid_json", ["Infinity"]),
    ('{"documents": [{"text": "t", "meta": {"x": 18446744073709551616}}]}', 422, "invalid_request",
     ["beyond signed 64 bits"]),
    ('{"documents": [{"text": "t", "meta": {"x": ' + "7" * 5000 + '}}]}', 422, "invalid_request",
     ["beyond signed 64 bits"]),
])
def test_numbers_no_index_can_store_are_refused_before_a_job_exists(client: httpx.Client, collection: str,
                                                                     raw: str, status: int, code: str,
                                                                     words: list[str]) -> None:
    jobs_before = len(client.get("/v1/jobs").json()["jobs"])
    assert_refused(post_raw(client, f"/v1/collections/{collection}/documents", raw), status, code, *words)
    assert len(client.get("/v1/jobs").json()["jobs"]) == jobs_before


# ------------------------------------------------------------------ finding 3: 500s that are the caller's 4xx

@pytest.mark.parametrize(("raw", "words"), [
    ('{"documents": [{"text": "\\ud800"}]}', ["documents[0].text", "lone surrogate", "U+D800"]),
    ('{"documents": [{"id": "a\\udfff", "text": "t"}]}', ["documents[0].id", "lone surrogate"]),
    ('{"documents": [{"text": "t", "meta": {"k": "\\udbff"}}]}', ["lone surrogate"]),
    ('{"documents": [{"text": "t", "meta": {"\\ud800": 1}}]}', ["a key of", "lone surrogate"]),
])
def test_lone_surrogates_in_a_document_are_a_422(client: httpx.Client, collection: str, raw: str,
                                                  words: list[str]) -> None:
    assert_refused(post_raw(client, f"/v1/collections/{collection}/documents", raw), 422, "invalid_request", *words)


def test_a_surrogate_pair_is_unicode_and_is_taken(client: httpx.Client, collection: str) -> None:
    raw = '{"documents": [{"id": "emoji", "text": "Smile \\ud83d\\ude00 please.", "meta": {"e": "\\ud83d\\ude00"}}]}'
    response = post_raw(client, f"/v1/collections/{collection}/documents", raw)
    assert response.status_code == 202
    assert wait_for_job(client, response.json()["job_id"])["status"] == "succeeded"


@pytest.mark.parametrize(("filters", "words"), [
    ({"conditions": "abc"}, ["filters", "needs an 'operator'"]),
    ({"operator": "AND", "conditions": "abc"}, ["'AND' needs 'conditions'"]),
    ({"field": 5, "operator": "==", "value": 1}, ["filters.field must be a string"]),
    ({"field": "meta.a b", "operator": "==", "value": 1}, ["is not a field", "quote a key"]),
    ({"field": "meta.country", "operator": "==", "value": [1]}, ["must be a string, number"]),
    ({"field": "meta.country", "operator": ">", "value": "20240101"}, ["ISO-8601"]),
    ({"field": "meta.country", "operator": "~", "value": "PT"}, ["not a filter operator"]),
    ({"meta.country": "PT"}, ["Haystack 1.x syntax"]),
])
@pytest.mark.parametrize("stream", [False, True])
def test_a_malformed_filter_is_a_422_before_any_pipeline_runs(client: httpx.Client, collection: str,
                                                              filters: dict[str, Any], words: list[str],
                                                              stream: bool) -> None:
    body = {"query": "capital", "generate": False, "stream": stream, "filters": filters}
    assert_refused(client.post(f"/v1/collections/{collection}/query", json=body), 422, "invalid_request", *words)


def test_a_malformed_filter_passed_as_a_component_param_is_a_422_too(client: httpx.Client,
                                                                      collection: str) -> None:
    body = {"query": "capital", "generate": False, "params": {"retriever": {"filters": {"conditions": "abc"}}}}
    assert_refused(client.post(f"/v1/collections/{collection}/query", json=body), 422, "invalid_request",
                   "params: Value error, retriever.filters needs an 'operator'")


def test_a_valid_filter_still_selects(client: httpx.Client, collection: str) -> None:
    body = {"query": "capital", "generate": False,
            "filters": {"operator": "AND", "conditions": [{"field": "meta.country", "operator": "==", "value": "PT"}]}}
    response = client.post(f"/v1/collections/{collection}/query", json=body)
    assert response.status_code == 200
    assert {d["doc_id"] for d in response.json()["documents"]} == {"lisbon"}


@pytest.mark.parametrize("version", [2**64, 2**63, MAX_VERSION + 1, -1])
def test_a_pipeline_version_beyond_its_range_is_a_422(client: httpx.Client, version: int) -> None:
    response = client.get("/v1/pipelines/query", params={"version": str(version)})
    assert_refused(response, 422, "invalid_request", "version")
    rollback = post_raw(client, "/v1/pipelines/query/rollback", f'{{"version": {version}}}')
    assert rollback.status_code == 422 and rollback.json()["error"]["code"] == "invalid_request"


def test_pipeline_versions_within_range_still_resolve(client: httpx.Client) -> None:
    assert client.get("/v1/pipelines/query", params={"version": "0"}).json()["builtin"] is True
    assert_refused(client.get("/v1/pipelines/query", params={"version": str(MAX_VERSION)}), 404, "not_found")


@pytest.mark.parametrize("route", ["/v1/collections/bounded/documents", "/v1/collections/bounded/query",
                                   "/v1/pipelines/query/rollback", "/v1/collections/bounded"])
@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
                                  b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1)])
def test_a_very_deep_json_body_is_a_400_naming_the_limit(client: httpx.Client, collection: str, route: str,
                                                          body: bytes) -> None:
    method = client.put if route == "/v1/collections/bounded" else client.post
    response = method(route, content=body, headers={"content-type": "application/json"})
    assert_refused(response, 400, "json_too_deep", f"the limit is {MAX_JSON_DEPTH}")


def test_pipeline_yaml_escaping_a_lone_surrogate_is_a_4xx(client: httpx.Client) -> None:
    text = b'components:\n  "\\ud800":\n    type: ragpress.indexers.embedders.QueryEmbedder\n'
    checked = client.post("/v1/pipelines/fz-surrogate/validate", content=text)
    assert checked.status_code == 200 and "lone surrogate" in checked.json()["problems"][0]["message"]
    assert client.put("/v1/pipelines/fz-surrogate", content=text).status_code == 422


# ------------------------------------------------------------------ the other meta limits

@pytest.mark.parametrize(("meta", "words"), [
    ({f"k{i}": i for i in range(MAX_META_KEYS + 1)}, [f"limit is {MAX_META_KEYS}"]),
    ({"k" * (MAX_META_KEY_CHARS + 1): 1}, [f"limit is {MAX_META_KEY_CHARS}"]),
    ({"big": "x" * MAX_META_BYTES}, [f"limit is {MAX_META_BYTES:,}"]),
    ({"n": [[1]]}, ["meta['n'][0]"]),
    ({"tenant": "other"}, ["reserved by ragpress"]),
    ({"pruned_text": 5}, ["reserved by ragpress"]),  # the generator would read it in place of the text (or fail)
    ({"parts": [[0, 1]]}, ["reserved by ragpress"]),  # the KV generator would lay the unit out from these spans
])
def test_meta_beyond_its_limits_is_a_422_naming_limit_and_key(client: httpx.Client, collection: str,
                                                              meta: dict[str, Any], words: list[str]) -> None:
    body = {"documents": [{"text": "t", "meta": meta}]}
    assert_refused(client.post(f"/v1/collections/{collection}/documents", json=body), 422, "invalid_request",
                   "documents.0.meta", *words)


def test_after_every_refusal_the_index_still_answers_and_takes_documents(client: httpx.Client,
                                                                          collection: str) -> None:
    job = client.post("/v1/collections/other/documents", json={"documents": [
        {"id": "porto", "text": "Porto lies on the Douro river.", "meta": {"n": MAX_INT}}]}).json()
    assert wait_for_job(client, job["job_id"])["status"] == "succeeded"
    for name, query in ((collection, "capital of Portugal"), ("other", "Douro")):
        response = client.post(f"/v1/collections/{name}/query", json={"query": query, "generate": False})
        assert response.status_code == 200 and response.json()["documents"]
    assert client.delete(f"/v1/collections/{collection}/documents/lisbon").json()["units_removed"] >= 1


# ------------------------------------------------------------------ meta at every limit, through a restart

def sent_meta_came_back(sent: dict[str, Any], document: dict[str, Any]) -> bool:
    returned = document["meta"]  # the response adds ragpress's unit fields (position, offsets, strategy)
    return {key: returned.get(key) for key in sent} == sent


def query_doc(client: httpx.Client, doc_id: str) -> list[dict[str, Any]]:
    body = {"query": "limits", "generate": False, "top_k": 10,
            "filters": {"field": "meta.doc_id", "operator": "==", "value": doc_id}}
    response = client.post("/v1/collections/edge/query", json=body)
    assert response.status_code == 200, response.text
    return response.json()["documents"]


@contextlib.contextmanager
def server_on(home: Path) -> Iterator[httpx.Client]:
    """A server on ``home`` for one ``with`` block, stopped cleanly (SIGTERM) at its end."""
    with contextlib.contextmanager(serving)(home) as proc, httpx.Client(base_url=proc.url, timeout=120) as http:
        yield http


def test_meta_at_every_limit_survives_query_delete_and_a_restart(tmp_path: Path) -> None:
    meta = meta_at_every_limit()
    documents = [{"id": name, "text": f"Document {name} tests the limits of meta. It has two sentences.",
                  "meta": meta} for name in ("limits-a", "limits-b")]
    with server_on(tmp_path / "home") as http:
        response = http.post("/v1/collections/edge/documents", json={"documents": documents})
        assert response.status_code == 202, response.text
        job = wait_for_job(http, response.json()["job_id"])
        assert job["status"] == "succeeded", job
        found = query_doc(http, "limits-a")
        assert found and all(sent_meta_came_back(meta, d) for d in found)
        assert http.delete("/v1/collections/edge/documents/limits-a").json()["units_removed"] >= 1
        assert query_doc(http, "limits-a") == []
    with server_on(tmp_path / "home") as http:  # the same data: the index must load and answer
        assert query_doc(http, "limits-a") == []
        kept = query_doc(http, "limits-b")
        assert kept and all(sent_meta_came_back(meta, d) for d in kept)
        again = http.post("/v1/collections/edge/documents", json={"documents": documents[:1]}).json()
        assert wait_for_job(http, again["job_id"])["status"] == "succeeded"
        assert query_doc(http, "limits-a")
