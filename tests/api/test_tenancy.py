"""Tenants: every route is confined to the caller's tenant; keys are required once they exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerProcess, wait_for_job

from ragpress.base.api_keys import KeyStore
from ragpress.base.database import make_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("tenancy")
    keys = KeyStore(make_engine(f"sqlite:///{home / 'data' / 'ragpress.db'}"))
    (_, alice), (_, bob), (_, admin) = keys.create_key("alice"), keys.create_key("bob"), keys.create_key(None, True)
    server = ServerProcess(home)
    server.wait_ready()
    as_ = lambda key: httpx.Client(base_url=server.url, timeout=120,  # noqa: E731
                                   headers={"Authorization": f"Bearer {key}"})
    a, b = as_(alice), as_(bob)
    job = a.post("/v1/collections/notes/documents", json={"documents": [
        {"id": "secret", "text": "Alice's launch code is 4417."}]}).json()["job_id"]
    wait_for_job(a, job)
    job_b = b.post("/v1/collections/notes/documents", json={"documents": [
        {"id": "own", "text": "Bob keeps bees in the garden."}]}).json()["job_id"]
    wait_for_job(b, job_b)
    a.put("/v1/pipelines/private", content=a.get("/v1/pipelines/query").json()["yaml"],
          headers={"content-type": "application/yaml"})
    yield {"server": server, "alice": a, "bob": b, "admin": as_(admin), "job": job, "anon": as_("")}
    server.stop()


def test_requests_without_a_key_or_with_a_wrong_one_get_401(setup: dict[str, Any]) -> None:
    url = setup["server"].url
    assert httpx.get(f"{url}/v1/collections").status_code == 401
    wrong = httpx.get(f"{url}/v1/collections", headers={"Authorization": "Bearer rp_not-a-real-key"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"


def test_no_route_lets_one_tenant_see_or_change_anothers_data(setup: dict[str, Any]) -> None:
    bob, job = setup["bob"], setup["job"]
    assert [c["name"] for c in bob.get("/v1/collections").json()["collections"]] == ["notes"]
    assert bob.get("/v1/collections/notes").json()["documents"] == 1
    assert bob.get(f"/v1/jobs/{job}").status_code == 404
    assert bob.post(f"/v1/jobs/{job}/cancel").status_code == 404
    assert all(j["job_id"] != job for j in bob.get("/v1/jobs").json()["jobs"])
    assert bob.delete("/v1/collections/notes/documents/secret").status_code == 404
    assert bob.get("/v1/collections/notes/documents/secret").status_code == 404
    assert [d["id"] for d in bob.get("/v1/collections/notes/documents").json()["documents"]] == ["own"]
    assert bob.post("/v1/collections/notes/documents/delete", json={"ids": ["secret"]}).json()["deleted"] == []
    assert bob.get("/v1/pipelines/private").status_code == 404
    assert "private" not in [p["name"] for p in bob.get("/v1/pipelines").json()["pipelines"]]
    assert bob.delete("/v1/pipelines/private").status_code == 404
    hits = bob.post("/v1/collections/notes/query", json={"query": "launch code", "generate": False}).json()
    assert [d["doc_id"] for d in hits["documents"]] == ["own"]
    filters = {"field": "meta.tenant", "operator": "==", "value": "alice"}  # user filters cannot widen scope
    widened = bob.post("/v1/collections/notes/query", json={"query": "launch code", "generate": False,
                                                             "filters": filters}).json()
    assert widened["documents"] == []
    assert setup["alice"].get("/v1/collections/notes/documents/secret").json()["status"] == "indexed"
    assert setup["alice"].post("/v1/collections/notes/query", json={
        "query": "launch code", "generate": False}).json()["documents"][0]["doc_id"] == "secret"


def test_admin_routes_need_an_admin_key(setup: dict[str, Any]) -> None:
    assert setup["alice"].get("/v1/admin/tenants").status_code == 403
    admin = setup["admin"]
    assert set(admin.get("/v1/admin/tenants").json()["tenants"]) >= {"alice", "bob"}
    created = admin.post("/v1/admin/keys", json={"tenant": "carol"}).json()
    carol = httpx.Client(base_url=setup["server"].url, headers={"Authorization": f"Bearer {created['key']}"})
    assert carol.get("/v1/collections").json() == {"collections": []}
    assert admin.delete(f"/v1/admin/keys/{created['id']}").status_code == 200
    assert carol.get("/v1/collections").status_code == 401
    assert admin.get("/v1/collections").status_code == 400  # an admin acts for a named tenant
    assert admin.post("/v1/admin/index/optimize").json()["optimized"] is True
    acting = admin.get("/v1/collections", headers={"X-Ragpress-Tenant": "bob"}).json()
    assert [c["name"] for c in acting["collections"]] == ["notes"]


def test_keys_are_stored_only_as_hashes(setup: dict[str, Any], tmp_path: Path) -> None:
    database = setup["server"].home / "data" / "ragpress.db"
    key = setup["alice"].headers["Authorization"].split()[1]
    assert key.encode() not in database.read_bytes()


def test_deleting_a_collection_removes_only_the_callers(setup: dict[str, Any]) -> None:
    """Runs last: bob's `notes` and alice's `notes` share a name, never their documents."""
    bob, alice = setup["bob"], setup["alice"]
    assert bob.delete("/v1/collections/notes").json()["documents_removed"] == 1
    assert bob.get("/v1/collections/notes/documents").status_code == 404
    assert [d["id"] for d in alice.get("/v1/collections/notes/documents").json()["documents"]] == ["secret"]
    hits = alice.post("/v1/collections/notes/query", json={"query": "launch code", "generate": False}).json()
    assert [d["doc_id"] for d in hits["documents"]] == ["secret"]
