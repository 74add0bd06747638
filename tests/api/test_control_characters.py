"""Control characters a tenant sends in names and ids never reach the database as a 500: ids holding one are
refused at the door, and a lookup the database cannot even run (PostgreSQL takes no NUL in text) is a 422."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support import postgres_database, serving

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    for database in postgres_database():
        for server in serving(tmp_path_factory.mktemp("control-home"), env={"DATABASE_URL": database}):
            with httpx.Client(base_url=server.url, timeout=120) as client:
                assert client.put("/v1/collections/notes", json={}).status_code == 200
                yield client


@pytest.mark.parametrize("doc_id", ["a\x00b", "line\nbreak", "tab\there", "del\x7f"])
def test_a_document_id_with_a_control_character_is_refused(client: httpx.Client, doc_id: str) -> None:
    response = client.post("/v1/collections/notes/documents", json={"documents": [{"id": doc_id, "text": "Hi."}]})
    assert response.status_code == 422 and "holds a control character" in response.json()["error"]["message"]
    # written by hand: clients percent-encode such file names, a hostile one need not
    raw = (b'--x\r\nContent-Disposition: form-data; name="files"; filename="' + doc_id.encode()
           + b'"\r\nContent-Type: text/plain\r\n\r\nHi.\r\n--x--\r\n')
    upload = client.post("/v1/collections/notes/files", content=raw,
                         headers={"content-type": "multipart/form-data; boundary=x"})
    assert upload.status_code in (400, 422), upload.text  # the parser's refusal or ours, never stored


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/jobs/abcdefgh%00", None),
    ("POST", "/v1/jobs/abcdefgh%00/cancel", None),
    ("GET", "/v1/collections/notes/documents/a%00b", None),
    ("DELETE", "/v1/collections/notes/documents/a%00b", None),
    ("GET", "/v1/collections/notes/documents?after=a%00b", None),
    ("POST", "/v1/collections/notes/documents/delete", {"ids": ["a\x00b"]}),
])
def test_a_lookup_by_a_value_with_nul_is_a_clear_422_never_a_500(client: httpx.Client, method: str, path: str,
                                                                  body: dict[str, list[str]] | None) -> None:
    response = client.request(method, path, json=body)
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "cannot be stored or looked up" in message and "SELECT" not in message
