"""``ragpress eval`` on small labelled sets: the corpus ingested once, every question asked through the service as
REST asks it, one table per run, ablated pipelines measured and removed again; bad input refused with what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import ServerProcess, free_port
from typer.testing import CliRunner, Result

from ragpress.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eval"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path_factory.mktemp("eval-server"), env={"RAGPRESS_KV_PRECOMPUTE": "eager"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def run(*args: str, env: dict[str, str | None] | None = None) -> Result:
    result = CliRunner().invoke(app, ["eval", *args], env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def said(result: Result) -> str:
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def squad_run(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, dict[str, Any]]:
    out = tmp_path_factory.mktemp("eval") / "out.json"
    result = run("--data", str(FIXTURES / "squad2_mini.json"), "--format", "squad", "--pipeline", "plain",
                 "--pipeline", "query", "--ablate", "pruner", "--limit", "4", "--json", str(out),
                 "--server", server.url)
    assert result.exit_code == 0, result.output
    return result, json.loads(out.read_text())


def test_every_pipeline_and_ablation_answers_every_question_through_the_server(squad_run):
    result, written = squad_run
    assert set(written["records"]) == {"plain", "query", "query-without-pruner"}
    for variant, records in written["records"].items():
        assert len(records) == 4, variant
        assert not [r for r in records if "error" in r], variant
        assert all("answer" in r for r in records)
    assert "F1" in result.output and "plain" in result.output  # the table (its cells wrap in a narrow terminal)
    for key in ("f1", "removed", "gold_kept", "abstain_unanswerable", "abstain_answerable", "ttft_ms", "prune_ms"):
        assert key in written["summaries"]["query"], key


def test_the_default_pipeline_prunes_and_reads_cached_states_where_plain_does_neither(squad_run):
    _, written = squad_run
    plain, default = written["summaries"]["plain"], written["summaries"]["query"]
    assert plain["removed"] == 0 and "kv_hit_ratio" not in plain
    assert default["removed"] > 0
    assert default["kv_hit_ratio"] == 1.0  # states pre-computed at ingestion, the default
    assert "removed" not in written["summaries"]["query-without-pruner"] or \
        written["summaries"]["query-without-pruner"]["removed"] == 0


def test_the_ablated_pipeline_is_removed_after_the_run(squad_run, server: ServerProcess):
    names = {p["name"] for p in httpx.get(f"{server.url}/v1/pipelines").json()["pipelines"]}
    assert "query-without-pruner" not in names and {"query", "plain"} <= names


def test_a_second_run_reuses_the_collection_and_indexes_nothing_again(squad_run, server: ServerProcess):
    result = run("--data", str(FIXTURES / "squad2_mini.json"), "--format", "squad", "--pipeline", "plain",
                 "--limit", "1", "--no-generate", "--server", server.url)
    assert result.exit_code == 0, result.output
    jobs = httpx.get(f"{server.url}/v1/jobs").json()["jobs"]
    assert sorted(j["total"] for j in jobs)[-1] == 1 and "nDCG@10" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "beir"], "is not a folder"),
    (["--format", "squad", "--ablate", "embedder"], "stages that can go: retriever, expander, pruner, gate"),
    (["--format", "squad", "--ablate", "nothing"], "query: the pipeline has no stage 'nothing'"),
    (["--format", "squad", "--kv-precompute", "soon"], "must be eager or lazy"),
])
def test_bad_input_is_refused_with_what_to_do(server: ServerProcess, args: list[str], message: str):
    result = run("--data", str(FIXTURES / "squad2_mini.json"), *args, "--server", server.url)
    assert result.exit_code == 1 and message in said(result)


def test_without_a_server_it_runs_embedded_and_measures_retrieval_on_a_beir_folder(tmp_path: Path):
    env = {"RAGPRESS_HOME": str(tmp_path), "RAGPRESS_PORT": str(free_port()), "RAGPRESS_URL": None,
           "RAGPRESS_KV_PRECOMPUTE": "lazy"}
    result = run("--data", str(FIXTURES / "scifact_mini"), "--format", "beir", "--pipeline", "plain",
                 "--json", str(tmp_path / "out.json"), env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out.json").read_text())["summaries"]["plain"]
    assert summary["questions"] == 3 and summary["ndcg10"] > 0.5 and summary["recall100"] == 1.0
    assert "f1" not in summary  # retrieval only: a BEIR set has no reference answers


def test_an_ablation_never_replaces_a_pipeline_the_tenant_saved_under_its_name(server: ServerProcess):
    mine = httpx.get(f"{server.url}/v1/pipelines/plain").json()["yaml"]
    assert httpx.put(f"{server.url}/v1/pipelines/query-without-gate", content=mine,
                     headers={"content-type": "application/yaml"}).status_code == 200
    result = run("--data", str(FIXTURES / "squad2_mini.json"), "--format", "squad", "--ablate", "gate",
                 "--server", server.url)
    assert result.exit_code == 1 and "exists already" in said(result)
    kept = httpx.get(f"{server.url}/v1/pipelines/query-without-gate").json()
    assert kept["yaml"] == mine and kept["version"] == 1
