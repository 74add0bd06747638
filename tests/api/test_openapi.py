"""The OpenAPI document of a real `ragpress serve`, as a client generator or a reader of /docs relies on it: valid
OpenAPI 3.1, every body with its schema, the API-key schemes on every /v1 operation, and every answer a route
really gives (errors included) listed for it and shaped as its schema says."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_schema_validator import validate as validate_instance
from openapi_spec_validator import validate as validate_document
from support import ServerProcess, serving, wait_for_job

from ragpress.base.api_keys import KeyStore
from ragpress.base.database import make_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE_LIMIT = 120  # per minute, and the burst a key may send at once
MAX_REQUEST_BYTES = 20_000
# POST actions that take no body; every other POST or PUT must declare its body.
BODILESS = {("post", "/v1/admin/index/optimize"), ("post", "/v1/jobs/{job_id}/cancel")}
QUERY = "/v1/collections/{collection}/query"
PIPELINE = "/v1/pipelines/{name}"
ERROR_REF = "#/components/schemas/ErrorOut"
OPS = ("/healthz", "/readyz", "/metrics")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("openapi-home")
    store = KeyStore(make_engine(f"sqlite:///{home / 'data' / 'ragpress.db'}"))
    keys = {"alice": store.create_key("alice")[1], "burst": store.create_key("burst")[1],
            "admin": store.create_key(None, True)[1]}
    env = {"RAGPRESS_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT), "RAGPRESS_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES)}
    for proc in serving(home, env=env):
        yield {"proc": proc, **{name: _client(proc, key) for name, key in keys.items()}, "anonymous": _client(proc)}


def _client(proc: ServerProcess, key: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=proc.url, timeout=120, headers=headers)


@pytest.fixture(scope="module")
def document(server: dict[str, Any]) -> dict[str, Any]:
    response = server["anonymous"].get("/openapi.json")  # the reference is public, like /docs
    assert response.status_code == 200
    return response.json()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def operations_body(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    content = document["paths"][path][method]["requestBody"]["content"]
    return {media: value["schema"] for media, value in content.items()}


def conforms(document: dict[str, Any], method: str, path: str, response: httpx.Response) -> Any:
    """Assert the route lists the status it answered with and the body has the shape it documents; the body."""
    documented = document["paths"][path][method]["responses"]
    status = str(response.status_code)
    assert status in documented, f"{method.upper()} {path} answered {status}, not among {sorted(documented)}"
    media = response.headers["content-type"].split(";")[0]
    schema = documented[status]["content"][media]["schema"]
    body = response.json()
    validate_instance(body, {**schema, "components": document["components"]}, cls=OAS31Validator)
    return body


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validate_document(document)
    assert document["openapi"].startswith("3.1")
    assert document["info"]["title"] == "ragpress"


def test_every_route_that_takes_a_body_declares_its_schema(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    for method, path, operation in operations(document):
        if method not in ("post", "put", "patch") or (method, path) in BODILESS:
            continue
        assert "requestBody" in operation, f"{method.upper()} {path} does not declare its body"
        for media, content in operation["requestBody"]["content"].items():
            ref = content["schema"].get("$ref")
            assert ref is None or ref.rsplit("/", 1)[1] in schemas, f"{method.upper()} {path}: {ref} is undefined"
            assert content["schema"] != {}, f"{method.upper()} {path} ({media}) has an empty schema"
    assert operations_body(document, "post", QUERY) == {"application/json": {"$ref": "#/components/schemas/QueryIn"}}
    assert operations_body(document, "put", PIPELINE) == {"application/yaml": {"type": "string"}}
    assert operations_body(document, "post", PIPELINE + "/validate") == {"application/yaml": {"type": "string"}}
    assert operations_body(document, "post", PIPELINE + "/rollback") == {
        "application/json": {"$ref": "#/components/schemas/RollbackIn"}}


def test_every_success_has_a_schema_not_an_empty_object(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, response in operation["responses"].items():
            for media, content in response.get("content", {}).items():
                assert content.get("schema"), f"{method.upper()} {path} {status} ({media}) has no schema"


def test_every_v1_operation_takes_an_api_key_and_documents_its_errors(document: dict[str, Any]) -> None:
    schemes = document["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKey"] == {**schemes["apiKey"], "type": "apiKey", "in": "header", "name": "X-API-Key"}
    for method, path, operation in operations(document):
        if not path.startswith("/v1/"):
            assert path in OPS and "security" not in operation
            continue
        name = f"{method.upper()} {path}"
        assert operation["security"] == [{"bearer": []}, {"apiKey": []}], name
        responses = operation["responses"]
        expected = {"401"} | ({"403"} if path.startswith("/v1/admin/") else {"429"})
        if "requestBody" in operation:
            expected |= {"400", "413", "422"}
        if operation.get("parameters", []) and any(p["in"] in ("path", "query") for p in operation["parameters"]):
            expected.add("422")
        if "{" in path and method != "put":
            expected.add("404")
        assert expected <= responses.keys(), f"{name} lacks {sorted(expected - responses.keys())}"
        for status, response in responses.items():
            if int(status) >= 400:
                assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, f"{name} {status}"
    assert {"502", "503"} <= document["paths"][QUERY]["post"]["responses"].keys()
    assert "Retry-After" in document["paths"][QUERY]["post"]["responses"]["429"]["headers"]


def test_each_error_a_route_answers_with_is_documented_with_its_real_shape(
    server: dict[str, Any], document: dict[str, Any]
) -> None:
    alice, admin, anonymous = server["alice"], server["admin"], server["anonymous"]
    answered = [
        ("get", "/v1/collections", anonymous.get("/v1/collections"), 401, "unauthorized"),
        ("get", "/v1/admin/tenants", alice.get("/v1/admin/tenants"), 403, "forbidden"),
        ("get", "/v1/collections", admin.get("/v1/collections"), 400, "tenant_required"),
        ("post", QUERY, alice.post("/v1/collections/notes/query", content=b"{"), 400, "invalid_json"),
        ("post", QUERY, alice.post("/v1/collections/nowhere/query", json={"query": "hi"}), 404, "not_found"),
        ("post", QUERY, alice.post("/v1/collections/notes/query", json={"query": ""}), 422, "invalid_request"),
        ("get", PIPELINE, alice.get("/v1/pipelines/no%20such"), 422, "invalid_request"),
        ("put", PIPELINE, alice.put("/v1/pipelines/big", content="#" * (MAX_REQUEST_BYTES + 1),
                                    headers={"content-type": "application/yaml"}), 413, "request_too_large"),
        ("put", PIPELINE, alice.put("/v1/pipelines/broken", content="components:\n  x:\n    type: os.system\n",
                                    headers={"content-type": "application/yaml"}), 422, "invalid_pipeline"),
    ]
    for method, path, response, status, code in answered:
        assert response.status_code == status, (path, response.text)
        assert conforms(document, method, path, response)["error"]["code"] == code
    assert conforms(document, "put", PIPELINE, answered[-1][2])["error"]["problems"][0]["line"] == 3


def test_a_rate_limited_caller_gets_the_documented_429_with_retry_after(
    server: dict[str, Any], document: dict[str, Any]
) -> None:
    burst, allowed = server["burst"], 0
    while (limited := burst.get("/v1/collections")).status_code == 200 and allowed <= 2 * RATE_LIMIT:
        allowed += 1
    assert limited.status_code == 429 and allowed >= RATE_LIMIT  # the whole burst, then no more
    assert conforms(document, "get", "/v1/collections", limited)["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1


def test_successful_answers_have_their_documented_shape_and_nothing_added_or_dropped(
    server: dict[str, Any], document: dict[str, Any]
) -> None:
    alice, admin = server["alice"], server["admin"]
    job = alice.post("/v1/collections/notes/documents", json={"documents": [
        {"id": "bees", "text": "Bob keeps bees in the garden. They make honey in summer."}]}).json()["job_id"]
    assert wait_for_job(alice, job)["status"] == "succeeded"
    yaml = alice.get("/v1/pipelines/query").json()["yaml"]
    as_yaml = {"content-type": "application/yaml"}

    assert conforms(document, "get", "/healthz", alice.get("/healthz")) == {"status": "ok"}
    assert conforms(document, "get", "/readyz", alice.get("/readyz")) == {"status": "ready"}
    found = conforms(document, "post", QUERY, alice.post("/v1/collections/notes/query",
                                                         json={"query": "Who keeps bees?", "generate": False}))
    assert found["documents"][0]["doc_id"] == "bees"
    assert set(found) == {"documents", "usage", "timings_ms"}  # no answer fields when nothing was generated
    assert {p["name"] for p in conforms(document, "get", "/v1/pipelines", alice.get("/v1/pipelines"))["pipelines"]
            } >= {"query", "kv"}
    builtin = conforms(document, "get", PIPELINE, alice.get("/v1/pipelines/query"))
    assert set(builtin) == {"name", "version", "yaml", "builtin"} and builtin["builtin"] is True
    saved = conforms(document, "put", PIPELINE, alice.put("/v1/pipelines/mine", content=yaml, headers=as_yaml))
    assert saved["version"] == 1
    versions = alice.get("/v1/pipelines/mine/versions")
    assert conforms(document, "get", PIPELINE + "/versions", versions)["versions"][0]["version"] == 1
    rolled = alice.post("/v1/pipelines/mine/rollback", json={"version": 1})
    assert conforms(document, "post", PIPELINE + "/rollback", rolled)["version"] == 2
    checked = conforms(document, "post", PIPELINE + "/validate", alice.post(
        "/v1/pipelines/mine/validate", params={"dry_run": "true", "collection": "notes", "query": "bees"},
        content=yaml, headers=as_yaml))
    assert checked["valid"] is True and {"from", "to"} == set(checked["graph"]["edges"][0])
    assert "answer" not in checked["dry_run"]
    assert conforms(document, "delete", PIPELINE, alice.delete("/v1/pipelines/mine")) == {"deleted": "mine"}

    assert "alice" in conforms(document, "get", "/v1/admin/tenants", admin.get("/v1/admin/tenants"))["tenants"]
    created = conforms(document, "post", "/v1/admin/keys", admin.post("/v1/admin/keys", json={"tenant": "carol"}))
    assert set(created) == {"id", "key", "tenant", "admin"}
    listed = conforms(document, "get", "/v1/admin/keys", admin.get("/v1/admin/keys"))["keys"]
    assert created["id"] in {k["id"] for k in listed}
    revoked = admin.delete(f"/v1/admin/keys/{created['id']}")
    assert conforms(document, "delete", "/v1/admin/keys/{key_id}", revoked) == {"revoked": created["id"]}

