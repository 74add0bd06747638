"""A bounded fuzz of the routes a tenant can reach: whatever the body, the answer is never a 5xx and never a hang.

One real server per module, a tiny collection, ``generate: false`` queries. Hypothesis runs derandomized (the
same examples on every run, no example database), so CI sees a stable set; ``max_examples`` keeps the module
to a few minutes on two cores. Documents the API accepts must also index: a job that hangs, or one the index
writer refuses (its rules and the API's would disagree), fails the documents test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import ServerProcess, serving, wait_for_job

from ragpress.pipelines.loader import builtin_yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COLLECTION = "fuzz"
TIMEOUT_S = 60  # generous: a request that takes longer is a hang
FUZZ = settings(deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # The fuzz sends a few hundred requests a minute from one address: above the default rate limit.
    yield from serving(tmp_path_factory.mktemp("fuzz-home"), env={"RAGPRESS_RATE_LIMIT_PER_MINUTE": "1000000"})


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=TIMEOUT_S) as http:
        documents = [{"id": "lisbon", "text": "Lisbon is the capital of Portugal.", "meta": {"year": 2024}},
                     {"id": "porto", "text": "Porto lies on the Douro river.", "meta": {"tags": ["river"]}}]
        job = http.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": documents}).json()
        assert wait_for_job(http, job["job_id"])["status"] == "succeeded"
        yield http


def url_text(value: Any) -> str:
    """``value`` as text a URL can carry (a lone surrogate has no UTF-8 bytes to percent-encode)."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def send(client: httpx.Client, method: str, path: str, body: Any = None, raw: bytes | None = None,
         params: dict[str, str] | None = None) -> httpx.Response:
    """One request; fails on a 5xx (with the body that caused it) or a hang."""
    content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    try:
        response = client.request(method, path, content=content, params=params,
                                  headers={"content-type": "application/json"})
    except httpx.TimeoutException:
        pytest.fail(f"{method} {path} hung for {TIMEOUT_S} s on {content!r:.500}")
    assert response.status_code < 500, f"{method} {path} -> {response.status_code} {response.text[:500]} " \
                                       f"for {content!r:.1000}"
    if response.status_code >= 400:
        assert response.json()["error"]["message"]
    return response


# ------------------------------------------------------------------ strategies

# Each strategy mixes well-formed input (so the fuzz reaches retrieval and indexing, not just the validators)
# with anything at all. WILD_TEXT is all of Unicode, lone surrogates included: json.dumps escapes them as
# \udXXX, as an attacker would send them.
WILD_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
TEXT = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=60)
KEY = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=20)
KEYS = KEY | st.sampled_from(["year", "tags", "tenant", "a.b", "", "k" * 129]) | WILD_TEXT
SCALAR = (st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
          | st.floats(allow_nan=False, allow_infinity=False) | TEXT)
WILD_SCALAR = (SCALAR | st.integers() | st.floats() | WILD_TEXT
               | st.sampled_from([1e308, -1e308, 5e-324, 2**63, 2**64, -(2**63) - 1]))


def deep(levels: int) -> Any:
    value: Any = 1
    for level in range(levels):
        value = [value] if level % 2 else {"n": value}
    return value


JSON = st.recursive(WILD_SCALAR, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                    max_leaves=20)
DEEP = st.integers(1, 40).map(deep)
FIELD = st.sampled_from(["meta.year", "meta.tags", "id", "content", "meta.tenant", "meta.source.year", 'meta."a b"'])
FIELDS = FIELD | FIELD | st.sampled_from(["meta", "meta.", "meta.a.b.c", "embedding", 'meta."x\\y"']) | WILD_SCALAR
OPERATOR = st.sampled_from(["==", "!=", ">", ">=", "<", "<=", "in", "not in"])
VALUE = SCALAR | st.lists(SCALAR, max_size=4) | st.sampled_from(["2024-05-01", "2024-05-01T12:00:00Z", "20240501"])
COMPARISON = st.fixed_dictionaries({"field": FIELD, "operator": OPERATOR, "value": VALUE})
WILD_COMPARISON = st.fixed_dictionaries(
    {"field": FIELDS, "operator": OPERATOR | st.sampled_from(["AND", "~"]) | WILD_SCALAR, "value": VALUE | JSON},
    optional={"conditions": JSON})
FILTERS = st.recursive(
    COMPARISON | COMPARISON | WILD_COMPARISON,
    lambda inner: st.fixed_dictionaries({"operator": st.sampled_from(["AND", "OR", "NOT", "XOR"]),
                                         "conditions": st.lists(inner, min_size=1, max_size=3) | JSON}),
    max_leaves=8) | JSON | DEEP
