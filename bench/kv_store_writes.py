"""What a write to the local KV store costs as it fills: the running byte tally against reading the folder.

    python -m ragpress.bench.kv_store_writes --entries 5000

Fills a fresh store with ``--entries`` entries (well under its budget), then times, alternately, ``--writes``
writes as the store makes them (the tally says the budget holds: no folder read) and as many writes each followed
by a full read of the folder's entry times (what every write cost before the tally: the least recently used can
only be found that way).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import tempfile
import time

from ragpress.generators.kv_store import LocalKVStore


def key(number: int) -> str:
    return hashlib.sha256(str(number).encode()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=5000)
    parser.add_argument("--writes", type=int, default=50)
    parser.add_argument("--entry-bytes", type=int, default=4096)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = LocalKVStore(folder, max_bytes=10 * args.entries * args.entry_bytes)
        data = b"x" * args.entry_bytes
        for number in range(args.entries):
            store.put(key(number), data)
        tallied, scanned = [], []
        for number in range(args.writes):
            started = time.perf_counter()
            store.put(key(-2 * number - 1), data)
            tallied.append(time.perf_counter() - started)
            started = time.perf_counter()
            store.put(key(-2 * number - 2), data)
            store.evict()  # reads every entry's times, as each write did before the tally
            scanned.append(time.perf_counter() - started)
    tally_ms, scan_ms = 1000 * statistics.median(tallied), 1000 * statistics.median(scanned)
    print(f"{args.entries:,} entries: a write {tally_ms:.2f} ms with the tally, {scan_ms:.1f} ms reading the folder "
          f"({scan_ms / tally_ms:.0f}x), medians of {args.writes}")


if __name__ == "__main__":
    main()
