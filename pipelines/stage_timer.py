"""Per-component wall time of a pipeline run, gathered through Haystack's tracing hooks.

Timings are collected per request in a context variable, so concurrent requests do not mix, and no
content is recorded (tags that carry inputs or outputs are ignored).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

from haystack import tracing
from haystack.tracing import Span, Tracer

_timings: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("ragpress_timings", default=None)


class _TimedSpan(Span):
    def set_tag(self, key: str, value: Any) -> None:  # content tags are deliberately dropped
        return None


class StageTimer(Tracer):
    """A tracer that records each component's run time (ms) under its component name."""

    @contextlib.contextmanager
    def trace(self, operation_name: str, tags: dict[str, Any] | None = None,
              parent_span: Span | None = None) -> Iterator[Span]:
        started = time.perf_counter()
        try:
            yield _TimedSpan()
        finally:
            timings = _timings.get()
            name = (tags or {}).get("haystack.component.name")
            if timings is not None and operation_name == "haystack.component.run" and name:
                timings[name] = timings.get(name, 0.0) + (time.perf_counter() - started) * 1000

    def current_span(self) -> Span | None:
        return None


_installed = False


def install() -> None:
    global _installed
    if not _installed:
        tracing.enable_tracing(StageTimer())
        _installed = True


@contextlib.contextmanager
def timed_run() -> Iterator[dict[str, float]]:
    """Collect component timings for the pipeline runs inside this block."""
    install()
    timings: dict[str, float] = {}
    token = _timings.set(timings)
    try:
        yield timings
    finally:
        _timings.reset(token)