PARAMS = st.dictionaries(
    st.sampled_from(["embedder", "retriever", "generator", "ranker", "pruner"]) | WILD_TEXT,
    st.dictionaries(st.sampled_from(["top_k", "filters", "level", "scope", "max_new_tokens", "query"]) | WILD_TEXT,
                    st.integers(-5, 200) | FILTERS | JSON, max_size=3) | JSON,
    max_size=3)
QUERY = st.fixed_dictionaries(
    {"query": st.sampled_from(["capital of Portugal", "river", " "]) | TEXT | WILD_TEXT, "generate": st.just(False)},
    optional={"top_k": st.integers(1, 20) | st.integers() | JSON, "filters": FILTERS | st.none(), "params": PARAMS,
              "pipeline": st.sampled_from(["query", "pruned", "nope", "../x"]) | WILD_TEXT,
              "stream": st.booleans(), "extra": JSON})
META_VALUE = SCALAR | st.lists(SCALAR, max_size=4) | st.dictionaries(KEY, SCALAR | st.lists(SCALAR), max_size=3)
META = (st.dictionaries(KEY, META_VALUE, max_size=6) | st.dictionaries(KEY, META_VALUE, max_size=6)
        | st.dictionaries(KEYS, META_VALUE | JSON | DEEP, max_size=6)
        | st.fixed_dictionaries({"content_type": st.sampled_from(["text/markdown", "text/html", "image/png"])})
        | JSON)
DOCUMENT = st.fixed_dictionaries(
    {"text": st.sampled_from(["A short document. With two sentences.", "# Title\n\nBody text."]) | TEXT | TEXT
     | WILD_TEXT},
    optional={"id": TEXT | TEXT | WILD_TEXT | WILD_SCALAR, "meta": META})
# Mostly one well-formed document whose meta is the variable, so most bodies reach the meta rules and the index.
ONE_DOCUMENT = st.fixed_dictionaries({"documents": st.tuples(st.fixed_dictionaries(
    {"text": st.sampled_from(["Meta under test. Two sentences."]) | TEXT, "meta": META},
    optional={"id": TEXT})).map(list)})
DOCUMENTS = ONE_DOCUMENT | ONE_DOCUMENT | st.fixed_dictionaries(
    {"documents": st.lists(DOCUMENT, min_size=1, max_size=3) | JSON},
    optional={"kv_precompute": st.sampled_from(["lazy", "eager", "never"]) | JSON})
# Raw bodies: bytes, JSON-ish token soup (brackets, numbers, escapes, literals) and deep nesting.
TOKENS = st.sampled_from(['{', '}', '[', ']', ':', ',', '"', '\\', '\\ud800', '\\u', 'NaN', '-Infinity', '1e400',
                          '9' * 30, 'true', 'null', '"documents"', '"query"', '"text"', ' ', '\n', '\x00'])
RAW = (st.binary(max_size=200) | st.lists(TOKENS, max_size=60).map("".join).map(str.encode)
       | st.integers(30, 5000).map(lambda n: b"[" * n + b"]" * n))


def mutated_yaml(base: str, inserts: list[tuple[int, str]]) -> str:
    for position, token in inserts:
        index = position % (len(base) + 1)
        base = base[:index] + token + base[index:]
    return base


YAML_TOKENS = st.sampled_from(["&a ", "*a", "!!python/object:os.system ", "{", "[", ": ", "- ", "\t", "\n  ", "<<: ",
                               "? ", "%YAML 1.1\n", "---\n", "...\n", "'", '"', "\\u", "type: os.system\n",
                               "init_parameters: {}\n", "~", "1e400", "*"]) | WILD_TEXT
COMPONENT_TYPES = st.sampled_from([
    "ragpress.indexers.embedders.QueryEmbedder", "ragpress.indexers.retrievers.ScopedEmbeddingRetriever",
    "ragpress.generators.local_generator.LocalGenerator", "haystack.components.builders.PromptBuilder",
    "ragpress.indexers.chunk_writer.ChunkWriter", "os.system", "builtins.eval", "subprocess.Popen"]) | WILD_TEXT
PIPELINE = st.fixed_dictionaries(
    {"components": st.dictionaries(st.sampled_from(["embedder", "retriever", "generator"]) | WILD_TEXT,
                                   st.fixed_dictionaries({"type": COMPONENT_TYPES},
                                                         optional={"init_parameters": st.dictionaries(KEYS, JSON,
                                                                                                      max_size=4)}),
                                   max_size=3)},
    optional={"connections": st.lists(st.fixed_dictionaries({"sender": WILD_TEXT, "receiver": WILD_TEXT}),
                                      max_size=3),
              "metadata": JSON, "max_runs_per_component": WILD_SCALAR})
BUILTINS = [builtin_yaml(name) for name in ("query", "pruned")]
YAML_TEXT = (PIPELINE.map(lambda data: yaml.safe_dump(data, allow_unicode=True))
             | st.tuples(st.sampled_from(BUILTINS), st.lists(st.tuples(st.integers(0, 5000), YAML_TOKENS),
                                                             max_size=4)).map(lambda p: mutated_yaml(*p))
             | WILD_TEXT | st.lists(YAML_TOKENS, max_size=40).map("".join))
