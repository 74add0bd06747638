"""The OpenAI-compatible chat endpoint, spoken to by the official ``openai`` client against a real server with keys."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
import yaml
from support import ServerProcess, wait_for_job

from ragpress.base.api_keys import KeyStore
from ragpress.base.database import make_engine

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FACTS = {
    "eiffel": "The Eiffel Tower in Paris was finished in 1889 by the company of Gustave Eiffel.",
    "quokka": "The quokka is a small marsupial that lives on Rottnest Island near Perth.",
    "kosciuszko": "Mount Kosciuszko, 2,228 metres high, is the highest mountain in mainland Australia.",
}
EIFFEL = [{"role": "user", "content": "When was the Eiffel Tower finished?"}]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Alice's collections 'facts' and 'diary' and her pipeline 'search' (no generator); Bob's own 'facts'."""
    home = tmp_path_factory.mktemp("chat")
    keys = KeyStore(make_engine(f"sqlite:///{home / 'data' / 'ragpress.db'}"))
    (_, alice), (_, bob) = keys.create_key("alice"), keys.create_key("bob")
    server = ServerProcess(home)
    try:
        server.wait_ready()
        rest = {key: httpx.Client(base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {key}"})
                for key in (alice, bob)}
        ingest(rest[alice], "facts", FACTS)
        ingest(rest[alice], "diary", {"entry": "Alice's launch code is 4417."})
        ingest(rest[bob], "facts", {"bees": "Bob keeps bees; his hives give twenty kilograms of honey a year."})
        search = yaml.safe_load(rest[alice].get("/v1/pipelines/query").json()["yaml"])
        del search["components"]["generator"]
        search["connections"] = [c for c in search["connections"] if not c["receiver"].startswith("generator.")]
        saved = rest[alice].put("/v1/pipelines/search", content=yaml.safe_dump(search),
                                headers={"content-type": "application/yaml"})
        assert saved.status_code == 200, saved.text
        yield {"url": server.url, "alice": alice, "bob": bob}
    finally:
        server.stop()


def ingest(client: httpx.Client, collection: str, texts: dict[str, str]) -> None:
    documents = [{"id": doc_id, "text": text} for doc_id, text in texts.items()]
    job = client.post(f"/v1/collections/{collection}/documents", json={"documents": documents}).json()["job_id"]
    assert wait_for_job(client, job)["status"] == "succeeded"


def chat_client(served: dict[str, Any], key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served['url']}/v1", api_key=key, max_retries=0, timeout=300)


@pytest.fixture(scope="module")
def alice(served: dict[str, Any]) -> openai.OpenAI:
    return chat_client(served, served["alice"])


@pytest.fixture(scope="module")
def bob(served: dict[str, Any]) -> openai.OpenAI:
    return chat_client(served, served["bob"])


def test_the_client_streams_an_answer_then_its_sources_then_the_usage(alice: openai.OpenAI) -> None:
    chunks = list(alice.chat.completions.create(model="facts", messages=EIFFEL, stream=True,
                                                stream_options={"include_usage": True}))
    answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "1889" in answer
    assert chunks[0].choices[0].delta.role == "assistant"
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finished] == ["stop"]
    sources = finished[0].model_extra["sources"]
    assert sources[0]["doc_id"] == "eiffel" and "1889" in sources[0]["text"]
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1))
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert {c.id for c in chunks} == {chunks[0].id} and chunks[0].model == "facts/query"


def test_a_whole_answer_reads_only_the_last_user_message_and_comes_with_sources(alice: openai.OpenAI) -> None:
    earlier = [{"role": "system", "content": "You are a travel guide."},
               {"role": "user", "content": "Where do quokkas live?"},
               {"role": "assistant", "content": "On Rottnest Island."}]
    completion = alice.chat.completions.create(model="facts/query", messages=[*earlier, *EIFFEL])
    assert completion.object == "chat.completion" and completion.model == "facts/query"
    assert "1889" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    sources = completion.model_extra["sources"]
    assert sources[0]["doc_id"] == "eiffel" and sources[0]["index"] == 1
    assert {"id", "doc_id", "score", "text"} <= sources[0].keys() and sources[0]["score"] > 0


def test_collection_and_pipeline_fields_take_precedence_over_the_model(alice: openai.OpenAI) -> None:
    completion = alice.chat.completions.create(
        model="gpt-4o", messages=EIFFEL, n=1, temperature=0.2, max_tokens=50,  # accepted, not used
        extra_body={"collection": "facts", "pipeline": "query", "top_k": 1})
    assert completion.model == "facts/query"
    assert [s["doc_id"] for s in completion.model_extra["sources"]] == ["eiffel"]


