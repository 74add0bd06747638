"""Request and response bodies of the REST contract (v1)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, field_validator

from ragpress.base.filter_syntax import check_filters
from ragpress.base.input_limits import MAX_META_BYTES, MAX_META_KEY_CHARS, MAX_META_KEYS, MAX_VERSION, surrogate_problem
from ragpress.base.meta_limits import RESERVED_META, check_meta

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_QUERY_CHARS = 4000
META_HELP = (f"Flat metadata: strings, finite numbers, integers within signed 64 bits, booleans, null, lists of those "
             f"and objects of those one level deep; at most {MAX_META_KEYS} keys of {MAX_META_KEY_CHARS} characters, "
             f"{MAX_META_BYTES:,} bytes as JSON.")


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
    def _id_is_unicode(cls, value: str | None) -> str | None:
        return _valid_unicode(value, "id")

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
