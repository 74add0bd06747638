"""Back-pressure: per-key rate limits (429) and a bounded query queue (503), both with Retry-After.

Limits are per API replica (in memory); behind a load balancer the effective limit is per replica.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from ragpress.api.errors import ApiError


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests, refilled continuously, bursts up to the same size."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1 - tokens) / self.rate)
                raise ApiError(429, "rate_limited", f"Too many requests for this key; retry in {wait} s.",
                               {"Retry-After": str(wait)})
            self._buckets[key] = (tokens - 1, now)


class Admission:
    """At most ``concurrent`` queries run; up to ``queued`` more wait, each for at most ``max_wait_s``;
    beyond either bound the answer is 503 at once, so every request ends in bounded time."""

    def __init__(self, concurrent: int, queued: int, max_wait_s: float) -> None:
        self._running = threading.BoundedSemaphore(concurrent)
        self._slots = threading.BoundedSemaphore(concurrent + queued)
        self.max_wait_s = max_wait_s

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._slots.acquire(blocking=False):
            raise _overloaded()
        try:
            if not self._running.acquire(timeout=self.max_wait_s):
                raise _overloaded()
            try:
                yield
            finally:
                self._running.release()
        finally:
            self._slots.release()


def _overloaded() -> ApiError:
    return ApiError(503, "overloaded", "The server is at capacity; retry shortly.", {"Retry-After": "2"})