def test_models_lists_the_tenants_collections_alone_and_with_each_pipeline(
    alice: openai.OpenAI, bob: openai.OpenAI
) -> None:
    listed = {m.id: m for m in alice.models.list()}
    assert {"facts", "facts/kv", "facts/pruned", "facts/search", "diary"} <= listed.keys()
    assert not {"facts/query", "facts/ingestion"} & listed.keys()  # 'facts' is facts/query; ingestion answers nothing
    assert listed["facts"].object == "model" and listed["facts"].owned_by == "alice" and listed["facts"].created > 0
    assert not any(m.id == "diary" or m.id.endswith("/search") for m in bob.models.list())


def test_a_wrong_key_raises_the_clients_authentication_error(served: dict[str, Any]) -> None:
    wrong = chat_client(served, "rp_not-a-real-key")
    with pytest.raises(openai.AuthenticationError) as raised:
        wrong.chat.completions.create(model="facts", messages=EIFFEL)
    assert "The API key is unknown or revoked" in str(raised.value)
    assert (raised.value.code, raised.value.type) == ("unauthorized", "authentication_error")
    assert raised.value.response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()


@pytest.mark.parametrize(("model", "message"), [
    ("gpt-4o", "No collection 'gpt-4o'"),
    ("facts/nope", "No pipeline 'nope'"),
])
def test_a_model_naming_nothing_raises_not_found_saying_what_a_model_is(
    alice: openai.OpenAI, model: str, message: str
) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        alice.chat.completions.create(model=model, messages=EIFFEL, stream=True)
    assert message in str(raised.value) and "GET /v1/models lists them" in str(raised.value)
    assert (raised.value.code, raised.value.type) == ("model_not_found", "invalid_request_error")


def test_a_tenant_cannot_chat_over_another_tenants_collection(bob: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        bob.chat.completions.create(model="diary", messages=[{"role": "user", "content": "What is the launch code?"}])
    # his 'facts', not Alice's; read by the plain pipeline, whose every hit is a source (the default's gate would
    # rightly refuse a question about Paris over a collection about bees)
    own = bob.chat.completions.create(model="facts/plain", messages=EIFFEL)
    assert [s["doc_id"] for s in own.model_extra["sources"]] == ["bees"]


def test_a_pipeline_that_writes_no_answer_is_refused_as_such(alice: openai.OpenAI) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as raised:
        alice.chat.completions.create(model="facts/search", messages=EIFFEL)
    assert raised.value.code == "no_answer" and "has no generator" in str(raised.value)
    with pytest.raises(openai.APIError, match="has no generator"):  # found out mid-stream: an error event
        list(alice.chat.completions.create(model="facts/search", messages=EIFFEL, stream=True))


@pytest.mark.parametrize(("change", "message"), [
    ({"messages": [{"role": "system", "content": "Be brief."}]}, "there is no user message"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
     "has a 'image_url' part; the question is read as text only"),
    ({"messages": [{"role": "user", "content": "  "}]}, "the last user message is empty"),
    ({"messages": [{"role": "user", "content": "why? " * 1000}]}, "5000 characters, more than 4000"),
    ({"messages": "When was it finished?"}, "messages: Input should be a valid list"),
    ({"tools": [{"type": "function", "function": {"name": "search"}}]}, "tools: ragpress answers from the collection"),
    ({"n": 2}, "n: ragpress writes one answer per request"),
    ({"response_format": {"type": "json_object"}}, "response_format: ragpress answers in plain text"),
    ({"model": 7}, "model: Input should be a valid string"),
    ({"temperature": 5}, "temperature: Input should be less than or equal to 2"),
    ({"collection": "../etc"}, "collection: String should match pattern"),
    ({"frobnicate": True}, "frobnicate: Extra inputs are not permitted"),
    ({"top_k": 10**6}, "top_k: 1000000 is above this server's limit"),  # the query's ceilings hold here too
    ({"top_k": 0}, "top_k: Input should be greater than or equal to 1"),
])
def test_a_request_ragpress_cannot_answer_as_asked_gets_a_422_saying_why(
    served: dict[str, Any], change: dict[str, Any], message: str
) -> None:
    response = httpx.post(f"{served['url']}/v1/chat/completions", json={"model": "facts", "messages": EIFFEL, **change},
                          headers={"Authorization": f"Bearer {served['alice']}"}, timeout=60)
    assert response.status_code == 422
    error = response.json()["error"]
    assert (error["code"], error["type"], error["param"]) == ("invalid_request", "invalid_request_error", None)
    assert message in error["message"]
