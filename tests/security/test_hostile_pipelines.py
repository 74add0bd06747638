"""A tenant's pipeline reaches nothing but its own collection, whichever way it is sent.

Run as an ordinary tenant ("mallory") against a real server with keys required. Every hostile pipeline is
tried four ways: saved (PUT), validated, dry-run, and, saved behind the server's back as a version from
before today's rules, queried. None may read another tenant's documents, write anything, read a server file,
reach a network address or carry a server secret out; a canary HTTP server on loopback records any attempt.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from support import ServerProcess, wait_for_job

from ragpress.base.api_keys import KeyStore
from ragpress.base.database import make_engine, metadata
from ragpress.pipelines.loader import builtin_yaml
from ragpress.pipelines.registry import pipeline_versions

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "sk-canary-server-secret-4417"
ALICE_FACT = "Alice's launch code is 4417."
YAML = {"content-type": "application/yaml"}


class _Canary(BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def _record(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        _Canary.hits.append(f"{self.command} {self.path} {dict(self.headers)} {body}")
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"data": [], "choices": []}')

    do_GET = do_POST = _record

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def canary() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canary)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _component(kind: str, **params: Any) -> str:
    lines = [f"    type: {kind}"]
    if params:
        lines.append("    init_parameters:")
        lines += [f"      {key}: {value}" for key, value in params.items()]
    return "\n".join(lines)


def _pipeline(components: dict[str, str], connections: list[tuple[str, str]]) -> str:
    text = "components:\n" + "".join(f"  {name}:\n{body}\n" for name, body in components.items())
    text += "connections:\n" + "".join(f"  - sender: {s}\n    receiver: {r}\n" for s, r in connections)
    return text


def _query_pipeline_with(extra: dict[str, str], connections: list[tuple[str, str]]) -> str:
    """The built-in query pipeline's embedder and retriever plus ``extra``."""
    base = {"embedder": _component("ragpress.indexers.embedders.QueryEmbedder"),
            "retriever": _component("ragpress.indexers.retrievers.ScopedEmbeddingRetriever", top_k=4)}
    return _pipeline({**base, **extra}, [("embedder.embedding", "retriever.query_embedding"), *connections])


