"""OpenAI-compatible chat over a collection (``POST /v1/chat/completions``, ``GET /v1/models``), so OpenAI clients
and chat UIs can ask ragpress questions with nothing but a base URL and an API key.

The request's ``model`` names what answers: ``"<collection>"`` (the ``query`` pipeline) or
``"<collection>/<pipeline>"``; a ``collection`` or ``pipeline`` field in the body takes precedence over the part of
``model`` it names. ragpress answers one question at a time from the collection: the last user message is the
question, and earlier turns and system messages are accepted (a chat UI sends the whole conversation) but not read;
the pipeline's own system prompt applies. Sampling settings (``temperature``, ``top_p``, ``max_tokens``, penalties,
``seed``) are accepted and not used: the pipeline's generator decodes greedily, its ``max_new_tokens`` bounds the
answer. What would change the shape of the answer (tools, several choices, log probabilities, JSON output, audio,
stop sequences) is refused with a 422 naming it.

The answer comes with its ``sources``: the passages the generator was given, numbered as the prompt labels them, so
an answer citing ``[2]`` means ``sources[1]`` (``index`` 2). Errors leave in OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, with ragpress's status, code and message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictStr, model_validator

from ragpress.api import auth, errors, metrics
from ragpress.api.dependencies import service
from ragpress.api.openapi import error_responses, request_body
from ragpress.api.routes_query import admitted_query, query_events
from ragpress.api.schemas import MAX_QUERY_CHARS, NAME_PATTERN, PassageOut, Strict
from ragpress.pipelines.query_pipeline import QueryRequest
from ragpress.pipelines.registry import PipelineNotFound
from ragpress.service import NotFound, Service

DEFAULT_PIPELINE = "query"
INGESTION_PIPELINE = "ingestion"  # the one pipeline that writes an index instead of answering
MODELS_HINT = ("The model names one of your collections, as '<collection>' or '<collection>/<pipeline>'; "
               "GET /v1/models lists them.")
IGNORED = "Accepted for compatibility and not used: the pipeline's generator decodes greedily."
# Fields that would change what the answer is; each is refused unless absent or at its neutral value.
UNSUPPORTED = {
    "tools": "ragpress answers from the collection and calls no tools; leave tools out",
    "tool_choice": "ragpress calls no tools; leave tool_choice out",
    "parallel_tool_calls": "ragpress calls no tools; leave parallel_tool_calls out",
    "functions": "ragpress calls no functions; leave functions out",
    "function_call": "ragpress calls no functions; leave function_call out",
    "n": "ragpress writes one answer per request; leave n out or set it to 1",
    "logprobs": "ragpress does not report log probabilities; leave logprobs out",
    "top_logprobs": "ragpress does not report log probabilities; leave top_logprobs out",
    "response_format": "ragpress answers in plain text; leave response_format out or set it to {'type': 'text'}",
    "modalities": "ragpress answers in text only; leave modalities out or set it to ['text']",
    "audio": "ragpress answers in text only; leave audio out",
    "stop": "the pipeline's generator decides where the answer ends; leave stop out",
    "logit_bias": "ragpress does not bias tokens; leave logit_bias out",
    "prediction": "ragpress takes no predicted output; leave prediction out",
}
_NEUTRAL: dict[str, Any] = {"n": 1, "response_format": {"type": "text"}, "modalities": ["text"]}
# The errors a query can raise once streaming started that are the caller's doing (the rest are the server's).
_CALLER_CODES = frozenset({"invalid_request", "not_found", "no_answer"})


# ---- request --------------------------------------------------------------------------------------------------------
class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(BaseModel):
    """A turn of the conversation; what ragpress does not read (names, tool calls of earlier turns) is ignored."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: StrictStr | list[ContentPart] | None = None


class StreamOptions(Strict):
    include_usage: bool = Field(False, description="Send a last chunk with the usage and no choices.")


