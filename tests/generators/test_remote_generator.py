"""The remote generator against a real OpenAI-compatible HTTP server backed by the bundled SmolLM2 model.

The server below is a small FastAPI app on a real socket (uvicorn in a thread) implementing
``POST /v1/chat/completions`` with and without ``stream: true``; its answers come from the same model and
decoding as ``LocalGenerator``. Error paths use the same server told to fail, and a port nobody listens on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from haystack import Document, Pipeline
from haystack.utils import Secret
from serialization import assert_pinned, assert_restored
from support import free_port

from ragpress.base.model_loading import causal_lm
from ragpress.generators.decoding import greedy_decode
from ragpress.generators.local_generator import LocalGenerator
from ragpress.generators.prompting import DEFAULT_SYSTEM_PROMPT
from ragpress.generators.remote_generator import API_KEY_ENV, RemoteGenerator, RemoteGeneratorError
from ragpress.pipelines.loader import builtin_yaml, load_pipeline
from ragpress.pipelines.registry import validate

pytestmark = pytest.mark.integration

MODEL = "SmolLM2-135M-Instruct"
KEY = "sk-test-not-a-real-key-4242"
PASSAGES = [Document(content="The Millau Viaduct was opened on 14 December 2004 in southern France."),
            Document(content="The Colosseum is an amphitheatre in Rome.")]  # most relevant first
QUESTION = "When was the Millau Viaduct opened?"


@dataclass
class ServerState:
    """What the test server was asked and how it should misbehave next."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_with: list[int] = field(default_factory=list)  # statuses to answer before succeeding
    malformed: bool = False


