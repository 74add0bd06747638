"""Answer from retrieved passages with any OpenAI-compatible server (vLLM, TGI, Ollama, llama.cpp server).

A drop-in for ``LocalGenerator`` in a query pipeline: the same inputs and outputs, the same prompt words
and passage order (most relevant nearest the question), streaming through the same callback. There is no
KV reuse: the server re-reads the passages on every request.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import StreamingChunk
from haystack.utils import Secret, deserialize_secrets_inplace

from ragpress.base.roles import Role
from ragpress.generators.local_generator import abstention_result, says_no_answer
from ragpress.generators.prompting import (
    DEFAULT_SYSTEM_PROMPT,
    new_token_limit,
    passage_text,
    passages_for_prompt,
    user_message,
)

logger = logging.getLogger(__name__)

API_KEY_ENV = "RAGPRESS_REMOTE_GENERATOR_API_KEY"
# Status codes worth another try: the server is overloaded or briefly broken, not refusing this request.
RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
MAX_RETRY_WAIT_S = 30.0


class RemoteGeneratorError(RuntimeError):
    """The remote server could not give an answer; the message names the URL, never the key."""


@component
class RemoteGenerator:
    """Generates a short answer grounded in ``documents`` with an OpenAI-compatible chat server.

    ``base_url`` is the server's API root (``.../v1``); unset, the server setting
    ``RAGPRESS_REMOTE_GENERATOR_URL`` is used. The API key is a Haystack ``Secret`` (by default the
    environment variable ``RAGPRESS_REMOTE_GENERATOR_API_KEY``, optional) and is never serialized or
    logged in clear. Transient failures (connection refused, 429, 5xx) are retried with exponential
    backoff up to ``max_retries`` times; streaming retries only until the first token has been sent.

    Usage:
        >>> gen = RemoteGenerator(base_url="http://127.0.0.1:8001/v1", model="Qwen/Qwen2.5-7B-Instruct")
        >>> gen.run(query="When was the tower finished?", documents=[Document(content="...in 1889.")])
        {'replies': ['It was finished in 1889.'], 'meta': [{'mode': 'remote', 'ttft_ms': ..., ...}]}
    """

    role: ClassVar[Role] = Role.GENERATOR

    def __init__(
        self,
        base_url: str | None = None,
        model: str = "SmolLM2-135M-Instruct",
        api_key: Secret | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        max_context_chars: int = 6000,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        if base_url is not None:
            _check_url(base_url)
        if not model.strip():
            raise ValueError("model must name the model the server should run.")
        if api_key is not None and not isinstance(api_key, Secret):
            raise ValueError("api_key must be a haystack Secret (e.g. Secret.from_env_var(...)), never a plain string.")
        new_token_limit(None, max_new_tokens)  # the same check as a run's override
        _check_temperature(temperature)
        if max_context_chars < 100:
            raise ValueError("max_context_chars must be at least 100.")
        if not system_prompt.strip():
            raise ValueError("system_prompt must not be empty.")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive.")
        if not 0 <= max_retries <= 10:
            raise ValueError("max_retries must be between 0 and 10.")
        if backoff_s < 0:
            raise ValueError("backoff_s must not be negative.")
        self.base_url = base_url.rstrip("/") if base_url else None
        self.model = model
        self.api_key = api_key if api_key is not None else Secret.from_env_var(API_KEY_ENV, strict=False)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.max_context_chars = max_context_chars
        self.system_prompt = system_prompt
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s

    def to_dict(self) -> dict[str, Any]:
        # Secret.to_dict refuses a token secret, so a key given in clear can never reach a YAML file
        return default_to_dict(
            self,
            base_url=self.base_url,
            model=self.model,
            api_key=self.api_key.to_dict(),
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            max_context_chars=self.max_context_chars,
            system_prompt=self.system_prompt,
            timeout_s=self.timeout_s,
            max_retries=self.max_retries,
            backoff_s=self.backoff_s,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RemoteGenerator:
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key"])
        return default_from_dict(cls, data)

    @property
    def endpoint(self) -> str:
        base = self.base_url
        if base is None:
            from ragpress.base.settings import get_settings

            base = get_settings().remote_generator_url
            if not base:
                raise RemoteGeneratorError(
                    "RemoteGenerator has no server: give base_url or set RAGPRESS_REMOTE_GENERATOR_URL.")
            _check_url(base)
        return base.rstrip("/") + "/chat/completions"

    def messages(self, query: str, documents: list[Document]) -> list[dict[str, str]]:
        """The chat request's messages: the same words and passage order as the local generator's prompt."""
        passages = passages_for_prompt(documents, len, self.max_context_chars)
        return [{"role": "system", "content": self.system_prompt},
                {"role": "user", "content": user_message(query, passages)}]

    @component.output_types(replies=list[str], meta=list[dict[str, Any]])
    def run(
        self,
        *,
        query: str,
        documents: list[Document] | None = None,
        max_new_tokens: int | None = None,
        streaming_callback: Callable[[StreamingChunk], None] | None = None,
        temperature: float | None = None,
    ) -> dict[str, Any]:
        """
        :param query: the question.
        :param documents: the passages to answer from, most relevant first; none means abstain.
        :param max_new_tokens: overrides the init value for this run.
        :param streaming_callback: called with each new piece of the answer.
        :param temperature: overrides the init value for this run.
        :returns: ``replies`` (one answer) and ``meta`` (time to first token, abstention, usage).
        """
        max_new_tokens = new_token_limit(max_new_tokens, self.max_new_tokens)
        if temperature is not None:  # a run's override is held to the init value's range
            _check_temperature(temperature)
        documents = [d for d in (documents or []) if passage_text(d).strip()]
        if not documents:
            return abstention_result(streaming_callback)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": self.messages(query, documents),
            "max_tokens": max_new_tokens,
            "temperature": self.temperature if temperature is None else temperature,
            "stream": streaming_callback is not None,
        }
        started = time.perf_counter()
        if streaming_callback is None:
            text, finish, usage, ttft = self._complete(body, started)
        else:
            text, finish, usage, ttft = self._stream(body, started, streaming_callback)
        meta = {
            "model": self.model,
            "mode": "remote",
            "prompt_tokens": int(usage.get("prompt_tokens", 0) or 0),
            "completion_tokens": int(usage.get("completion_tokens", 0) or 0),
            "ttft_ms": ttft * 1000,
            "finish_reason": finish or "stop",
            "abstained": says_no_answer(text),
        }
        return {"replies": [text], "meta": [meta]}

    # ---- HTTP -------------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = self.api_key.resolve_value() if self.api_key is not None else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _complete(self, body: dict[str, Any], started: float) -> tuple[str, str | None, dict[str, Any], float]:
        url = self.endpoint
        for attempt in self._attempts(url):
            with attempt as client:
                response = client.post(url, json=body, headers=self._headers())
                self._check(response, url)
                data = _json(response, url)
                try:
                    choice = data["choices"][0]
                    text = choice["message"]["content"]
                    if not isinstance(text, str):
                        raise TypeError("content is not a string")
                except (KeyError, IndexError, TypeError) as exc:
                    raise RemoteGeneratorError(
                        f"The generator server at {_safe(url)} sent a malformed completion ({exc}).") from None
                elapsed = time.perf_counter() - started  # no stream: the first token arrives with the last
                return text.strip(), choice.get("finish_reason"), data.get("usage") or {}, elapsed
        raise AssertionError("unreachable")  # _attempts either yields a result or raises

    def _stream(self, body: dict[str, Any], started: float, callback: Callable[[StreamingChunk], None],
                ) -> tuple[str, str | None, dict[str, Any], float]:
        url = self.endpoint
        for attempt in self._attempts(url):
            with attempt as client, client.stream("POST", url, json=body, headers=self._headers()) as response:
                if response.status_code >= 400:
                    response.read()
                self._check(response, url)
                parts: list[str] = []
                finish: str | None = None
                usage: dict[str, Any] = {}
                ttft = 0.0
                for event in _sse_events(response, url):
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        piece = (choice.get("delta") or {}).get("content") or ""
                        finish = choice.get("finish_reason") or finish
                        if piece:
                            if not parts:
                                ttft = time.perf_counter() - started
                            parts.append(piece)
                            attempt.sent_any = True  # from here a retry would repeat tokens already streamed
                            callback(StreamingChunk(content=piece))
                return "".join(parts).strip(), finish, usage, ttft
        raise AssertionError("unreachable")

    def _attempts(self, url: str) -> Iterator[_Attempt]:
        """Attempts at one request: each yields a client; a retryable failure inside it leads to the next."""
        for number in range(self.max_retries + 1):
            attempt = _Attempt(self.timeout_s)
            yield attempt
            if attempt.error is None:
                return
            last = number == self.max_retries
            if last or attempt.sent_any:
                raise RemoteGeneratorError(
                    f"The generator server at {_safe(url)} failed after {number + 1} attempt(s): {attempt.error}"
                ) from None
            wait = attempt.retry_after if attempt.retry_after is not None else self.backoff_s * 2**number
            wait = min(wait, MAX_RETRY_WAIT_S) * (1 + random.random() * 0.1)  # jitter: replicas spread out
            logger.warning("generator server at %s: %s; retrying in %.1f s (%d of %d)", _safe(url),
                           attempt.error, wait, number + 1, self.max_retries)
            time.sleep(wait)

    def _check(self, response: httpx.Response, url: str) -> None:
        status = response.status_code
        if status < 400:
            return
        detail = _error_detail(response)
        if status in (401, 403):
            raise RemoteGeneratorError(
                f"The generator server at {_safe(url)} refused the request ({status}): check the API key "
                f"(environment variable {', '.join(_env_names(self.api_key)) or 'none'}). {detail}".strip())
        if status in RETRYABLE_STATUS:
            raise _Retryable(f"HTTP {status} {detail}".strip(), _retry_after(response))
        raise RemoteGeneratorError(f"The generator server at {_safe(url)} answered {status}: {detail}".strip())


def _check_temperature(temperature: float) -> None:
    if not 0.0 <= temperature <= 2.0:
        raise ValueError("temperature must be in [0, 2].")


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Attempt:
    """Context manager around one HTTP attempt: records a retryable failure instead of raising it."""

    def __init__(self, timeout_s: float) -> None:
        self.client = httpx.Client(timeout=timeout_s)
        self.error: str | None = None
        self.retry_after: float | None = None
        self.sent_any = False

    def __enter__(self) -> httpx.Client:
        return self.client

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> bool:
        self.client.close()
        if isinstance(exc, _Retryable):
            self.error, self.retry_after = str(exc), exc.retry_after
            return True
        if isinstance(exc, httpx.ConnectError):
            self.error = "cannot connect (is the server running and the URL right?)"
            return True
        if isinstance(exc, httpx.TimeoutException):
            self.error = f"no answer within the timeout ({exc.__class__.__name__})"
            return True
        if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
            self.error = f"the connection broke ({exc.__class__.__name__})"
            return True
        return False


def _sse_events(response: httpx.Response, url: str) -> Iterator[dict[str, Any]]:
    """The JSON events of an OpenAI-style server-sent event stream, up to ``data: [DONE]``."""
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue  # comments, event names and the blank lines between events
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            event = json.loads(payload)
        except json.JSONDecodeError:
            raise RemoteGeneratorError(
                f"The generator server at {_safe(url)} sent a malformed stream event: {payload[:200]!r}") from None
        if not isinstance(event, dict):
            raise RemoteGeneratorError(f"The generator server at {_safe(url)} sent a stream event that is not "
                                       "a JSON object.")
        if "error" in event:
            raise RemoteGeneratorError(f"The generator server at {_safe(url)} failed mid-stream: "
                                       f"{str(event['error'])[:300]}")
        yield event


def _json(response: httpx.Response, url: str) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise RemoteGeneratorError(
            f"The generator server at {_safe(url)} did not answer with JSON: {response.text[:200]!r}") from None
    if not isinstance(data, dict):
        raise RemoteGeneratorError(f"The generator server at {_safe(url)} answered JSON that is not an object.")
    return data


def _error_detail(response: httpx.Response) -> str:
    """The server's own error message, shortened (OpenAI servers send ``{"error": {"message": ...}}``)."""
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        message = error.get("message", error) if isinstance(error, dict) else error
        return str(message)[:300]
    except ValueError:
        return response.text[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _env_names(secret: Secret | None) -> list[str]:
    return list(getattr(secret, "_env_vars", ()) or ())


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL such as http://127.0.0.1:8001/v1, not {_safe(url)!r}.")
    if parts.username or parts.password:
        raise ValueError("base_url must not carry credentials; give the key as api_key (a Secret).")


def _safe(url: str) -> str:
    """The URL without any user info or query string, fit for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
