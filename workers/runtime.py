"""What a process that runs tasks holds: its job store, its ingestion pipeline, and whether it owns the index.

An embedded index is owned by the one process that opened it (``ragpress serve`` or an embedded CLI
run). A separate ``ragpress worker`` process owns it only when the index is a Qdrant server.
"""

from __future__ import annotations

import threading
from typing import Any

from ragpress.base.settings import get_settings
from ragpress.pipelines.loader import builtin_yaml, load_pipeline
from ragpress.workers.job_store import JobStore

_lock = threading.Lock()
_state: dict[str, Any] = {}


def declare_index_owner(owner: bool) -> None:
    _state["owns_index"] = owner


def owns_index() -> bool:
    if "owns_index" not in _state:
        return get_settings().qdrant_url is not None
    return bool(_state["owns_index"])


def job_store() -> JobStore:
    with _lock:
        if "job_store" not in _state:
            _state["job_store"] = JobStore(get_settings().resolved_database_url)
        return _state["job_store"]


def ingestion_pipeline() -> Any:
    """The ingestion pipeline; Haystack pipelines are not thread-safe to run concurrently, so one per thread."""
    local = _state.setdefault("pipelines", threading.local())
    if not hasattr(local, "ingestion"):
        pipeline = load_pipeline(builtin_yaml("ingestion"))
        pipeline.warm_up()
        local.ingestion = pipeline
    return local.ingestion


def reset() -> None:
    with _lock:
        _state.clear()