class ChatCompletionIn(Strict):
    model: StrictStr = Field(..., min_length=1, max_length=200, description=(
        "'<collection>' (answered by the 'query' pipeline) or '<collection>/<pipeline>'; GET /v1/models lists them."))
    messages: list[ChatMessage] = Field(..., min_length=1, description=(
        "The conversation: its last user message is the question (text only); earlier turns are not read."))
    stream: bool = Field(False, description="Send the answer as server-sent chat.completion.chunk events.")
    stream_options: StreamOptions | None = None
    collection: str | None = Field(None, pattern=NAME_PATTERN, description="Overrides the collection `model` names.")
    pipeline: str | None = Field(None, pattern=NAME_PATTERN, description="Overrides the pipeline `model` names.")
    top_k: int | None = Field(None, ge=1, description="How many passages the answer is drawn from (the pipeline's "
                                                      "own number when unset).")
    temperature: float | None = Field(None, ge=0, le=2, description=IGNORED)
    top_p: float | None = Field(None, ge=0, le=1, description=IGNORED)
    max_tokens: int | None = Field(None, ge=1, description=IGNORED)
    max_completion_tokens: int | None = Field(None, ge=1, description=IGNORED)
    presence_penalty: float | None = Field(None, ge=-2, le=2, description=IGNORED)
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description=IGNORED)
    seed: int | None = Field(None, description=IGNORED)
    user: StrictStr | None = Field(None, description=IGNORED)
    _question: str = PrivateAttr("")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unsupported(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        asked = next((name for name in UNSUPPORTED if _sets(name, data.get(name))), None)
        if asked is not None:
            raise ValueError(f"{asked}: {UNSUPPORTED[asked]}")
        return {name: value for name, value in data.items() if name not in UNSUPPORTED}

    @model_validator(mode="after")
    def _find_question(self) -> ChatCompletionIn:
        asked = next((m for m in reversed(self.messages) if m.role == "user"), None)
        if asked is None:
            raise ValueError("messages: there is no user message; the last user message is the question")
        self._question = _question_text(asked.content)
        return self

    @property
    def question(self) -> str:
        return self._question

    def target(self) -> tuple[str, str]:
        """The collection and pipeline that answer."""
        collection, _, pipeline = self.model.partition("/")
        return self.collection or collection, self.pipeline or pipeline or DEFAULT_PIPELINE


def _sets(name: str, value: Any) -> bool:
    """Whether a request gives an unsupported field a value that asks for something (null, false, empty or the
    neutral value ask for nothing)."""
    return value is not None and value is not False and value not in ([], {}) and value != _NEUTRAL.get(name)


def _question_text(content: str | list[ContentPart] | None) -> str:
    parts = [ContentPart(type="text", text=content)] if isinstance(content, str) else content or []
    other = next((part.type for part in parts if part.type != "text" or part.text is None), None)
    if other is not None:
        raise ValueError(f"messages: the last user message has a '{other}' part; the question is read as text only, "
                         f"send it as text parts or a string")
    text = "\n".join(part.text or "" for part in parts)
    if not text.strip():
        raise ValueError("messages: the last user message is empty; it is the question")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"messages: the last user message has {len(text)} characters, more than {MAX_QUERY_CHARS}; "
                         f"ask a shorter question")
    return text


# ---- responses ------------------------------------------------------------------------------------------------------
class Source(PassageOut):
    index: int = Field(..., description="The passage's citation number: the prompt labelled it [index] (1 is the "
                                        "most relevant), so an answer citing [2] means the source with index 2.")


class ChatUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(..., description="Unix time, seconds.")
    model: str = Field(..., description="'<collection>/<pipeline>' that answered.")
    choices: list[Choice]
    usage: ChatUsage
    sources: list[Source] = Field(..., description="The passages the answer was drawn from, most relevant first.")


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop"] | None = None


class ChatCompletionChunk(BaseModel):
    """One server-sent event of a streamed answer (``data: <chunk>``): the role, then pieces of the answer, then a
    chunk with ``finish_reason`` and the ``sources``, then (with ``stream_options.include_usage``) one with the usage
    and no choices; ``data: [DONE]`` ends the stream. An error after the stream started is sent as
    ``data: {"error": {...}}``."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: ChatUsage | None = None
    sources: list[Source] | None = None


class ModelCard(BaseModel):
    id: str = Field(..., description="'<collection>' or '<collection>/<pipeline>'.")
    object: Literal["model"] = "model"
    created: int = Field(..., description="When the collection was created, Unix time.")
    owned_by: str = Field(..., description="The tenant.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


STREAM_RESPONSE = {200: {
    "description": "A chat.completion; with `stream: true`, server-sent events each `data: <ChatCompletionChunk>`, "
                   "ending with `data: [DONE]`.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}}}}

MODEL_NOT_FOUND = {404: {"description": "The model names no collection, or no pipeline, of this tenant "
                                        "(`model_not_found`)."}}


# ---- errors ---------------------------------------------------------------------------------------------------------
class OpenAIErrorRoute(APIRoute):
    """A route whose errors leave in OpenAI's shape: the app's handlers write them as for every route (status, code,
    message, headers) and this adds the ``type`` and ``param`` OpenAI clients read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_in_openai_shape(request: Request) -> Response:
            try:
                return await handle(request)
            except Exception as exc:
                return _in_openai_shape(await _handled(request, exc))

        return handle_in_openai_shape


async def _handled(request: Request, exc: Exception) -> Response:
    handlers = request.app.exception_handlers
    handler = next(handlers[kind] for kind in type(exc).__mro__ if kind in handlers)  # errors.install handles all
    return await handler(request, exc)


def _in_openai_shape(response: Response) -> Response:
    error = json.loads(bytes(response.body))["error"]
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")}
    return JSONResponse({"error": {**error, "type": error_type(response.status_code), "param": None}},
                        status_code=response.status_code, headers=headers)


def error_type(status: int) -> str:
    special = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
    return special.get(status, "invalid_request_error" if status < 500 else "server_error")


