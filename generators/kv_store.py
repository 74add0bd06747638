"""Content-addressed store for per-chunk KV states: local disk by default, Redis for the distributed mode.

An entry's key hashes everything its bytes depend on: the model and its KV settings (prompt prefix,
quantization, format), the document's content hash and the chunk's character span. A changed document
therefore never hits a stale entry; ``delete_document`` drops a document's entries at once. Both backends
keep a byte total and evict least-recently-used entries beyond ``max_bytes``. A writer that must not push out
entries used since a moment (eager pre-compute protects its own job's states) passes ``keep_since``: the put is
then refused, storing nothing, when only such entries could make room.

Entries are framed as ``MAGIC | crc32(payload) | payload`` (payload = safetensors with a JSON header),
so a truncated or corrupted entry is detected on load rather than decoded into wrong states. The
checksum is a CRC-32: it guards against damage, not tampering, and costs ~10x less than SHA-256 on the
tens of megabytes a query reads (it sits on the time-to-first-token path).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from prometheus_client import Counter
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

from ragpress.base.settings import KV_MAX_BYTES, get_settings
from ragpress.generators import kv_quantization

logger = logging.getLogger(__name__)

MAGIC = b"RPKV0002"
CHECKSUM_BYTES = 4
FORMAT_VERSION = 3  # 2: one-byte log2 step codes, int4 key ranges per 16 tokens; 3: int4 key widths per channel


# Counted where entries are written (the server and its embedded workers share its /metrics; a separate worker
# process counts its own); every eviction is one for the budget, so this says the budget is too small.
EVICTIONS = Counter("ragpress_kv_store_evictions_total", "Cached KV entries evicted to keep the KV store within its "
                    "byte budget (RAGPRESS_KV_MAX_BYTES)")


class CorruptEntry(ValueError):
    """A stored entry failed its checksum or could not be decoded."""


class KVBudgetFull(RuntimeError):
    """The store's budget holds only entries a pre-compute must keep; ``stored`` of its entries went in first."""

    def __init__(self, stored: int) -> None:
        super().__init__(f"the KV store's budget is full of states used since this job began ({stored} stored "
                         "before it filled)")
        self.stored = stored


@dataclass
class KVEntry:
    """One chunk's stored states (possibly quantized) and the token bookkeeping needed to use them."""

    tensors: dict[str, torch.Tensor]
    quantization: str
    token_ids: list[int]
    token_spans: list[tuple[int, int]]
    doc_id: str = ""
    # a unit merged from indexed neighbours: their stored entries, in order (``tensors`` is then empty)
    parts: list[KVEntry] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def stored_bytes(self) -> int:
        """The bytes this entry's states take in the store (scales and zero points included)."""
        return sum(p.stored_bytes for p in self.parts) or kv_quantization.stored_bytes(self.tensors)


def settings_fingerprint(model: str, prefix_ids: list[int], quantization: str) -> str:
    """Hash of what makes states incompatible: model, the prefix they were encoded after (keys carry
    RoPE for positions after it), quantization and the entry format."""
    raw = json.dumps([model, prefix_ids, quantization, FORMAT_VERSION])
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def entry_key(fingerprint: str, content_hash: str, start: int, end: int) -> str:
    return hashlib.sha256(f"{fingerprint}|{content_hash}|{start}|{end}".encode()).hexdigest()


def encode_entry(entry: KVEntry) -> bytes:
    header = {
        "quantization": entry.quantization,
        "token_ids": json.dumps(entry.token_ids),
        "token_spans": json.dumps(entry.token_spans),
        "doc_id": entry.doc_id,
    }
    payload = save_tensors({k: v.contiguous() for k, v in entry.tensors.items()}, metadata=header)
    return MAGIC + zlib.crc32(payload).to_bytes(CHECKSUM_BYTES, "little") + payload


def decode_entry(data: bytes) -> KVEntry:
    head = len(MAGIC) + CHECKSUM_BYTES
    if len(data) < head or not data.startswith(MAGIC):
        raise CorruptEntry("not a ragpress KV entry (bad magic or truncated)")
    digest, payload = data[len(MAGIC) : head], data[head:]
    if zlib.crc32(payload).to_bytes(CHECKSUM_BYTES, "little") != digest:
        raise CorruptEntry("checksum mismatch")
    try:
        tensors = load_tensors(payload)
        header = json.loads(payload[8 : 8 + int.from_bytes(payload[:8], "little")])["__metadata__"]
        return KVEntry(
            tensors=tensors,
            quantization=header["quantization"],
            token_ids=json.loads(header["token_ids"]),
            token_spans=[tuple(s) for s in json.loads(header["token_spans"])],
            doc_id=header.get("doc_id", ""),
        )
    except Exception as error:  # any decoding failure means the entry is unusable
        raise CorruptEntry(f"undecodable entry: {error}") from error


