"""``ragpress pipeline``: validate a file here, with line and field; show, diff and apply on a running server."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_server import FakeServer
from typer.testing import CliRunner

from ragpress import cli_common
from ragpress.cli_pipeline import pipeline_app
from ragpress.pipelines.loader import builtin_yaml

pytestmark = pytest.mark.unit

SAVED = {"name": "query", "version": 3, "yaml": "components: {}\n", "builtin": False}


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(pipeline_app, list(args))
    return result.exit_code, " ".join(result.output.split())


def serve(monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> FakeServer:
    monkeypatch.setattr(cli_common, "running_server", lambda _url, _key: server.client())
    return server


def test_a_valid_file_is_said_to_be_valid(tmp_path: Path) -> None:
    (tmp_path / "q.yaml").write_text(builtin_yaml("query"))
    assert invoke("validate", str(tmp_path / "q.yaml")) == (0, f"valid {tmp_path / 'q.yaml'}")


def test_an_invalid_file_names_the_line_and_field(tmp_path: Path) -> None:
    text = builtin_yaml("query").replace("ragpress.indexers.retrievers.ScopedEmbeddingRetriever", "os.system")
    (tmp_path / "q.yaml").write_text(text)
    code, output = invoke("validate", str(tmp_path / "q.yaml"))
    line = next(n for n, row in enumerate(text.splitlines(), start=1) if "os.system" in row)
    assert code == 1 and f"invalid line {line}, components.retriever.type:" in output


def test_show_and_diff_read_the_saved_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = serve(monkeypatch, FakeServer({("GET", "/v1/pipelines/query"): (200, SAVED)}))
    assert invoke("show", "query", "--version", "3") == (0, "components: {}")
    assert server.requests[-1].url.params["version"] == "3"
    (tmp_path / "q.yaml").write_text("components: {a: 1}\n")
    code, output = invoke("diff", "query", str(tmp_path / "q.yaml"))
    assert code == 0 and "-components: {} +components: {a: 1}" in output and "query (v3)" in output


def test_apply_sends_the_file_as_yaml_and_reports_the_new_version(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    server = serve(monkeypatch, FakeServer({("PUT", "/v1/pipelines/query"): (200, {**SAVED, "version": 4})}))
    (tmp_path / "q.yaml").write_text("components: {}\n")
    assert invoke("apply", "query", str(tmp_path / "q.yaml")) == (0, "saved query version 4")
    sent = server.requests[-1]
    assert sent.headers["content-type"] == "application/yaml" and sent.content == b"components: {}\n"


def test_a_refused_save_is_the_servers_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    refusal = {"error": {"code": "invalid_pipeline", "message": "line 3: not allowed"}}
    serve(monkeypatch, FakeServer({("PUT", "/v1/pipelines/query"): (422, refusal)}))
    (tmp_path / "q.yaml").write_text("components: {}\n")
    assert invoke("apply", "query", str(tmp_path / "q.yaml")) == (1, "error: line 3: not allowed")
