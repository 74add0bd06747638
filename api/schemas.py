"""Request and response bodies of the REST contract (v1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator, model_validator

from ragpress.base.filter_syntax import check_filters
from ragpress.base.input_limits import MAX_META_BYTES, MAX_META_KEY_CHARS, MAX_META_KEYS, MAX_VERSION, surrogate_problem
from ragpress.base.meta_limits import RESERVED_META, check_meta

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_QUERY_CHARS = 4000
META_HELP = (f"Flat metadata: strings, finite numbers, integers within signed 64 bits, booleans, null, lists of those "
             f"and objects of those one level deep; at most {MAX_META_KEYS} keys of {MAX_META_KEY_CHARS} characters, "
             f"{MAX_META_BYTES:,} bytes as JSON.")


def doc_id_problem(doc_id: str, what: str) -> str | None:
    """Why ``doc_id`` cannot name a document: control characters (PostgreSQL refuses NUL in text; a newline would
    forge a log line), invalid Unicode, or a '.' or '..' path segment, which clients and browsers resolve before
    sending, so such a document could be neither fetched nor deleted by its path."""
    shown = repr(doc_id[:80])
    if any(ord(char) < 32 or ord(char) == 127 for char in doc_id):
        return f"{what} {shown} holds a control character; name it with printable characters only"
    if any(segment in (".", "..") for segment in doc_id.split("/")):
        return f"{what} {shown} has a '.' or '..' segment, which a URL cannot carry; name it without them"
    return surrogate_problem(doc_id, what)


def _valid_unicode(value: str | None, what: str) -> str | None:
    problem = None if value is None else surrogate_problem(value, what)
    if problem is not None:
        raise ValueError(problem)
    return value


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentIn(Strict):
    id: StrictStr | None = Field(None, min_length=1, max_length=512)
    text: StrictStr = Field(..., description="The document's text (Markdown or HTML if meta.content_type says so).")
    meta: dict[str, Any] = Field(default_factory=dict, description=META_HELP)

    @field_validator("id")
    @classmethod
    def _id_is_addressable(cls, value: str | None) -> str | None:
        problem = None if value is None else doc_id_problem(value, "id")
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text is empty")
        if "\x00" in value:
            raise ValueError("text contains NUL characters; send text, not binary data")
        _valid_unicode(value, "text")
        return value

    @field_validator("meta")
    @classmethod
    def _bounded_meta(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(RESERVED_META & value.keys())
        if clash:
            raise ValueError(f"meta keys {clash} are reserved by ragpress")
        check_meta(value)  # MetaError is a ValueError: a 422 naming the key and the limit
        return value


KVPrecompute = Literal["lazy", "eager"]
KV_PRECOMPUTE_HELP = ("When chunk KV states are computed: 'eager' at ingestion (a follow-up task), 'lazy' on a chunk's "
                      "first query; unset keeps the collection's choice (or the server default).")


class DocumentsIn(Strict):
    documents: list[DocumentIn] = Field(..., min_length=1)
    kv_precompute: KVPrecompute | None = Field(None, description=KV_PRECOMPUTE_HELP)

    @field_validator("documents")
    @classmethod
    def _unique_ids(cls, value: list[DocumentIn]) -> list[DocumentIn]:
        ids = [d.id for d in value if d.id is not None]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"document ids must be unique within a request; repeated: {duplicates[:5]}")
        return value


class CollectionIn(Strict):
    kv_precompute: KVPrecompute | None = Field(None, description=KV_PRECOMPUTE_HELP)


class JobAccepted(BaseModel):
    job_id: str


# ---- responses of the ops, query, pipeline and admin routes, and the error body every route shares ----------------
class Out(BaseModel):
    """A response body: the fields documented here, passed through as the service wrote them (a field a newer
    service adds is kept, never dropped by the documentation)."""

    model_config = ConfigDict(extra="allow")


class Status(Out):
    status: str = Field(..., description="'ok' (liveness); 'ready' or 'starting' (readiness).")


class PipelineProblem(Out):
    message: str
    line: int | None = Field(..., description="The YAML line the problem is on, when it has one.")
    field: str | None = Field(..., description="The YAML path of the setting at fault, e.g. components.x.type.")


class ErrorDetail(Out):
    code: str = Field(..., description="Stable, machine-readable: not_found, unauthorized, rate_limited, ...")
    message: str = Field(..., description="What went wrong and what to do, written for a person.")
    problems: list[PipelineProblem] | None = Field(None, description="Only with invalid_pipeline: every problem.")


class ErrorOut(BaseModel):
    error: ErrorDetail


class PassageOut(Out):
    id: str
    doc_id: str | None = Field(..., description="The document the passage comes from.")
    text: str
    score: float | None
    level: str | None = Field(..., description="document, section, chunk or slice.")
    sentences: list[list[int]] = Field(..., description="Character spans [start, end) of the passage's sentences.")
    meta: dict[str, Any]
    pruned_text: str | None = Field(None, description="Only after a pruner: the sentences it kept.")
    kept_sentences: list[int] | None = Field(None, description="Only after a pruner: indexes into `sentences`.")


class UsageOut(Out):
    context_tokens: int = Field(..., description="Tokens of the passages the generator was given, by the "
                                "generator's tokenizer (the embedder's while the generator is not fetched).")
    context_tokens_after_pruning: int = Field(..., description="The same after pruning.")
    prompt_tokens: int | None = Field(None, description="Only when the pipeline generates: the prompt it read.")
    completion_tokens: int | None = Field(None, description="Only when the pipeline generates: the answer's.")


class KVCacheUse(Out):
    hits: int = Field(..., description="Passages whose cached KV states were found in the KV store.")
    misses: int = Field(..., description="Passages with no usable cached states (encoded now, or prefilled).")
    stored_bytes: int = Field(0, description="Bytes the cached states read take in the KV store.")
    tokens: int = Field(0, description="Context tokens those states hold (stored_bytes / tokens: bytes per token).")


class QueryOut(Out):
    documents: list[PassageOut]
    usage: UsageOut
    timings_ms: dict[str, float] = Field(..., description="Milliseconds per pipeline stage, ttft and total.")
    answer: str | None = Field(None, description="Only when the pipeline generates.")
    abstained: bool | None = Field(None, description="Only when the pipeline generates: the model declined.")
    abstain_reason: str | None = Field(None, description="Only when it abstained: why.")
    kv_cache: KVCacheUse | None = Field(None, description="Only when a KV-cache generator answered.")


class PipelineSummary(Out):
    name: str
    version: int = Field(..., description="0 is the built-in version.")
    builtin: bool


class PipelineList(Out):
    pipelines: list[PipelineSummary]


class PipelineOut(PipelineSummary):
    yaml: str


class PipelineDeleted(Out):
    deleted: str


class PipelineVersion(Out):
    version: int
    created_at: str | None = Field(..., description="ISO 8601; null for the built-in version.")
    deleted: bool


class PipelineVersions(Out):
    versions: list[PipelineVersion]


class GraphNode(Out):
    name: str
    type: str


class GraphEdge(Out):
    sender: str = Field(..., alias="from", description="component.output")
    receiver: str = Field(..., alias="to", description="component.input")


class PipelineGraph(Out):
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class PipelineValidation(Out):
    valid: bool
    problems: list[PipelineProblem]
    graph: PipelineGraph | None
    dry_run: QueryOut | None = Field(..., description="With dry_run=true: the query's result, without generation.")


class TenantList(Out):
    tenants: list[str]


class TenantOut(Out):
    name: str


class KeyOut(Out):
    id: str
    tenant: str | None
    admin: bool
    label: str
    created_at: str
    revoked: bool


class KeyList(Out):
    keys: list[KeyOut]


class KeyCreated(Out):
    id: str
    key: str = Field(..., description="The key itself: shown only in this response, stored as a hash.")
    tenant: str | None
    admin: bool


class KeyRevoked(Out):
    revoked: str


class IndexOptimized(Out):
    optimized: bool
    reason: str | None = Field(None, description="Why nothing was built (an index that builds its own).")
    seconds: float | None = Field(None, description="How long the build took.")
    points: int | None = Field(None, description="Units in the index.")


class QueryIn(Strict):
    query: StrictStr = Field(..., min_length=1, max_length=MAX_QUERY_CHARS)
    top_k: int | None = Field(None, ge=1)  # the ceiling is the server's setting (ragpress.base.limits)
    pipeline: str | None = Field(None, pattern=NAME_PATTERN)
    generate: bool = True
    stream: bool = False
    filters: dict[str, Any] | None = None
    params: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("query")
    @classmethod
    def _query_is_unicode(cls, value: str) -> str:
        return _valid_unicode(value, "query") or value

    @field_validator("filters")
    @classmethod
    def _valid_filters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        check_filters(value)
        return value

    @field_validator("params")
    @classmethod
    def _valid_param_filters(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # A component's `filters` input takes the same syntax: a params route must not skip the check.
        for component, inputs in value.items():
            if "filters" in inputs:
                try:
                    check_filters(inputs["filters"])
                except ValueError as exc:
                    raise ValueError(f"{component}.{exc}") from None
        return value


class TenantIn(Strict):
    name: str = Field(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")


class KeyIn(Strict):
    tenant: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    admin: bool = False
    label: str = Field("", max_length=128)


class RollbackIn(Strict):
    version: int = Field(..., ge=0, le=MAX_VERSION)


# ---- documents and files: listing, the chunk view, deletes, uploads, collections and jobs (issue 26) -----------------
DOC_ID_CHARS = 512
DocId = Annotated[StrictStr, Field(min_length=1, max_length=DOC_ID_CHARS)]
DOCUMENT_STATUS_HELP = ("indexed; queued or running while a job holds it; failed while its newest version could not be "
                        "indexed (an older version may still be indexed: see units).")


class DocumentsDeleteIn(Strict):
    ids: list[DocId] | None = Field(None, min_length=1, max_length=1000)
    filters: dict[str, Any] | None = Field(None, description="Deletes every document with an indexed unit these "
                                                             "filters match (the query filter syntax).")

    @field_validator("filters")
    @classmethod
    def _valid_filters(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value == {}:
            raise ValueError("is empty, which would match every document; to delete them all, delete the collection "
                             "(DELETE /v1/collections/{collection})")
        check_filters(value)
        return value

    @model_validator(mode="after")
    def _ids_or_filters(self) -> DocumentsDeleteIn:
        if (self.ids is None) == (self.filters is None):
            raise ValueError("send exactly one of 'ids' (a list of document ids) and 'filters'")
        return self


class FilesIn(BaseModel):
    """The multipart body of an upload (what the route reads; FastAPI does not parse it)."""

    model_config = ConfigDict(extra="forbid")
    files: list[UploadFile] = Field(..., min_length=1, description=(
        "One part per file, each with its file name (the document id; it may hold '/'). PDF, HTML, Markdown, text "
        "(UTF-8, or the charset its part's Content-Type declares) or DOCX, known by the name's suffix or else the "
        "part's Content-Type."))
    kv_precompute: KVPrecompute | None = Field(None, description=KV_PRECOMPUTE_HELP)


class UploadedFile(Out):
    name: str
    id: str = Field(..., description="The document id the file is indexed under.")
    content_type: str | None = Field(..., description="The type it is read as (or as sent, if unsupported).")


class FilesAccepted(Out):
    job_id: str
    files: list[UploadedFile]


class DocumentOut(Out):
    id: str
    status: Literal["indexed", "queued", "running", "failed"] = Field(..., description=DOCUMENT_STATUS_HELP)
    units: int = Field(..., description="Units of its indexed version in the index (0 if none is indexed).")
    content_hash: str | None = Field(..., description="sha256 of the indexed version's text (else the sent one's).")
    updated_at: str
    meta: dict[str, Any] = Field(..., description="The meta last sent with it; uploads add filename, "
                                                  "original_content_type and sha256 (of the original file).")
    error: str | None = Field(None, description="Only when failed: why.")


class DocumentPage(Out):
    documents: list[DocumentOut]
    next_after: str | None = Field(..., description="Pass as ?after= for the next page; null on the last one.")


class ChunkOut(Out):
    id: str
    level: str | None = Field(..., description="document, section, chunk or slice.")
    text: str
    meta: dict[str, Any] = Field(..., description="parent_id, position, start, end, sentences, strategy, ...")


class DocumentDetail(DocumentOut):
    chunks: list[ChunkOut] = Field(..., description="Every unit of the indexed version, coarsest level first.")


class DocumentDeleted(Out):
    deleted: str
    units_removed: int


class DocumentsDeleted(Out):
    deleted: list[str] = Field(..., description="The ids deleted; ids the collection does not have are left out.")
    units_removed: int


class CollectionOut(Out):
    name: str
    documents: int
    units: int
    created_at: str
    kv_precompute: str


class CollectionList(Out):
    collections: list[CollectionOut]


class CollectionDetail(CollectionOut):
    indexed_units: int = Field(..., description="Units the index really holds for the collection.")


class CollectionDeleted(Out):
    deleted: str
    documents_removed: int
    units_removed: int


class JobDocumentError(Out):
    doc_id: str
    error: str | None


class JobWarning(Out):
    doc_id: str
    warning: str | None


class JobOut(Out):
    job_id: str
    collection: str
    status: Literal["queued", "running", "succeeded", "partial", "failed", "cancelled"]
    total: int
    done: int = Field(..., description="Indexed or unchanged (skipped).")
    failed: int
    skipped: int = Field(..., description="Sent unchanged: already indexed.")
    created_at: str
    errors: list[JobDocumentError]
    kv: dict[str, int] = Field(..., description="The KV follow-up: documents per status (queued, done, lazy; "
                                                "budget: left to first use, the KV store being full of this "
                                                "job's states; failed), and cached entries.")
    warnings: list[JobWarning] = Field(..., description="KV follow-ups that failed (the documents stay searchable).")


class JobList(Out):
    jobs: list[JobOut]
