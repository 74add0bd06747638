"""Files over REST: PDF, DOCX, HTML, Markdown and text uploads against a real `ragpress serve`."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Any

import httpx
import pytest
from sample_files import docx_file, shared_stream_pdf
from support import FIXTURES, serving, wait_for_job

from ragpress.indexers.converters import convert

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FILES = FIXTURES / "files"
PDF, DOCX = (FILES / "giants-causeway.pdf").read_bytes(), (FILES / "sourdough.docx").read_bytes()
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MAX_DOCUMENT_BYTES, MAX_FILES, MAX_CONVERSION_S = 100_000, 8, 3


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    env = {"RAGPRESS_MAX_DOCUMENT_BYTES": str(MAX_DOCUMENT_BYTES), "RAGPRESS_MAX_DOCUMENTS_PER_REQUEST": str(MAX_FILES),
           "RAGPRESS_MAX_CONVERSION_S": str(MAX_CONVERSION_S)}
    for server in serving(tmp_path_factory.mktemp("files-server"), env=env):
        with httpx.Client(base_url=server.url, timeout=300) as client:
            yield client


@pytest.fixture(scope="module")
def upload(client: httpx.Client) -> dict[str, Any]:
    files = [
        ("files", ("giants-causeway.pdf", PDF, "application/pdf")),
        ("files", ("sourdough.docx", DOCX, DOCX_TYPE)),
        ("files", ("guides/lighthouse.md", b"# The lighthouse\n\nThe keeper logs the tide at dawn.", "text/markdown")),
        ("files", ("notes/menu.txt", "Café crème costs three euros.".encode("latin-1"), "text/plain; charset=latin1")),
        ("files", ("legacy.txt", "Crème brûlée".encode("latin-1"), "text/plain")),
        ("files", ("broken.pdf", b"%PDF-1.4 this is no PDF", "application/pdf")),
        ("files", ("sheet.xlsx", b"PK\x03\x04 a spreadsheet", "application/vnd.ms-excel")),
    ]
    response = client.post("/v1/collections/uploads/files", files=files)
    assert response.status_code == 202, response.text
    return {"response": response.json(), "job": wait_for_job(client, response.json()["job_id"])}


def _search(client: httpx.Client, query: str) -> list[dict[str, Any]]:
    response = client.post("/v1/collections/uploads/query", json={"query": query, "generate": False, "top_k": 3})
    assert response.status_code == 200, response.text
    return response.json()["documents"]


def test_an_upload_answers_with_its_job_and_how_each_file_is_read(upload: dict[str, Any]) -> None:
    files = {f["name"]: f for f in upload["response"]["files"]}
    assert list(files) == ["giants-causeway.pdf", "sourdough.docx", "guides/lighthouse.md", "notes/menu.txt",
                           "legacy.txt", "broken.pdf", "sheet.xlsx"]
    assert all(f["id"] == name for name, f in files.items())  # the file name is the document id
    assert files["sourdough.docx"]["content_type"] == DOCX_TYPE
    assert files["sheet.xlsx"]["content_type"] == "application/vnd.ms-excel"  # unsupported: as sent


@pytest.mark.parametrize(("query", "doc_id", "words"), [
    ("How many basalt columns does the causeway hold?", "giants-causeway.pdf", "40,000 interlocking basalt"),
    ("How often should a sourdough starter be fed?", "sourdough.docx", "Feed the starter twice a day"),
])
def test_uploaded_pdf_and_docx_come_back_as_searchable_text(
    client: httpx.Client, upload: dict[str, Any], query: str, doc_id: str, words: str
) -> None:
    first = _search(client, query)[0]
    assert first["doc_id"] == doc_id and words in first["text"]
    assert first["meta"]["filename"] == doc_id


@pytest.mark.parametrize(("doc_id", "data", "content_type"), [
    ("giants-causeway.pdf", PDF, "application/pdf"), ("sourdough.docx", DOCX, DOCX_TYPE)])
def test_the_originals_name_type_and_checksum_are_kept_in_meta(
    client: httpx.Client, upload: dict[str, Any], doc_id: str, data: bytes, content_type: str
) -> None:
    document = client.get(f"/v1/collections/uploads/documents/{doc_id}").json()
    assert document["status"] == "indexed"
    assert document["meta"] == {"filename": doc_id, "original_content_type": content_type,
                                "sha256": hashlib.sha256(data).hexdigest()}


def test_a_docx_heading_becomes_a_section(client: httpx.Client, upload: dict[str, Any]) -> None:
    chunks = client.get("/v1/collections/uploads/documents/sourdough.docx").json()["chunks"]
    sections = [c["text"] for c in chunks if c["level"] == "section"]
    assert any(text.startswith("# Keeping a sourdough starter") for text in sections)


def test_files_that_cannot_be_read_fail_alone_with_their_reason(
    client: httpx.Client, upload: dict[str, Any]
) -> None:
    job = upload["job"]
    assert job["status"] == "partial" and job["done"] == 4 and job["failed"] == 3
    reasons = {e["doc_id"]: e["error"] for e in job["errors"]}
    assert reasons["broken.pdf"].startswith("broken.pdf: not a readable PDF")
    assert reasons["sheet.xlsx"].startswith("sheet.xlsx: unsupported file type ('.xlsx', sent as 'application/")
    assert reasons["legacy.txt"].startswith("legacy.txt: not valid UTF-8 (byte 2)")
    listed = client.get("/v1/collections/uploads/documents").json()["documents"]
    assert {d["id"]: d["status"] for d in listed if d["status"] == "failed"} == dict.fromkeys(reasons, "failed")
    assert next(d for d in listed if d["id"] == "broken.pdf")["error"] == reasons["broken.pdf"]


def test_a_declared_charset_decodes_a_text_file(client: httpx.Client, upload: dict[str, Any]) -> None:
    chunks = client.get("/v1/collections/uploads/documents/notes/menu.txt").json()["chunks"]
    assert [c["text"] for c in chunks if c["level"] == "document"] == ["Café crème costs three euros."]


def test_sending_the_same_file_again_is_a_no_op(client: httpx.Client, upload: dict[str, Any]) -> None:
    response = client.post("/v1/collections/uploads/files", files=[("files", ("giants-causeway.pdf", PDF, ""))])
    job = wait_for_job(client, response.json()["job_id"])
    assert job["status"] == "succeeded" and job["skipped"] == 1


def test_the_kv_precompute_field_sets_the_collections_option(client: httpx.Client) -> None:
    response = client.post("/v1/collections/eager-files/files", data={"kv_precompute": "lazy"},
                           files=[("files", ("a.txt", b"Short note about kestrels.", "text/plain"))])
    assert response.status_code == 202
    wait_for_job(client, response.json()["job_id"])
    assert client.get("/v1/collections/eager-files").json()["kv_precompute"] == "lazy"


def test_text_that_grows_past_the_limit_in_conversion_fails_its_file(client: httpx.Client) -> None:
    wordy = docx_file("Long", ["The kestrel hovers over the verge. " * 400] * 8, ())  # ~110 KB of text
    assert len(wordy) < MAX_DOCUMENT_BYTES
    response = client.post("/v1/collections/grown/files", files=[("files", ("wordy.docx", wordy, DOCX_TYPE))])
    job = wait_for_job(client, response.json()["job_id"])
    assert job["status"] == "failed"
    size = len(convert(wordy, DOCX_TYPE, "wordy.docx").encode())
    assert f"wordy.docx: its text is {size:,} bytes; the limit is 100,000" in job["errors"][0]["error"]


@pytest.mark.parametrize(("request_args", "status", "code", "message"), [
    ({"json": {"files": ["a.pdf"]}}, 415, "unsupported_media_type", "multipart/form-data"),
    ({"files": [("kv_precompute", (None, "lazy"))]}, 422, "invalid_request", "files: no file sent"),
    ({"files": [("files", (None, "just text"))]}, 422, "invalid_request", "files[0] is a plain field, not a file"),
    ({"files": [("files", ("a.txt", b"one", "text/plain")), ("files", ("a.txt", b"two", "text/plain"))]},
     422, "invalid_request", "repeated: ['a.txt']"),
    ({"files": [("files", ("notes/../a.txt", b"one", "text/plain"))]},
     422, "invalid_request", "has a '.' or '..' segment, which a URL cannot carry"),
    ({"files": [("files", ("a.txt", b"one", "text/plain")), ("surprise", (None, "1"))]},
     422, "invalid_request", "surprise: Extra inputs are not permitted"),
    ({"files": [("files", ("a.txt", b"one", "text/plain")), ("kv_precompute", (None, "sometimes"))]},
     422, "invalid_request", "kv_precompute: "),
    ({"files": [("files", ("big.txt", b"x" * (MAX_DOCUMENT_BYTES + 1), "text/plain"))]},
     413, "document_too_large", "Nothing from this request was stored"),
    ({"files": [("files", (f"{n}.txt", b"n", "text/plain")) for n in range(MAX_FILES + 1)]},
     413, "too_many_documents", f"At most {MAX_FILES} documents per request"),
    ({"content": b"".join(b'--x\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % n
                          for n in range(5_000)) + b"--x--\r\n",
      "headers": {"content-type": "multipart/form-data; boundary=x"}}, 400, "invalid_multipart", "Too many fields"),
    ({"content": b"--x\r\nno headers at all", "headers": {"content-type": "multipart/form-data; boundary=x"}},
     400, "invalid_multipart", "The multipart body cannot be read"),
])
def test_an_upload_that_breaks_a_rule_is_refused_whole_with_a_clear_error(
    client: httpx.Client, request_args: dict[str, Any], status: int, code: str, message: str
) -> None:
    response = client.post("/v1/collections/refused/files", **request_args)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code and message in response.json()["error"]["message"]
    assert client.get("/v1/collections/refused").status_code == 404  # nothing was stored


def test_the_openapi_document_declares_the_multipart_body(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/v1/collections/{collection}/files"]["post"]["requestBody"]["content"]
    schema = document["components"]["schemas"][body["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]]
    assert schema["required"] == ["files"] and schema["properties"]["files"]["type"] == "array"
    assert schema["properties"]["files"]["items"]["contentMediaType"] == "application/octet-stream"


def test_a_file_too_slow_to_read_fails_alone_while_the_server_keeps_answering(client: httpx.Client) -> None:
    # 64 KB of PDF that a parser takes minutes over: it is read in a child process, stopped at its time limit
    slow = shared_stream_pdf(pages=400, stream_bytes=500_000)
    statuses: list[int] = []
    waits: list[float] = []

    def upload() -> None:
        files = [("files", ("slow.pdf", slow, "application/pdf")), ("files", ("quick.txt", b"Read at once.", None))]
        statuses.append(client.post("/v1/collections/slow/files", files=files).status_code)

    sender = threading.Thread(target=upload)
    sender.start()
    time.sleep(0.5)
    while sender.is_alive():  # the server is not held by the parsing, even for a moment
        started = time.monotonic()
        assert httpx.get(str(client.base_url.join("/healthz")), timeout=2).status_code == 200
        waits.append(time.monotonic() - started)
        time.sleep(0.2)
    assert statuses == [202] and waits and max(waits) < 1
    job = client.get("/v1/jobs").json()["jobs"][0]
    job = wait_for_job(client, job["job_id"])
    assert (job["status"], job["done"], job["failed"]) == ("partial", 1, 1)
    assert f"slow.pdf: reading it took longer than {MAX_CONVERSION_S} s" in job["errors"][0]["error"]