def hostile_pipelines(canary: str) -> dict[str, tuple[str, str]]:
    """name -> (YAML, a phrase the refusal must contain). Each stands for a rule, not only one finding."""
    other_scope = "\"{{ {'tenant': 'alice', 'collection': 'notes'} }}\""
    adapter = _component("haystack.components.converters.OutputAdapter", template=other_scope,
                         output_type="ragpress.base.schema.Scope")
    return {
        # 1. a server-set input fed from another component
        "scope_from_template": (_query_pipeline_with(
            {"forge": adapter}, [("forge.output", "retriever.scope")]), "cannot be used in a tenant"),
        "scope_from_retriever_output": (_query_pipeline_with(
            {"expander": _component("ragpress.indexers.context_expander.MultiScaleExpander")},
            [("retriever.documents", "expander.documents"), ("retriever.documents", "expander.scope")]),
            "set by the server"),
        # 2. any writer in a query pipeline
        "writer": (_query_pipeline_with(
            {"convert": _component("ragpress.indexers.converters.TextConverter"),
             "write": _component("ragpress.indexers.chunk_writer.ChunkWriter")},
            [("convert.documents", "write.documents")]), "cannot be used in a tenant"),
        # 3. local files and internal URLs
        "file_reader": (_pipeline({"read": _component("haystack.components.converters.txt.TextFileToDocument")},
                                  []), "cannot be used in a tenant"),
        "url_fetcher": (_pipeline({"fetch": _component("haystack.components.fetchers.LinkContentFetcher")}, []),
                        "cannot be used in a tenant"),
        "model_from_a_server_directory": (_pipeline(
            {"embedder": _component("ragpress.indexers.embedders.QueryEmbedder", model="/etc")}, []), "not offered"),
        "pruner_weights_from_a_path": (_pipeline(
            {"pruner": _component("ragpress.pruners.component.ProvencePruner", model="/tmp")}, []), "not offered"),
        "ingestion_embedder_reading_a_server_directory": (_pipeline(
            {"e": _component("ragpress.indexers.late_unit_embedder.LateUnitEmbedder", model="/etc")}, []),
            "cannot be used in a tenant"),
        "unscoped_engine_retriever": (_pipeline(
            {"r": _component("ragpress.indexers.edge_retrievers.EdgeEmbeddingRetriever")}, []),
            "cannot be used in a tenant"),
        # 4. secrets sent away
        "openai_embedder": (_pipeline({"e": _component(
            "haystack.components.embedders.OpenAITextEmbedder", api_base_url=canary)}, []),
            "cannot be used in a tenant"),
        "remote_generator_url": (_query_pipeline_with(
            {"generator": _component("ragpress.generators.remote_generator.RemoteGenerator", base_url=canary)},
            [("retriever.documents", "generator.documents")]), "set by the server"),
        "remote_generator_other_secret": (_query_pipeline_with(
            {"generator": _component("ragpress.generators.remote_generator.RemoteGenerator",
                                     api_key='{"type": "env_var", "env_vars": ["OPENAI_API_KEY"], "strict": false}')},
            [("retriever.documents", "generator.documents")]), "set by the server"),
        "secret_in_a_plain_parameter": (_query_pipeline_with(
            {"rank": _component("haystack.components.rankers.meta_field.MetaFieldRanker",
                                meta_field='{"type": "env_var", "env_vars": ["OPENAI_API_KEY"], "strict": false}')},
            [("retriever.documents", "rank.documents")]), "serialized object"),
        "kv_store_elsewhere": (_query_pipeline_with(
            {"generator": _component("ragpress.generators.kv_generator.KVCacheGenerator", store='{"path": "/tmp/x"}')},
            [("retriever.documents", "generator.documents")]), "set by the server"),
        # templates: a sandbox refusal, a CPU loop, or wiring into any socket
        "prompt_template": (_pipeline({"p": _component(
            "haystack.components.builders.PromptBuilder", template="\"{{ ''.__class__.__mro__ }}\"")}, []),
            "cannot be used in a tenant"),
        # memory and CPU: a large model in every component, a prompt read on every query, a huge batch
        "generator_as_reranker": (_query_pipeline_with(
            {"rr": _component("ragpress.rerankers.reranker.Reranker", model="gemma-3-270m")},
            [("retriever.documents", "rr.documents")]), "not offered"),
        "long_system_prompt": (_query_pipeline_with(
            {"generator": _component("ragpress.generators.local_generator.LocalGenerator", system_prompt="z" * 3000)},
            [("retriever.documents", "generator.documents")]), "the limit is 2,000"),
        "device_of_its_choosing": (_pipeline(
            {"embedder": _component("ragpress.indexers.embedders.QueryEmbedder", device="cpu")}, []),
            "set by the server"),
        "huge_batch": (_pipeline(
            {"embedder": _component("ragpress.indexers.embedders.QueryEmbedder", batch_size=10**9)}, []),
            "from 1 to 64"),
        # 6. YAML that expands or is too large
        "alias_bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\ncomponents: {}\n", "anchors and aliases"),
        "huge": ("components: {}\nmetadata:\n  pad: " + "x" * 100_000 + "\n", "limit is"),
        "python_tag": ("components:\n  x: !!python/object/apply:os.system ['true']\n", "tags"),
        "init_parameters_list": (_pipeline({"e": "    type: ragpress.indexers.embedders.QueryEmbedder\n"
                                                  "    init_parameters: [1, 2]"}, []), "must be a mapping"),
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, canary: str) -> Iterator[dict[str, Any]]:
    home = tmp_path_factory.mktemp("hostile")
    engine = make_engine(f"sqlite:///{home / 'data' / 'ragpress.db'}")
    keys = KeyStore(engine)
    (_, alice_key), (_, mallory_key) = keys.create_key("alice"), keys.create_key("mallory")
    attacks = hostile_pipelines(canary)
    _save_behind_the_servers_back(engine, "mallory", attacks)
    server = ServerProcess(home, env={"RAGPRESS_AUTH": "required", "OPENAI_API_KEY": SECRET,
                                      "RAGPRESS_REMOTE_GENERATOR_URL": canary,
                                      "RAGPRESS_REMOTE_GENERATOR_API_KEY": SECRET})
    try:
        server.wait_ready()
        as_ = lambda key: httpx.Client(base_url=server.url, timeout=120,  # noqa: E731
                                       headers={"Authorization": f"Bearer {key}"})
        alice, mallory = as_(alice_key), as_(mallory_key)
        for client, text in ((alice, ALICE_FACT), (mallory, "Mallory grows tomatoes.")):
            job = client.post("/v1/collections/notes/documents",
                              json={"documents": [{"id": "fact", "text": text}]}).json()["job_id"]
            assert wait_for_job(client, job)["status"] == "succeeded"
        yield {"server": server, "alice": alice, "mallory": mallory, "attacks": attacks}
    finally:
        server.stop()