# ---- routes ---------------------------------------------------------------------------------------------------------
def chat_routes() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"], route_class=OpenAIErrorRoute)

    @router.post("/chat/completions", response_model=ChatCompletion, openapi_extra=request_body(ChatCompletionIn),
                 responses={**STREAM_RESPONSE, **MODEL_NOT_FOUND, **error_responses(502, 503)})
    async def chat_completions(request: Request, tenant: str = Depends(auth.tenant)) -> Any:
        """Answer the last user message from a collection, with its sources (see the module's docstring)."""
        body = await errors.parse_body(request, ChatCompletionIn)
        collection, pipeline = body.target()
        call = QueryRequest(query=body.question, top_k=body.top_k, pipeline=pipeline)
        svc = service(request)
        await run_in_threadpool(_check, svc, tenant, collection, call)  # 404 and 422 before any streaming starts
        admission = request.app.state.admission[True]
        reply = Reply(f"{collection}/{pipeline}")
        if body.stream:
            include_usage = body.stream_options is not None and body.stream_options.include_usage
            events = query_events(svc, admission, tenant, collection, call)
            return StreamingResponse(_chunks(reply, events, include_usage), media_type="text/event-stream")
        result = await run_in_threadpool(admitted_query, admission, svc, tenant, collection, call)
        metrics.observe_query(pipeline, result)
        return reply.completion(result)

    @router.get("/models", response_model=ModelList)
    async def models(request: Request, tenant: str = Depends(auth.tenant)) -> ModelList:
        """The tenant's collections as models, each alone (the 'query' pipeline) and with every other pipeline."""
        return await run_in_threadpool(_models, service(request), tenant)

    return router


def _check(svc: Service, tenant: str, collection: str, call: QueryRequest) -> None:
    try:
        svc.collection(tenant, collection)
        svc.check_query(tenant, call)
    except (NotFound, PipelineNotFound) as exc:
        raise errors.ApiError(404, "model_not_found", f"{exc} {MODELS_HINT}") from None


def _models(svc: Service, tenant: str) -> ModelList:
    pipelines = [p["name"] for p in svc.pipelines(tenant) if p["name"] not in (DEFAULT_PIPELINE, INGESTION_PIPELINE)]
    cards = []
    for found in svc.collections(tenant):
        created = int(datetime.fromisoformat(found["created_at"]).timestamp())
        for name in (found["name"], *(f"{found['name']}/{p}" for p in pipelines)):
            cards.append(ModelCard(id=name, created=created, owned_by=tenant))
    return ModelList(data=cards)


@dataclass(frozen=True)
class Reply:
    """What the completion, or every chunk of a streamed one, of one request shares."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def completion(self, result: dict[str, Any]) -> ChatCompletion:
        if "answer" not in result:
            raise self.no_answer()
        return ChatCompletion(id=self.id, created=self.created, model=self.model, usage=usage(result),
                              choices=[Choice(message=AssistantMessage(content=result["answer"]))],
                              sources=sources(result["documents"]))

    def chunk(self, choices: list[ChunkChoice], **extra: Any) -> str:
        chunk = ChatCompletionChunk(id=self.id, created=self.created, model=self.model, choices=choices, **extra)
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

    def no_answer(self) -> errors.ApiError:
        return errors.ApiError(422, "no_answer", f"'{self.model}' finds passages but writes no answer: its pipeline "
                                                 f"has no generator. Chat with one that answers, e.g. "
                                                 f"'{self.model.split('/')[0]}'.")


def _chunks(reply: Reply, events: Iterator[tuple[str, Any]], include_usage: bool) -> Iterator[str]:
    yield reply.chunk([ChunkChoice(delta=Delta(role="assistant", content=""))])
    for kind, payload in events:
        if kind == "token":
            yield reply.chunk([ChunkChoice(delta=Delta(content=payload["text"]))])
        elif kind == "result" and "answer" not in payload:
            refused = reply.no_answer()
            yield _error_event(refused.code, refused.message)
        elif kind == "result":
            yield reply.chunk([ChunkChoice(delta=Delta(), finish_reason="stop")], sources=sources(payload["documents"]))
            if include_usage:
                yield reply.chunk([], usage=usage(payload))
        elif kind == "error":
            yield _error_event(payload["code"], payload["message"])
    yield "data: [DONE]\n\n"


def _error_event(code: str, message: str) -> str:
    kind = "invalid_request_error" if code in _CALLER_CODES else "server_error"
    return f"data: {json.dumps({'error': {'message': message, 'type': kind, 'param': None, 'code': code}})}\n\n"


def usage(result: dict[str, Any]) -> ChatUsage:
    """The generator's own token counts (0 from a generator that does not count them)."""
    prompt, completion = (result["usage"].get(name, 0) for name in ("prompt_tokens", "completion_tokens"))
    return ChatUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def sources(documents: list[dict[str, Any]]) -> list[Source]:
    """The passages the generator was given, numbered as its prompt labels them: it keeps them in the order it got
    them (most relevant first) and labels them by that rank (``generators.prompting.passage_blocks``). A passage
    pruned to nothing was not shown, so it is no source."""
    shown = [d for d in documents if (d["pruned_text"] if d.get("pruned_text") is not None else d["text"]).strip()]
    return [Source.model_validate({**d, "index": i}) for i, d in enumerate(shown, start=1)]
