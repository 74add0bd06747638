"""Document management over REST against a real `ragpress serve` with keys: listing, the chunk view, deletes by id
and by filter, deleting a collection, short job ids, and that none of it crosses tenants."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from support import serving, wait_for_job

from ragpress.base.api_keys import KeyStore
from ragpress.base.database import make_engine
from ragpress.base.schema import LEVELS
from ragpress.workers.job_store import JobStore, jobs

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INSTALL = ("# Installing\n\nDownload the archive and unpack it into a folder of your choice. The installer checks that "
           "Python 3.11 or newer is on the path and creates a virtual environment beside the program.\n\n"
           "# Configuring\n\nEvery setting lives in one TOML file. The port defaults to 8000; change it when another "
           "service already listens there. Logs go to standard error unless a log file is named.")
LIBRARY = [
    {"id": "guides/install.md", "text": INSTALL, "meta": {"content_type": "text/markdown", "team": "red"}},
    {"id": "guides/usage.md", "text": "Run the program with a folder to index and a port to serve it on.",
     "meta": {"team": "red"}},
    {"id": "faq.txt", "text": "Frequently asked: the program runs offline once its models are fetched.",
     "meta": {"team": "blue"}},
    {"id": "notes/a", "text": "Kestrels hover over road verges while hunting voles.", "meta": {"team": "blue"}},
    {"id": "notes/b", "text": "Herons stand still in shallow water for minutes at a time.", "meta": {"team": "blue"}},
    {"id": "notes/c", "text": "Swifts sleep on the wing and rarely land at all.", "meta": {"team": "blue"}},
    {"id": "zip", "text": "PK\u0003\u0004 zipped", "meta": {"content_type": "application/zip"}},
]
INDEXED = sorted(d["id"] for d in LIBRARY if d["id"] != "zip")
_SCRATCH = itertools.count()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("documents-server")
    database = f"sqlite:///{home / 'data' / 'ragpress.db'}"
    _, admin_key = KeyStore(make_engine(database)).create_key(None, admin=True)
    for server in serving(home):
        admin = httpx.Client(base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {admin_key}"})
        keys = {name: admin.post("/v1/admin/keys", json={"tenant": name}).json()["key"] for name in ("alice", "bob")}
        clients = {name: httpx.Client(base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {key}"})
                   for name, key in keys.items()}
        yield {**clients, "database": database}


@pytest.fixture(scope="module")
def alice(setup: dict[str, Any]) -> httpx.Client:
    return setup["alice"]


@pytest.fixture(scope="module")
def bob(setup: dict[str, Any]) -> httpx.Client:
    return setup["bob"]


@pytest.fixture(scope="module")
def library(alice: httpx.Client) -> dict[str, Any]:
    return _ingest(alice, "library", LIBRARY)


def _ingest(client: httpx.Client, collection: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    response = client.post(f"/v1/collections/{collection}/documents", json={"documents": documents})
    assert response.status_code == 202, response.text
    return wait_for_job(client, response.json()["job_id"])


def _all_pages(client: httpx.Client, collection: str, limit: int) -> list[list[dict[str, Any]]]:
    pages, after = [], None
    while True:
        params = {"limit": limit, **({"after": after} if after else {})}
        body = client.get(f"/v1/collections/{collection}/documents", params=params).json()
        pages.append(body["documents"])
        after = body["next_after"]
        if after is None:
            return pages


def _ids(client: httpx.Client, collection: str) -> list[str]:
    return [d["id"] for page in _all_pages(client, collection, 1000) for d in page]


def _hits(client: httpx.Client, collection: str, query: str) -> list[str]:
    body = client.post(f"/v1/collections/{collection}/query", json={"query": query, "generate": False}).json()
    return [d["doc_id"] for d in body["documents"]]


# --- listing and the chunk view -----------------------------------------------------------------------------------
def test_a_collection_lists_by_id_a_page_at_a_time(alice: httpx.Client, library: dict[str, Any]) -> None:
    pages = _all_pages(alice, "library", limit=3)
    assert [[d["id"] for d in page] for page in pages] == [
        ["faq.txt", "guides/install.md", "guides/usage.md"], ["notes/a", "notes/b", "notes/c"], ["zip"]]
    second = alice.get("/v1/collections/library/documents", params={"limit": 3, "after": "guides/usage.md"}).json()
    assert second["next_after"] == "notes/c"


def test_each_listed_document_has_its_status_and_unit_count(alice: httpx.Client, library: dict[str, Any]) -> None:
    listed = {d["id"]: d for d in alice.get("/v1/collections/library/documents").json()["documents"]}
    assert all(listed[i]["status"] == "indexed" and listed[i]["units"] > 0 and "error" not in listed[i]
               for i in INDEXED)
    assert sum(d["units"] for d in listed.values()) == alice.get("/v1/collections/library").json()["indexed_units"]
    assert listed["faq.txt"]["meta"] == {"team": "blue"} and len(listed["faq.txt"]["content_hash"]) == 64
    assert listed["zip"]["status"] == "failed" and listed["zip"]["units"] == 0
    assert "unsupported content type 'application/zip'" in listed["zip"]["error"]


@pytest.mark.parametrize("limit", [0, 1001])
def test_a_page_size_outside_1_to_1000_is_refused(alice: httpx.Client, library: dict[str, Any], limit: int) -> None:
    response = alice.get("/v1/collections/library/documents", params={"limit": limit})
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


def test_a_document_shows_every_unit_with_its_level(alice: httpx.Client, library: dict[str, Any]) -> None:
    document = alice.get("/v1/collections/library/documents/guides/install.md").json()
    chunks = document["chunks"]
    assert document["id"] == "guides/install.md" and len(chunks) == document["units"]
    levels = [c["level"] for c in chunks]
    assert {"document", "section", "chunk", "slice"} <= set(levels)
    assert levels == sorted(levels, key=LEVELS.index)  # coarsest first
    assert next(c["text"] for c in chunks if c["level"] == "section").startswith("# Installing")
    assert {"position", "parent_id", "start", "end"} <= chunks[1]["meta"].keys()
    assert not {"tenant", "collection", "team"} & chunks[1]["meta"].keys()  # scope hidden, document meta shown once


@pytest.mark.parametrize("path", ["/v1/collections/library/documents/guides/missing.md",
                                  "/v1/collections/nowhere/documents/faq.txt", "/v1/collections/nowhere/documents"])
def test_unknown_documents_and_collections_are_404(alice: httpx.Client, library: dict[str, Any], path: str) -> None:
    response = alice.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found" and response.json()["error"]["message"].startswith("No ")


# --- deleting documents -------------------------------------------------------------------------------------------
@pytest.fixture
def scratch(alice: httpx.Client) -> str:
    name = f"scratch-{next(_SCRATCH)}"
    _ingest(alice, name, [{"id": d["id"], "text": d["text"], "meta": d["meta"]} for d in LIBRARY[1:6]])
    return name


def test_documents_are_deleted_by_id_units_and_all(alice: httpx.Client, scratch: str) -> None:
    units = alice.get(f"/v1/collections/{scratch}/documents/notes/a").json()["units"]
    response = alice.post(f"/v1/collections/{scratch}/documents/delete", json={"ids": ["notes/a", "not-there"]})
    assert response.json() == {"deleted": ["notes/a"], "units_removed": units}
    assert _ids(alice, scratch) == ["faq.txt", "guides/usage.md", "notes/b", "notes/c"]
    assert "notes/a" not in _hits(alice, scratch, "kestrels hunting voles")


def test_documents_are_deleted_by_filter(alice: httpx.Client, scratch: str) -> None:
    response = alice.post(f"/v1/collections/{scratch}/documents/delete",
                          json={"filters": {"field": "meta.team", "operator": "==", "value": "blue"}})
    assert response.status_code == 200 and response.json()["deleted"] == ["faq.txt", "notes/a", "notes/b", "notes/c"]
    assert _ids(alice, scratch) == ["guides/usage.md"]


def test_one_document_with_a_slash_in_its_id_is_deleted_by_its_path(alice: httpx.Client, scratch: str) -> None:
    response = alice.delete(f"/v1/collections/{scratch}/documents/guides/usage.md")
    assert response.status_code == 200 and response.json()["deleted"] == "guides/usage.md"
    assert alice.delete(f"/v1/collections/{scratch}/documents/guides/usage.md").status_code == 404


@pytest.mark.parametrize(("body", "message"), [
    ({"ids": ["a"], "filters": {"field": "meta.team", "operator": "==", "value": "red"}}, "exactly one of 'ids'"),
    ({}, "exactly one of 'ids'"),
    ({"filters": {}}, "filters: Value error, is empty, which would match every document"),
    ({"filters": {"field": "meta.team", "value": "red"}}, "filters: Value error, filters needs an 'operator'"),
    ({"ids": []}, "ids: List should have at least 1 item"),
])
def test_a_delete_that_does_not_say_what_to_delete_is_refused(
    alice: httpx.Client, library: dict[str, Any], body: dict[str, Any], message: str
) -> None:
    response = alice.post("/v1/collections/library/documents/delete", json=body)
    assert response.status_code == 422 and message in response.json()["error"]["message"]
    assert len(_ids(alice, "library")) == len(LIBRARY)


# --- deleting a collection ----------------------------------------------------------------------------------------
def test_a_deleted_collection_is_gone_for_listing_queries_and_reads(alice: httpx.Client) -> None:
    _ingest(alice, "doomed", LIBRARY[3:6])
    units = alice.get("/v1/collections/doomed").json()["indexed_units"]
    response = alice.delete("/v1/collections/doomed")
    assert response.json() == {"deleted": "doomed", "documents_removed": 3, "units_removed": units}
    for answer in (alice.get("/v1/collections/doomed/documents"), alice.get("/v1/collections/doomed"),
                   alice.post("/v1/collections/doomed/query", json={"query": "herons", "generate": False}),
                   alice.delete("/v1/collections/doomed")):
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
    assert "doomed" not in [c["name"] for c in alice.get("/v1/collections").json()["collections"]]


def test_documents_still_queued_do_not_bring_a_deleted_collection_back(alice: httpx.Client) -> None:
    documents = [{"id": f"bird-{n}", "text": f"Bird note {n}: the wren sings loudly for its size. " * 8}
                 for n in range(160)]  # ten batches: most are still queued when the delete comes
    job_id = alice.post("/v1/collections/racing/documents", json={"documents": documents}).json()["job_id"]
    assert alice.delete("/v1/collections/racing").status_code == 200
    job = wait_for_job(alice, job_id)
    assert job["status"] == "cancelled", job
    assert alice.get("/v1/collections/racing").status_code == 404
    alice.put("/v1/collections/racing", json={})
    recreated = alice.get("/v1/collections/racing").json()
    assert (recreated["documents"], recreated["units"], recreated["indexed_units"]) == (0, 0, 0)


# --- tenants ------------------------------------------------------------------------------------------------------
def test_another_tenant_can_neither_see_nor_delete_the_documents(
    alice: httpx.Client, bob: httpx.Client, library: dict[str, Any]
) -> None:
    _ingest(bob, "library", [{"id": "faq.txt", "text": "Bob's own FAQ about beekeeping.", "meta": {"team": "red"}}])
    assert _ids(bob, "library") == ["faq.txt"]
    assert bob.get("/v1/collections/library/documents/faq.txt").json()["meta"] == {"team": "red"}
    assert bob.get("/v1/collections/library/documents/guides/install.md").status_code == 404
    assert bob.delete("/v1/collections/library/documents/guides/install.md").status_code == 404
    by_id = bob.post("/v1/collections/library/documents/delete", json={"ids": ["guides/install.md", "notes/a"]})
    assert by_id.json() == {"deleted": [], "units_removed": 0}
    by_filter = bob.post("/v1/collections/library/documents/delete",
                         json={"filters": {"field": "meta.team", "operator": "==", "value": "blue"}})
    assert by_filter.json() == {"deleted": [], "units_removed": 0}
    assert bob.delete("/v1/collections/library").json()["documents_removed"] == 1
    assert _ids(alice, "library") == sorted(d["id"] for d in LIBRARY)
    assert "faq.txt" in _hits(alice, "library", "Does the program run offline?")


def test_another_tenant_cannot_list_or_delete_a_collection_it_does_not_have(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    _ingest(alice, "only-alice", LIBRARY[3:4])
    assert bob.get("/v1/collections/only-alice/documents").status_code == 404
    assert bob.get("/v1/collections/only-alice/documents/notes/a").status_code == 404
    assert bob.post("/v1/collections/only-alice/documents/delete", json={"ids": ["notes/a"]}).status_code == 404
    assert bob.delete("/v1/collections/only-alice").status_code == 404
    assert _ids(alice, "only-alice") == ["notes/a"]


# --- short job ids ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [8, 12])
def test_a_job_is_found_by_the_short_id_the_console_shows(
    alice: httpx.Client, library: dict[str, Any], length: int
) -> None:
    job_id = library["job_id"]
    assert alice.get(f"/v1/jobs/{job_id[:length]}").json()["job_id"] == job_id


def test_a_job_is_cancelled_by_its_short_id(alice: httpx.Client) -> None:
    job_id = alice.post("/v1/collections/short/documents", json={"documents": LIBRARY[3:4]}).json()["job_id"]
    cancelled = alice.post(f"/v1/jobs/{job_id[:12]}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["job_id"] == job_id


def test_a_short_id_that_fits_no_job_or_several_is_refused(
    setup: dict[str, Any], alice: httpx.Client, bob: httpx.Client, library: dict[str, Any]
) -> None:
    with JobStore(setup["database"]).engine.begin() as conn:  # two ids that share their first 8 characters
        conn.execute(jobs.insert(), [{"id": f"abcdef01-0000-4000-8000-00000000000{n}", "tenant": "alice",
                                      "collection": "library", "cancelled": False, "created_at": datetime.now(UTC)}
                                     for n in (1, 2)])
    for ambiguous in (alice.get("/v1/jobs/abcdef01"), alice.post("/v1/jobs/abcdef01-0000/cancel")):
        assert ambiguous.status_code == 409 and ambiguous.json()["error"]["code"] == "ambiguous_job_id"
    assert alice.get("/v1/jobs/abcdef01-0000-4000-8000-000000000001").status_code == 200
    assert bob.get("/v1/jobs/abcdef01").status_code == 404  # another tenant's jobs are not candidates
    assert bob.get(f"/v1/jobs/{library['job_id'][:12]}").status_code == 404
    too_short = alice.get(f"/v1/jobs/{library['job_id'][:7]}")
    assert too_short.status_code == 404 and "at least its first 8 characters" in too_short.json()["error"]["message"]
    assert alice.get("/v1/jobs/ffffffff").status_code == 404



@pytest.mark.parametrize("doc_id", ["guides/../secret.md", "./readme.md", "a/./b.md", ".."])
def test_an_id_a_url_could_not_carry_is_refused_at_ingestion(alice: httpx.Client, doc_id: str) -> None:
    # clients resolve dot segments before sending, so such a document could be neither fetched nor deleted
    response = alice.post("/v1/collections/dots/documents", json={"documents": [{"id": doc_id, "text": "Hello."}]})
    assert response.status_code == 422, response.text
    assert "has a '.' or '..' segment" in response.json()["error"]["message"]
    assert alice.get("/v1/collections/dots").status_code == 404