def _save_behind_the_servers_back(engine: Any, tenant: str, attacks: dict[str, tuple[str, str]]) -> None:
    """Versions as an older server might have stored them: queried, they must meet today's rules."""
    metadata.create_all(engine, tables=[pipeline_versions])
    with engine.begin() as conn:
        for name, (text, _) in attacks.items():
            conn.execute(pipeline_versions.insert().values(tenant=tenant, name=f"old-{name}", version=1, yaml=text,
                                                           deleted=False, created_at=datetime.now(UTC)))


def _leaks(response: httpx.Response) -> bool:
    return SECRET in response.text or "4417" in response.text


ATTACK_NAMES = sorted(hostile_pipelines("http://127.0.0.1:9").keys())


@pytest.mark.parametrize("attack", ATTACK_NAMES)
def test_a_hostile_pipeline_is_refused_by_put_validate_dry_run_and_at_query_time(
        setup: dict[str, Any], attack: str) -> None:
    mallory = setup["mallory"]
    text, phrase = setup["attacks"][attack]

    saved = mallory.put(f"/v1/pipelines/{attack}", content=text, headers=YAML)
    assert saved.status_code == 422, saved.text
    assert phrase in saved.json()["error"]["message"]
    assert mallory.get(f"/v1/pipelines/{attack}").status_code == 404

    checked = mallory.post(f"/v1/pipelines/{attack}/validate", content=text, headers=YAML).json()
    assert checked["valid"] is False and phrase in " ".join(p["message"] for p in checked["problems"])

    dry = mallory.post(f"/v1/pipelines/{attack}/validate", content=text, headers=YAML,
                       params={"dry_run": "true", "collection": "notes", "query": "launch code"})
    assert dry.json()["valid"] is False and dry.json()["dry_run"] is None and not _leaks(dry)

    queried = mallory.post("/v1/collections/notes/query", json={"query": "What is the launch code?",
                                                                "pipeline": f"old-{attack}"})
    assert queried.status_code == 422, queried.text
    assert "cannot run on this server" in queried.json()["error"]["message"] and not _leaks(queried)


def test_nothing_reached_the_network_and_nothing_was_written(setup: dict[str, Any]) -> None:
    for attack in ATTACK_NAMES:  # order-independent: run every attack once more before looking
        text, _ = setup["attacks"][attack]
        setup["mallory"].post(f"/v1/pipelines/{attack}/validate", content=text, headers=YAML,
                              params={"dry_run": "true", "collection": "notes", "query": "launch code"})
    assert _Canary.hits == []
    alice = setup["alice"].post("/v1/collections/notes/query", json={"query": "launch code", "generate": False})
    assert [d["text"] for d in alice.json()["documents"]] == [ALICE_FACT]
    assert setup["mallory"].get("/v1/collections/notes").json()["documents"] == 1


@pytest.mark.parametrize(("params", "phrase"), [
    ({"retriever": {"scope": {"tenant": "alice", "collection": "notes"}}}, "set by the server"),
    ({"retriever": {"filters": {"field": "meta.tenant", "operator": "==", "value": "alice"}}}, "`filters` field"),
    ({"generator": {"documents": [{"content": "planted"}]}}, "takes no such input"),
    ({"generator": {"streaming_callback": "print"}}, "set by the server"),
    ({"retriever": {"top_k": "5"}}, "expects int or null, got str"),
    ({"retriever": {"top_k": True}}, "expects int or null, got bool"),
])
def test_query_params_cannot_set_server_inputs_objects_or_wrong_types(
        setup: dict[str, Any], params: dict[str, Any], phrase: str) -> None:
    response = setup["mallory"].post("/v1/collections/notes/query",
                                     json={"query": "launch code", "params": params})
    assert response.status_code == 422, response.text
    assert phrase in response.json()["error"]["message"] and not _leaks(response)


def test_the_built_in_pipelines_still_save_and_run_for_a_tenant(setup: dict[str, Any]) -> None:
    mallory = setup["mallory"]
    for name in ("query", "plain", "pruned", "kv", "remote"):
        assert mallory.put(f"/v1/pipelines/mine-{name}", content=builtin_yaml(name), headers=YAML).status_code == 200
    hits = mallory.post("/v1/collections/notes/query", json={"query": "tomatoes", "pipeline": "mine-pruned",
                                                             "generate": False}).json()
    assert [d["doc_id"] for d in hits["documents"]] == ["fact"] and not any("4417" in d["text"]
                                                                           for d in hits["documents"])


def test_a_dry_run_shows_only_the_callers_own_documents(setup: dict[str, Any]) -> None:
    dry = setup["mallory"].post("/v1/pipelines/q/validate", content=builtin_yaml("query"), headers=YAML,
                                params={"dry_run": "true", "collection": "notes", "query": "launch code"}).json()
    assert dry["valid"] is True
    assert [d["text"] for d in dry["dry_run"]["documents"]] == ["Mallory grows tomatoes."]
