"""The REST client: whatever a server answers (or not) is a ServerError with a message for a person, never a
KeyError or a JSON traceback. Shapes no ragpress server sends come from a real foreign HTTP server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import free_port

from ragpress.client import Client, ServerError

pytestmark = pytest.mark.unit

# path -> (status, content type, body): what a proxy, another service or an older server might answer
ANSWERS = {
    "/v1/jobs": (200, "application/json", b'{"items": []}'),
    "/v1/jobs/j1": (200, "text/html", b"<html><body>Welcome to nginx</body></html>"),
    "/v1/jobs/j2": (502, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"),
    "/v1/jobs/j3": (404, "application/json", b'{"detail": "Not Found"}'),
    "/v1/jobs/j4": (409, "application/json", b'{"error": {"code": "ambiguous_job_id", "message": "give more"}}'),
    "/v1/jobs/j5": (200, "application/json", b'["not", "an", "object"]'),
    "/v1/jobs/j6": (400, "application/json", b'{"error": "plain string"}'),
}


class Canned(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, content_type, body = ANSWERS.get(self.path, (404, "text/plain", b""))
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture(scope="module")
def foreign() -> Iterator[Client]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Canned)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Client(f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


def refusal(call: object) -> ServerError:
    with pytest.raises(ServerError) as raised:
        call()  # type: ignore[operator]
    return raised.value


def test_an_answer_without_what_a_ragpress_server_sends_says_so(foreign: Client) -> None:
    error = refusal(foreign.jobs)
    assert error.code == "unexpected_answer" and "answered GET /v1/jobs with an object without 'jobs'" in error.message


@pytest.mark.parametrize("job_id", ["j1", "j5"])
def test_a_body_that_is_not_a_json_object_says_so(foreign: Client, job_id: str) -> None:
    error = refusal(lambda: foreign.job(job_id))
    assert error.status == 200 and "something other than a JSON object" in error.message


def test_an_error_page_is_its_status_and_a_short_text(foreign: Client) -> None:
    error = refusal(lambda: foreign.job("j2"))
    assert error.status == 502 and "answered GET /v1/jobs/j2 with HTTP 502: <html><body><h1>502 Bad Gateway" in \
        error.message


@pytest.mark.parametrize("job_id", ["j3", "j6"])
def test_an_error_in_another_shape_is_still_a_server_error(foreign: Client, job_id: str) -> None:
    error = refusal(lambda: foreign.job(job_id))
    assert error.code == "http_error" and f"GET /v1/jobs/{job_id} with HTTP" in error.message


def test_an_error_in_the_apis_shape_is_its_code_and_message(foreign: Client) -> None:
    error = refusal(lambda: foreign.job("j4"))
    assert (error.status, error.code, error.message) == (409, "ambiguous_job_id", "give more")


def test_no_server_at_all_is_status_zero_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    error = refusal(lambda: Client(url).jobs())
    assert error.status == 0 and f"no ragpress server answers at {url}" in error.message


def test_ids_travel_as_path_segments() -> None:
    from ragpress.client import _segment

    assert _segment("a/b c?d", keep_slashes=True) == "a/b%20c%3Fd" and _segment("../x") == "..%2Fx"