NAMES = st.from_regex(r"fz[A-Za-z0-9_.-]{0,20}", fullmatch=True) | st.sampled_from(["query", "-bad", "a" * 65, "x%2F"])


# ------------------------------------------------------------------ the routes

@settings(FUZZ, max_examples=200)
@given(QUERY)
def test_query_bodies_never_get_a_5xx(client: httpx.Client, body: dict[str, Any]) -> None:
    send(client, "POST", f"/v1/collections/{COLLECTION}/query", body)


@settings(FUZZ, max_examples=100)
@given(FILTERS, PARAMS)
def test_filters_and_params_alone_never_get_a_5xx(client: httpx.Client, filters: Any, params: Any) -> None:
    send(client, "POST", f"/v1/collections/{COLLECTION}/query",
         {"query": "capital", "generate": False, "filters": filters})
    send(client, "POST", f"/v1/collections/{COLLECTION}/query",
         {"query": "capital", "generate": False, "params": params})


ACCEPTED_JOBS: list[str] = []


@settings(FUZZ, max_examples=120)
@given(DOCUMENTS)
def test_document_bodies_never_get_a_5xx(client: httpx.Client, body: dict[str, Any]) -> None:
    response = send(client, "POST", f"/v1/collections/{COLLECTION}-docs/documents", body)
    if response.status_code == 202:
        ACCEPTED_JOBS.append(response.json()["job_id"])


def test_every_accepted_document_job_ends_and_none_is_refused_by_the_index(client: httpx.Client) -> None:
    deadline = time.monotonic() + 300
    for job_id in ACCEPTED_JOBS:
        job = wait_for_job(client, job_id, timeout_s=max(deadline - time.monotonic(), 1))
        assert job["status"] in ("succeeded", "partial", "failed"), job
        for error in job["errors"]:
            assert "cannot be indexed" not in error["error"], error  # the API let through what the index refuses
    hits = send(client, "POST", f"/v1/collections/{COLLECTION}/query", {"query": "capital", "generate": False})
    assert hits.status_code == 200 and hits.json()["documents"]


@settings(FUZZ, max_examples=150)
@given(st.sampled_from([f"/v1/collections/{COLLECTION}/query", f"/v1/collections/{COLLECTION}/documents",
                        "/v1/pipelines/query/rollback"]), RAW)
def test_raw_bodies_never_get_a_5xx(client: httpx.Client, path: str, raw: bytes) -> None:
    send(client, "POST", path, raw=raw)


@settings(FUZZ, max_examples=120)
@given(NAMES, YAML_TEXT)
def test_pipeline_yaml_never_gets_a_5xx(client: httpx.Client, name: str, text: str) -> None:
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate here is invalid UTF-8: a 400 to check too
    send(client, "POST", f"/v1/pipelines/{name}/validate", raw=raw)
    if name != "query":  # saving over a built-in would change what the query fuzz runs
        send(client, "PUT", f"/v1/pipelines/{name}", raw=raw)


@settings(FUZZ, max_examples=60)
@given(YAML_TEXT, TEXT | WILD_TEXT)
def test_pipeline_dry_runs_never_get_a_5xx(client: httpx.Client, text: str, query: str) -> None:
    params = {"dry_run": "true", "collection": COLLECTION, "query": url_text(query)}
    send(client, "POST", "/v1/pipelines/fz-dry/validate", raw=text.encode("utf-8", "surrogatepass"), params=params)


@settings(FUZZ, max_examples=100)
@given(NAMES, st.fixed_dictionaries({"version": st.integers() | JSON}) | JSON, st.integers() | WILD_TEXT)
def test_pipeline_versions_and_rollbacks_never_get_a_5xx(client: httpx.Client, name: str, body: Any,
                                                         version: Any) -> None:
    send(client, "GET", f"/v1/pipelines/{name}", params={"version": url_text(version)})
    send(client, "GET", f"/v1/pipelines/{name}/versions")
    send(client, "POST", f"/v1/pipelines/{name}/rollback", body)


@settings(FUZZ, max_examples=80)
@given(TEXT | WILD_TEXT, JSON | st.fixed_dictionaries({"kv_precompute": JSON}))
def test_other_tenant_routes_never_get_a_5xx(client: httpx.Client, name: str, body: Any) -> None:
    segment = quote(url_text(name), safe="")  # any text as one path segment
    send(client, "DELETE", f"/v1/collections/{COLLECTION}/documents/{segment}")
    send(client, "GET", f"/v1/jobs/{segment}")
    send(client, "PUT", f"/v1/collections/{COLLECTION}-options", body)
