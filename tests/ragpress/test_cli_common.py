"""What every command shares: a failure is one line saying what to do, the server is the one named (flag or
RAGPRESS_URL) or the configured one, and a refused key says how to pass one."""

from __future__ import annotations

import pytest
import typer
from fake_server import FakeServer
from support import free_port

from ragpress import cli_common
from ragpress.base.settings import get_settings
from ragpress.cli_common import ask, explain, fail, running_server, server_url, url_of
from ragpress.client import ServerError

pytestmark = pytest.mark.unit


def test_a_failure_says_what_went_wrong_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited:
        fail("the index is locked.", code=3)
    assert exited.value.exit_code == 3 and "error: the index is locked." in capsys.readouterr().err


def test_the_server_is_the_one_named_or_the_configured_one() -> None:
    settings = get_settings()
    assert server_url("http://elsewhere:9000/") == "http://elsewhere:9000"
    assert server_url("elsewhere:9000") == "http://elsewhere:9000"
    assert server_url(None) == f"http://{settings.host}:{settings.port}"


def test_a_server_on_every_interface_is_reached_on_this_machine() -> None:
    assert url_of("0.0.0.0", 8000) == "http://127.0.0.1:8000"
    assert url_of("::", 8000) == "http://[::1]:8000" and url_of("::1", 81) == "http://[::1]:81"


def test_a_server_that_does_not_answer_is_named_with_how_to_start_one(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(typer.Exit):
        running_server(url, None)
    assert f"no ragpress server answers at {url}; start one with `ragpress serve`" in " ".join(
        capsys.readouterr().err.split())


def test_what_the_server_refuses_is_its_message(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer({("GET", "/v1/jobs/j1"): (200, {"job_id": "j1", "status": "queued", "total": 1, "done": 0,
                                                         "failed": 0})})
    monkeypatch.setattr(cli_common, "running_server", lambda _url, _key: server.client())
    assert ask(None, None, lambda client: client.job("j1"))["job_id"] == "j1"
    with pytest.raises(typer.Exit):
        ask(None, None, lambda client: client.job("j2"))
    assert "error: No such thing." in capsys.readouterr().err


def test_a_missing_key_says_how_to_pass_one_and_a_refused_key_says_so() -> None:
    unauthorized = ServerError(401, "unauthorized", "An API key is required.")
    assert "pass --api-key KEY or set RAGPRESS_API_KEY" in explain(unauthorized, None)
    assert "refused the API key (unknown or revoked)" in explain(unauthorized, "rp_old")
    assert explain(ServerError(404, "not_found", "No job 'x'."), "rp_key") == "No job 'x'."


@pytest.mark.parametrize("key", ["rp_a b", "rp_\u00e9", "rp_\n x"])
def test_a_key_no_header_can_carry_is_refused_before_sending(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit):
        cli_common.client(None, key)
    assert "no HTTP header can carry" in capsys.readouterr().err


def test_an_empty_key_is_no_key() -> None:
    assert "authorization" not in cli_common.client(None, "  ").http.headers