def make_app(state: ServerState) -> FastAPI:
    lm, tokenizer = causal_lm(MODEL)
    lock = threading.Lock()  # one generation at a time: the model's forward pass is not re-entrant here
    app = FastAPI()

    def generate(body: dict[str, Any], on_text: Any = None) -> tuple[str, str, int, int]:
        ids = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, tokenize=True,
                                            return_dict=False)
        with lock, torch.inference_mode():
            out = lm(input_ids=torch.tensor([ids]), use_cache=True)
            decoded = greedy_decode(lm, tokenizer, out.past_key_values, out.logits[0, -1], len(ids),
                                    int(body.get("max_tokens") or 32), time.perf_counter(), on_text)
        return decoded.text, decoded.finish_reason, len(ids), len(decoded.token_ids)

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": {"message": "Invalid API key", "type": "invalid_request_error"}}, 401)
        body = await request.json()
        state.requests.append(body)
        if state.fail_with:
            status = state.fail_with.pop(0)
            return JSONResponse({"error": {"message": "overloaded, try again"}}, status,
                                headers={"Retry-After": "0"} if status == 429 else None)
        if state.malformed:
            return JSONResponse({"id": "x", "object": "chat.completion", "choices": []})
        if body.get("stream"):
            return StreamingResponse(_events(body), media_type="text/event-stream")
        text, finish, prompt, completion = generate(body)
        return {"id": "cmpl-1", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}

    def _events(body: dict[str, Any]) -> Iterator[str]:
        pieces: list[str] = []
        _, finish, _, _ = generate(body, pieces.append)  # decode first, then send the pieces as SSE events
        for piece in pieces:
            chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": piece}}]}
            yield f"data: {json.dumps(chunk)}\n\n"
        last = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield f"data: {json.dumps(last)}\n\n"
        yield "data: [DONE]\n\n"

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[str, ServerState]]:
    state = ServerState()
    port = free_port()
    config = uvicorn.Config(make_app(state), host="127.0.0.1", port=port, log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    while not uv.started:
        if not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1", state
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def state(server: tuple[str, ServerState]) -> Iterator[ServerState]:
    server[1].requests.clear()
    yield server[1]
    server[1].fail_with.clear()
    server[1].malformed = False


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(API_KEY_ENV, KEY)


def remote(url: str, **kwargs: Any) -> RemoteGenerator:
    return RemoteGenerator(base_url=url, model=MODEL, max_new_tokens=24, backoff_s=0.01, **kwargs)


def test_it_answers_from_the_passages_like_the_local_generator(server: tuple[str, ServerState], state: ServerState,
                                                              key: None) -> None:
    result = remote(server[0]).run(query=QUESTION, documents=PASSAGES)
    assert "2004" in result["replies"][0]
    meta = result["meta"][0]
    assert meta["mode"] == "remote" and meta["abstained"] is False and meta["completion_tokens"] > 0
    # the words the server's model saw are exactly the local sequential prompt (same pieces, same order:
    # the most relevant passage last, nearest the question)
    local = LocalGenerator(MODEL)
    local.warm_up()
    tokenizer = local._tokenizer
    sent = tokenizer.apply_chat_template(state.requests[-1]["messages"], add_generation_prompt=True, tokenize=False)
    assert sent == tokenizer.decode(local.fit_to_budget(QUESTION, PASSAGES).sequential())
    assert sent.index("Colosseum") < sent.index("Millau") < sent.index("Question:")


def test_it_streams_through_the_callback(server: tuple[str, ServerState], state: ServerState, key: None) -> None:
    pieces: list[str] = []
    result = remote(server[0]).run(query=QUESTION, documents=PASSAGES,
                                   streaming_callback=lambda chunk: pieces.append(chunk.content))
    assert state.requests[-1]["stream"] is True
    assert len(pieces) > 1 and "".join(pieces).strip() == result["replies"][0]
    assert "2004" in result["replies"][0] and result["meta"][0]["finish_reason"] in ("stop", "length")


def test_runtime_arguments_override_init_values(server: tuple[str, ServerState], state: ServerState,
                                                key: None) -> None:
    result = remote(server[0], temperature=0.5).run(query=QUESTION, documents=PASSAGES, max_new_tokens=2,
                                                    temperature=0.0)
    assert state.requests[-1]["max_tokens"] == 2 and state.requests[-1]["temperature"] == 0.0
    assert result["meta"][0]["completion_tokens"] <= 2


def test_a_dead_server_gives_a_clear_error_naming_the_url(key: None) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with pytest.raises(RemoteGeneratorError, match="cannot connect") as error:
        remote(url, max_retries=1).run(query=QUESTION, documents=PASSAGES)
    assert url in str(error.value) and "2 attempt" in str(error.value)


def test_a_wrong_key_is_a_clear_401_error_without_the_key(server: tuple[str, ServerState], state: ServerState,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(API_KEY_ENV, "sk-wrong-secret-value")
    with caplog.at_level(logging.DEBUG), pytest.raises(RemoteGeneratorError, match="401") as error:
        remote(server[0]).run(query=QUESTION, documents=PASSAGES)
    message = str(error.value)
    assert API_KEY_ENV in message and server[0] in message
    assert "sk-wrong-secret-value" not in message and "sk-wrong-secret-value" not in caplog.text
    assert state.requests == []  # refused before any generation, and not retried


@pytest.mark.parametrize("failures", [[500], [503, 429]])
def test_transient_failures_are_retried_then_succeed(server: tuple[str, ServerState], state: ServerState,
                                                     key: None, failures: list[int]) -> None:
    state.fail_with = list(failures)
    result = remote(server[0], max_retries=3).run(query=QUESTION, documents=PASSAGES)
    assert "2004" in result["replies"][0]
    assert len(state.requests) == len(failures) + 1


def test_retries_are_bounded(server: tuple[str, ServerState], state: ServerState, key: None,
                             caplog: pytest.LogCaptureFixture) -> None:
    state.fail_with = [500, 500, 500, 500]
    with caplog.at_level(logging.WARNING), pytest.raises(RemoteGeneratorError, match="after 3 attempt") as error:
        remote(server[0], max_retries=2).run(query=QUESTION, documents=PASSAGES)
    assert "500" in str(error.value) and server[0] in str(error.value)
    assert len(state.requests) == 3 and KEY not in caplog.text and KEY not in str(error.value)


def test_streaming_retries_a_failure_before_the_first_token(server: tuple[str, ServerState], state: ServerState,
                                                            key: None) -> None:
    state.fail_with = [502]
    pieces: list[str] = []
    result = remote(server[0]).run(query=QUESTION, documents=PASSAGES,
                                   streaming_callback=lambda chunk: pieces.append(chunk.content))
    assert "2004" in result["replies"][0] and "".join(pieces).strip() == result["replies"][0]


def test_a_malformed_response_is_a_clear_error(server: tuple[str, ServerState], state: ServerState,
                                               key: None) -> None:
    state.malformed = True
    with pytest.raises(RemoteGeneratorError, match="malformed completion"):
        remote(server[0]).run(query=QUESTION, documents=PASSAGES)


def test_without_passages_it_abstains_without_calling_the_server() -> None:
    result = RemoteGenerator(base_url="http://127.0.0.1:9/v1").run(query="Anything?", documents=[])
    assert result["meta"][0]["abstained"] is True


@pytest.mark.parametrize("kwargs", [{"base_url": "ftp://host/v1"}, {"base_url": "http://user:pw@host/v1"},
                                    {"max_new_tokens": 0}, {"temperature": 3.0}, {"max_retries": -1},
                                    {"api_key": "sk-plain-string"}, {"model": " "}])
def test_bad_init_parameters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        RemoteGenerator(**kwargs)


def test_yaml_round_trip_keeps_parameters_and_never_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAGPRESS_REMOTE_GENERATOR_API_KEY_VLLM", KEY)
    pipeline = Pipeline()
    pipeline.add_component("generator", RemoteGenerator(
        base_url="http://gpu-box:8000/v1/", model="Qwen/Qwen2.5-7B-Instruct", max_new_tokens=7, temperature=0.2,
        api_key=Secret.from_env_var("RAGPRESS_REMOTE_GENERATOR_API_KEY_VLLM"), max_retries=5))
    text = pipeline.dumps()
    assert KEY not in text and "RAGPRESS_REMOTE_GENERATOR_API_KEY_VLLM" in text
    loaded = load_pipeline(text).get_component("generator")  # passes the allowlist: a ragpress module
    assert isinstance(loaded, RemoteGenerator)
    assert (loaded.base_url, loaded.model, loaded.max_new_tokens, loaded.temperature, loaded.max_retries) == (
        "http://gpu-box:8000/v1", "Qwen/Qwen2.5-7B-Instruct", 7, 0.2, 5)
    assert loaded.api_key.resolve_value() == KEY
    clear = Pipeline()
    clear.add_component("g", RemoteGenerator(api_key=Secret.from_token(KEY)))
    with pytest.raises(ValueError, match="token"):  # a key given in clear refuses to be written to YAML
        clear.dumps()


def test_the_builtin_remote_pipeline_takes_the_servers_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from ragpress.base.settings import get_settings

    generator = load_pipeline(builtin_yaml("remote")).get_component("generator")
    monkeypatch.setenv("RAGPRESS_REMOTE_GENERATOR_URL", "http://gpu-box:8000/v1")
    get_settings.cache_clear()
    try:
        assert generator.endpoint == "http://gpu-box:8000/v1/chat/completions"
    finally:
        monkeypatch.delenv("RAGPRESS_REMOTE_GENERATOR_URL")
        get_settings.cache_clear()


def test_a_tenant_pipeline_cannot_choose_the_server_or_the_key() -> None:
    from ragpress.pipelines.loader import PipelineInvalid

    yaml_text = builtin_yaml("remote").replace("      model: SmolLM2", "      base_url: http://evil:1/v1\n"
                                                                      "      model: SmolLM2")
    with pytest.raises(PipelineInvalid, match="base_url"):
        validate(yaml_text)
    validate(load_pipeline(builtin_yaml("remote")).dumps())  # a dumped pipeline (server defaults) saves


REMOTE_DEFAULTS = {"base_url": None, "model": "SmolLM2-135M-Instruct",
                   "api_key": {"type": "env_var", "env_vars": ["RAGPRESS_REMOTE_GENERATOR_API_KEY"], "strict": False},
                   "max_new_tokens": 64, "temperature": 0.0, "max_context_chars": 6000,
                   "system_prompt": DEFAULT_SYSTEM_PROMPT, "timeout_s": 60.0, "max_retries": 3, "backoff_s": 0.5}


@pytest.mark.unit
def test_to_dict_pins_the_serialized_shape() -> None:
    assert_pinned(RemoteGenerator(), REMOTE_DEFAULTS)


@pytest.mark.unit
def test_from_dict_restores_every_parameter() -> None:
    assert_restored(RemoteGenerator, {**REMOTE_DEFAULTS, "base_url": "http://127.0.0.1:8001/v1", "model": "qwen",
                                      "max_new_tokens": 16, "temperature": 0.5, "max_context_chars": 2000,
                                      "system_prompt": "Answer briefly.", "timeout_s": 5.0, "max_retries": 1,
                                      "backoff_s": 0.1})
