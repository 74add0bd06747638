"""All of ragpress's configuration in one place.

Values come, highest priority first, from keyword arguments, environment variables (``RAGPRESS_*``; the
conventional ``QDRANT_URL``, ``REDIS_URL`` and ``DATABASE_URL`` are accepted too), a TOML file named by
``RAGPRESS_CONFIG``, and the defaults below. The defaults are the embedded mode: nothing to start.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


def _default_home() -> Path:
    return Path(os.environ.get("RAGPRESS_HOME", Path.home() / ".ragpress")).expanduser()


KV_MAX_BYTES = 4 * 1024**3  # the cached KV states' default byte budget


class Settings(BaseSettings):
    """ragpress settings; every field can be set as ``RAGPRESS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="RAGPRESS_", extra="forbid", populate_by_name=True)

    home: Path = Field(default_factory=_default_home, description="Root for data, models and state.")
    models_dir: Path | None = Field(None, description="Model cache; default <home>/models.")
    data_dir: Path | None = Field(None, description="Index, job store and KV store; default <home>/data.")

    qdrant_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RAGPRESS_QDRANT_URL", "QDRANT_URL"),
        description="Qdrant server URL; unset means the embedded engine under data_dir.",
    )
    embedded_engine: Literal["edge", "local"] = Field(
        "edge", description="edge: Qdrant's engine in-process (HNSW); local: qdrant-client's Python stand-in."
    )
    qdrant_api_key: SecretStr | None = Field(None, description="API key for the Qdrant server.")
    broker_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RAGPRESS_BROKER_URL", "REDIS_URL"),
        description="Celery broker (redis://, amqp://); unset means in-process worker threads.",
    )
    database_url: str | None = Field(
        None,
        validation_alias=AliasChoices("RAGPRESS_DATABASE_URL", "DATABASE_URL"),
        description="Job and document state (postgresql+psycopg://...); default SQLite under data_dir.",
    )

    kv_store_url: str | None = Field(
        None, description="Redis URL for cached KV states shared by replicas; unset means files under data_dir/kv."
    )
    kv_max_bytes: int = Field(
        KV_MAX_BYTES, ge=0, description="Byte budget of the cached KV states (least recently used evicted beyond it; "
        "eager pre-compute stops at it rather than evict its own job's states).",
    )
    kv_precompute: Literal["lazy", "eager"] = Field(
        "eager", description="Default for collections that do not choose: eager computes chunk KV states at "
        "ingestion (a follow-up task; the default query pipeline reads them), lazy on a chunk's first query.",
    )
    remote_generator_url: str | None = Field(
        None, description="OpenAI-compatible server (…/v1) for ragpress.generators.remote_generator."
        "RemoteGenerator; its key is read from RAGPRESS_REMOTE_GENERATOR_API_KEY by the component, never stored here.",
    )
    embedder: str = Field("all-MiniLM-L6-v2", description="Registry name, Hugging Face id or local directory.")
    generator: str = Field("SmolLM2-135M-Instruct", description="Registry name, Hugging Face id or directory.")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    worker_threads: int = Field(2, ge=1, le=64, description="Worker threads inside `ragpress serve`.")
    consume_ingest_queue: bool = Field(
        True, description="Whether `ragpress serve` also runs ingestion tasks (off when workers do it)."
    )
    ingest_batch_size: int = Field(16, ge=1, le=1000, description="Documents per ingestion task.")
    task_visibility_timeout_s: int = Field(
        600, ge=5, description="Seconds before a task taken by a worker that died is handed to another worker."
    )
    max_document_bytes: int = Field(10_000_000, ge=1, description="Largest accepted document (UTF-8 bytes).")
    max_request_bytes: int = Field(32_000_000, ge=1, description="Largest accepted request body.")
    max_documents_per_request: int = Field(1000, ge=1)
    max_conversion_s: float = Field(60.0, gt=0, le=3600, description="Longest an uploaded file may take to read "
                                    "(PDF, DOCX, ...); a file that takes longer fails alone.")
    auth: Literal["auto", "required", "off"] = Field(
        "auto", description="auto: keys are required once any exists, or when listening beyond localhost."
    )
    rate_limit_per_minute: int = Field(600, ge=1, description="Requests per minute per API key (per replica).")
    max_concurrent_queries: int = Field(4, ge=1, description="Queries computed at once; the rest wait in line.")
    max_queued_queries: int = Field(64, ge=0, description="Queries waiting beyond that get 503 with Retry-After.")
    max_queue_wait_s: float = Field(15.0, gt=0, description="Longest wait for a query slot before 503.")
    max_top_k: int = Field(100, ge=1, description="Most passages a query or a saved pipeline may ask a stage for.")
    max_context_tokens_limit: int = Field(
        8192, ge=1, description="Largest context budget (token_budget, max_context_tokens) a query may set."
    )
    max_new_tokens_limit: int = Field(1024, ge=1, description="Most tokens a query may ask the generator for.")
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _derive_dirs(self) -> Settings:
        self.home = self.home.expanduser()
        if self.models_dir is None:
            self.models_dir = self.home / "models"
        if self.data_dir is None:
            self.data_dir = self.home / "data"
        return self

    @property
    def models_path(self) -> Path:
        assert self.models_dir is not None
        return self.models_dir

    @property
    def data_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir

    @property
    def embedded_index_path(self) -> Path:
        return self.data_path / "qdrant"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_path / 'ragpress.db'}"

    @property
    def distributed_queue(self) -> bool:
        """True when tasks travel over a real broker to worker processes."""
        return self.broker_url is not None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("RAGPRESS_CONFIG")
        if config_file:
            path = Path(config_file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"RAGPRESS_CONFIG names {path}, which is not a file.")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def public_dict(self) -> dict[str, Any]:
        """Settings with secrets masked, safe to print or log."""
        data = self.model_dump(mode="json")
        for key in ("qdrant_api_key",):
            if data.get(key):
                data[key] = "***"
        for key in ("broker_url", "database_url", "qdrant_url", "remote_generator_url"):
            if data.get(key):
                data[key] = _mask_url_password(data[key])
        return data


def _mask_url_password(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Process-wide settings, read once from the environment."""
    return Settings()
