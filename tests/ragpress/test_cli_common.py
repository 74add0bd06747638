"""What every command shares: a failure is one line saying what to do, and the server is the configured one."""

from __future__ import annotations

import pytest
import typer
from fake_server import FakeServer
from support import free_port

from ragpress import cli_common
from ragpress.base.settings import get_settings
from ragpress.cli_common import ask, fail, running_server, server_url

pytestmark = pytest.mark.unit


def test_a_failure_says_what_went_wrong_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exited:
        fail("the index is locked.", code=3)
    assert exited.value.exit_code == 3 and "error: the index is locked." in capsys.readouterr().err


def test_the_server_is_the_one_named_or_the_configured_one() -> None:
    settings = get_settings()
    assert server_url("http://elsewhere:9000") == "http://elsewhere:9000"
    assert server_url(None) == f"http://{settings.host}:{settings.port}"


def test_a_server_that_does_not_answer_is_named_with_how_to_start_one(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(typer.Exit):
        running_server(url)
    assert f"no ragpress server answers at {url}; start one with `ragpress serve`" in " ".join(
        capsys.readouterr().err.split())


def test_what_the_server_refuses_is_its_message(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    server = FakeServer({("GET", "/v1/jobs/j1"): (200, {"job_id": "j1"})})
    monkeypatch.setattr(cli_common, "running_server", lambda _url: server.client())
    assert ask(None, lambda client: client.job("j1")) == {"job_id": "j1"}
    with pytest.raises(typer.Exit):
        ask(None, lambda client: client.job("j2"))
    assert "error: No such thing." in capsys.readouterr().err