class KVStore(Protocol):
    """What the generator and the pre-compute need from a store backend."""

    max_bytes: int

    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, data: bytes, doc_id: str = "", keep_since: float | None = None) -> bool: ...
    def delete(self, key: str) -> None: ...
    def delete_document(self, doc_id: str) -> int: ...
    def total_bytes(self) -> int: ...
    def get_settings(self, name: str) -> dict[str, Any] | None: ...
    def put_settings(self, name: str, settings: dict[str, Any]) -> None: ...


def _doc_dir_name(doc_id: str) -> str:
    return hashlib.sha256(doc_id.encode()).hexdigest()[:32]


class LocalKVStore:
    """Entries as files under ``path`` (atomic writes; file mtime is the LRU clock).

    Finding the least recently used entries means reading every file's times: at 5,000 entries that took 60 ms,
    paid on every write when each write checked the budget, on a query's miss path too. The store keeps a running
    byte tally instead and reads the folder only when the tally passes the budget, then evicts down to
    ``LOW_WATER`` of it so the next writes fit without another scan. The tally is re-read every ``RESCAN_S`` to
    count what other processes or store objects on the same folder wrote."""

    LOW_WATER = 0.9
    RESCAN_S = 60.0

    def __init__(self, path: str | Path, max_bytes: int = KV_MAX_BYTES) -> None:
        self.path = Path(path).expanduser()
        self.max_bytes = max_bytes
        for sub in ("entries", "docs", "settings"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._tally: int | None = None
        self._tallied_at = 0.0

    def _file(self, key: str) -> Path:
        return self.path / "entries" / key[:2] / f"{key}.kv"

    def get(self, key: str) -> bytes | None:
        file = self._file(key)
        try:
            data = file.read_bytes()
        except FileNotFoundError:
            return None
        os.utime(file)  # mark as recently used
        return data

    def put(self, key: str, data: bytes, doc_id: str = "", keep_since: float | None = None) -> bool:
        """Store an entry, evicting least-recently-used ones beyond the budget but none used at or after
        ``keep_since`` (a Unix time); returns False, storing nothing, when the entry does not fit otherwise."""
        file = self._file(key)
        file.parent.mkdir(parents=True, exist_ok=True)
        replaced = _size(file)
        _atomic_write(file, data)
        marker = self.path / "docs" / _doc_dir_name(doc_id) / key
        if doc_id:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        with self._lock:
            total = self._tallied(len(data) - replaced)
            if total > self.max_bytes:
                total = self._evict(keep_since)[1]
        if total <= self.max_bytes and file.exists():  # an entry over the whole budget evicts itself
            return True
        self.delete(key)
        marker.unlink(missing_ok=True)
        return False

    def delete(self, key: str) -> None:
        file = self._file(key)
        size = _size(file)
        file.unlink(missing_ok=True)
        with self._lock:
            if self._tally is not None:
                self._tally -= size

    def delete_document(self, doc_id: str) -> int:
        marker = self.path / "docs" / _doc_dir_name(doc_id)
        if not marker.is_dir():
            return 0
        removed = 0
        for item in marker.iterdir():
            if self._file(item.name).exists():
                removed += 1
            self.delete(item.name)
            item.unlink(missing_ok=True)
        marker.rmdir()
        return removed

    def _entries(self) -> list[os.stat_result | Any]:
        found = []
        for folder in (self.path / "entries").iterdir():
            for file in folder.glob("*.kv"):
                try:
                    found.append((file, file.stat()))
                except FileNotFoundError:
                    continue
        return found

    def total_bytes(self) -> int:
        """The bytes stored, read from the folder (and the tally set to it)."""
        with self._lock:
            return self._recount()

    def evict(self, keep_since: float | None = None) -> int:
        """Delete least-recently-used entries until the store fits ``max_bytes``, none used at or after
        ``keep_since``; returns how many."""
        with self._lock:
            return self._evict(keep_since)[0]

    def _tallied(self, change: int) -> int:
        """The tally after a write of ``change`` bytes, re-read from the folder when unknown or old."""
        if self._tally is None or time.monotonic() - self._tallied_at > self.RESCAN_S:
            return self._recount()
        self._tally += change
        return self._tally

    def _recount(self) -> int:
        self._tally, self._tallied_at = sum(stat.st_size for _, stat in self._entries()), time.monotonic()
        return self._tally

    def _evict(self, keep_since: float | None) -> tuple[int, int]:
        """(entries removed, bytes stored after): least recently used first down to ``LOW_WATER`` of the budget
        once over it, sparing entries used at or after ``keep_since``."""
        entries = self._entries()
        total = sum(stat.st_size for _, stat in entries)
        target = self.max_bytes * self.LOW_WATER if total > self.max_bytes else self.max_bytes
        removed = 0
        for file, stat in sorted(entries, key=lambda item: item[1].st_mtime):
            if total <= target or (keep_since is not None and stat.st_mtime >= keep_since):
                break
            file.unlink(missing_ok=True)
            total -= stat.st_size
            removed += 1
        EVICTIONS.inc(removed)
        self._tally, self._tallied_at = total, time.monotonic()
        return removed, total

    def get_settings(self, name: str) -> dict[str, Any] | None:
        file = self.path / "settings" / f"{_doc_dir_name(name)}.json"
        return json.loads(file.read_text()) if file.exists() else None

    def put_settings(self, name: str, settings: dict[str, Any]) -> None:
        _atomic_write(self.path / "settings" / f"{_doc_dir_name(name)}.json", json.dumps(settings).encode())


def _size(file: Path) -> int:
    try:
        return file.stat().st_size
    except FileNotFoundError:
        return 0


def _atomic_write(file: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=file.parent, suffix=".tmp")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(temporary, file)


class RedisKVStore:
    """Entries in Redis, shared by every worker and server (a sorted set is the LRU clock)."""

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", namespace: str = "ragpress:kv",
                 max_bytes: int = KV_MAX_BYTES) -> None:
        import redis

        self.url = url
        self.namespace = namespace
        self.max_bytes = max_bytes
        self._redis = redis.Redis.from_url(url)

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def get(self, key: str) -> bytes | None:
        data = self._redis.get(self._k("e", key))
        if data is not None:
            self._redis.zadd(self._k("lru"), {key: time.time()})
        return data

    def put(self, key: str, data: bytes, doc_id: str = "", keep_since: float | None = None) -> bool:
        """As ``LocalKVStore.put``."""
        old = self._redis.hget(self._k("sizes"), key)
        pipe = self._redis.pipeline()
        pipe.set(self._k("e", key), data)
        pipe.hset(self._k("sizes"), key, len(data))
        pipe.incrby(self._k("total"), len(data) - int(old or 0))
        pipe.zadd(self._k("lru"), {key: time.time()})
        if doc_id:
            pipe.sadd(self._k("doc", doc_id), key)
        pipe.execute()
        self.evict(keep_since)
        if self.total_bytes() <= self.max_bytes and self._redis.exists(self._k("e", key)):
            return True
        self.delete(key)
        if doc_id:
            self._redis.srem(self._k("doc", doc_id), key)
        return False

    def delete(self, key: str) -> None:
        size = self._redis.hget(self._k("sizes"), key)
        pipe = self._redis.pipeline()
        pipe.delete(self._k("e", key))
        pipe.hdel(self._k("sizes"), key)
        pipe.zrem(self._k("lru"), key)
        if size is not None:
            pipe.decrby(self._k("total"), int(size))
        pipe.execute()

    def delete_document(self, doc_id: str) -> int:
        keys = [k.decode() for k in self._redis.smembers(self._k("doc", doc_id))]
        removed = sum(1 for key in keys if self._redis.exists(self._k("e", key)))
        for key in keys:
            self.delete(key)
        self._redis.delete(self._k("doc", doc_id))
        return removed

    def total_bytes(self) -> int:
        return int(self._redis.get(self._k("total")) or 0)

    def evict(self, keep_since: float | None = None) -> int:
        """As ``LocalKVStore.evict``."""
        removed = 0
        while self.total_bytes() > self.max_bytes:
            oldest = self._redis.zrange(self._k("lru"), 0, 0, withscores=True)
            if not oldest or (keep_since is not None and oldest[0][1] >= keep_since):
                break
            self.delete(oldest[0][0].decode())
            removed += 1
        EVICTIONS.inc(removed)
        return removed

    def get_settings(self, name: str) -> dict[str, Any] | None:
        raw = self._redis.get(self._k("settings", name))
        return json.loads(raw) if raw else None

    def put_settings(self, name: str, settings: dict[str, Any]) -> None:
        self._redis.set(self._k("settings", name), json.dumps(settings))

    def clear(self) -> None:
        """Remove everything under this namespace (tests)."""
        for key in self._redis.scan_iter(match=f"{self.namespace}:*"):
            self._redis.delete(key)


def open_store(config: dict[str, Any] | None = None) -> KVStore:
    """A store from its YAML-friendly config: ``{"backend": "local", "path": ..., "max_bytes": ...}``
    (path defaults to ``<data_dir>/kv``) or ``{"backend": "redis", "url": ..., "namespace": ...}``; ``max_bytes``
    defaults to the server's ``RAGPRESS_KV_MAX_BYTES``."""
    settings = get_settings()
    if not config:
        url = settings.kv_store_url  # the server's choice when a pipeline names no store
        config = {"backend": "redis", "url": url} if url else {}
    config = {"max_bytes": settings.kv_max_bytes, **config}
    backend = config.pop("backend", "local")
    if backend == "local":
        config.setdefault("path", settings.data_path / "kv")
        return LocalKVStore(**config)
    if backend == "redis":
        return RedisKVStore(**config)
    raise ValueError(f"Unknown KV store backend {backend!r}; expected 'local' or 'redis'.")
