"""KV store: content-addressed entries, corruption detected, documents invalidated, LRU under a budget."""

import os
import time

import pytest
import torch
from prometheus_client import REGISTRY

from ragpress.generators.kv_store import (
    CorruptEntry,
    KVEntry,
    LocalKVStore,
    RedisKVStore,
    decode_entry,
    encode_entry,
    entry_key,
    settings_fingerprint,
)


def entry(tokens: int = 4) -> KVEntry:
    tensors = {"k": torch.randn(2, 1, tokens, 8), "v": torch.randn(2, 1, tokens, 8)}
    return KVEntry(tensors, "none", list(range(tokens)), [(i, i + 1) for i in range(tokens)], "doc-1")


@pytest.mark.unit
def test_an_entry_round_trips_through_its_bytes():
    original = entry()
    restored = decode_entry(encode_entry(original))
    assert torch.equal(restored.tensors["k"], original.tensors["k"])
    assert restored.token_ids == original.token_ids
    assert restored.token_spans == original.token_spans
    assert restored.doc_id == "doc-1"


@pytest.mark.unit
@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_a_damaged_entry_is_reported_corrupt_not_decoded(damage):
    data = bytearray(encode_entry(entry()))
    if damage == "flip":
        data[-5] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data = bytearray(b"not a kv entry at all")
    with pytest.raises(CorruptEntry):
        decode_entry(bytes(data))


@pytest.mark.unit
def test_keys_change_with_model_prefix_quantization_content_and_span():
    base = settings_fingerprint("m", [1, 2], "int8")
    assert settings_fingerprint("m2", [1, 2], "int8") != base
    assert settings_fingerprint("m", [1, 3], "int8") != base
    assert settings_fingerprint("m", [1, 2], "int4") != base
    assert entry_key(base, "hash", 0, 10) != entry_key(base, "hash2", 0, 10)
    assert entry_key(base, "hash", 0, 10) != entry_key(base, "hash", 10, 20)


@pytest.fixture(params=["local", "redis"])
def store(request, tmp_path):
    """The same contract for the embedded (files) and the distributed (Redis) KV store."""
    if request.param == "local":
        yield LocalKVStore(tmp_path, max_bytes=250)
        return
    redis = pytest.importorskip("redis")
    remote = RedisKVStore("redis://127.0.0.1:6379/0", namespace=f"ragpress:test:{os.getpid()}", max_bytes=250)
    try:
        remote._redis.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("no Redis server at 127.0.0.1:6379 (the distributed-mode KV store needs one)")
    remote.clear()
    yield remote
    remote.clear()


@pytest.mark.integration
def test_a_store_puts_gets_and_drops_a_documents_entries(store):
    store.put("a" * 64, b"one", doc_id="doc-1")
    store.put("b" * 64, b"two", doc_id="doc-1")
    store.put("c" * 64, b"three", doc_id="doc-2")
    assert store.get("a" * 64) == b"one"
    assert store.total_bytes() == 11
    assert store.delete_document("doc-1") == 2
    assert store.get("a" * 64) is None and store.get("b" * 64) is None
    assert store.get("c" * 64) == b"three"


@pytest.mark.integration
def test_a_store_evicts_least_recently_used_entries_beyond_its_budget(store):
    for name in "ab":
        store.put(name * 64, b"x" * 100)
        time.sleep(0.05)  # distinct access times
    store.get("a" * 64)  # used again: now the most recent
    time.sleep(0.05)
    evicted = REGISTRY.get_sample_value("ragpress_kv_store_evictions_total")
    store.put("c" * 64, b"x" * 100)  # over budget: b is the least recently used
    assert REGISTRY.get_sample_value("ragpress_kv_store_evictions_total") == evicted + 1, "counted for /metrics"
    assert store.total_bytes() <= 250
    assert store.get("a" * 64) is not None and store.get("c" * 64) is not None
    assert store.get("b" * 64) is None


@pytest.mark.integration
def test_a_protected_writer_evicts_older_entries_then_is_refused_rather_than_evict_its_own(store):
    store.put("o" * 64, b"x" * 100)  # an earlier job's entry
    time.sleep(0.05)
    since = time.time()
    time.sleep(0.05)
    assert store.put("a" * 64, b"x" * 100, keep_since=since) is True
    assert store.put("b" * 64, b"x" * 100, keep_since=since) is True, "room is made by evicting the older entry"
    assert store.get("o" * 64) is None
    assert store.put("c" * 64, b"x" * 100, doc_id="doc-3", keep_since=since) is False, "only its own entries left"
    assert store.get("c" * 64) is None and store.delete_document("doc-3") == 0
    assert store.get("a" * 64) is not None and store.get("b" * 64) is not None
    assert store.total_bytes() <= 250
    assert store.put("c" * 64, b"x" * 100) is True, "an unprotected writer still evicts the least recently used"


@pytest.mark.integration
def test_an_entry_larger_than_the_whole_budget_is_refused(store):
    assert store.put("a" * 64, b"x" * 300) is False
    assert store.get("a" * 64) is None and store.total_bytes() == 0


@pytest.mark.integration
def test_local_writes_under_budget_keep_a_tally_instead_of_reading_the_folder(tmp_path, monkeypatch):
    store = LocalKVStore(tmp_path, max_bytes=1000)
    store.put("a" * 64, b"x" * 100)  # the first write counts what is there
    scans = []
    original = store._entries
    monkeypatch.setattr(store, "_entries", lambda: scans.append(1) or original())
    for name in "bcdefghij":
        store.put(name * 64, b"x" * 100)
        time.sleep(0.01)
    assert scans == [] and store._tally == 1000
    store.put("k" * 64, b"x" * 100)  # over: one scan, evicting the oldest down to 90% of the budget
    assert scans == [1]
    assert store.get("a" * 64) is None and store.get("b" * 64) is None and store.get("c" * 64) is not None
    assert store.total_bytes() == 900


@pytest.mark.integration
def test_local_stores_on_one_folder_count_each_others_entries(tmp_path):
    first, second = LocalKVStore(tmp_path, max_bytes=250), LocalKVStore(tmp_path, max_bytes=250)
    first.put("a" * 64, b"x" * 100)
    time.sleep(0.05)
    first.put("b" * 64, b"x" * 100)
    time.sleep(0.05)
    second.put("c" * 64, b"x" * 100)  # its first write reads the folder: 300 bytes, over the budget
    assert first.get("a" * 64) is None and second.total_bytes() == 200


@pytest.mark.integration
def test_a_store_keeps_settings_per_name(store):
    store.put_settings("calibration|m|p", {"temperature": 0.8})
    assert store.get_settings("calibration|m|p") == {"temperature": 0.8}
    assert store.get_settings("other") is None


def test_local_settings_survive_reopening(tmp_path):
    LocalKVStore(tmp_path).put_settings("calibration|m|p", {"scale": 0.9})
    assert LocalKVStore(tmp_path).get_settings("calibration|m|p") == {"scale": 0.9}
