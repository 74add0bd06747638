"""Embedded ingestion: how long the in-process workers of ``ragpress serve`` take to index a batch, by how often
they poll the in-memory broker (kombu's default, once a second, is the named baseline).

Run by hand from a checkout:

    python -m ragpress.bench.embedded_ingest --docs 400 --rounds 2

Each round runs each variant in a fresh process with a fresh RAGPRESS_HOME (the Service, its index and its Celery
app are per-process), warms the models up on 16 documents, then times one job of ``--docs`` documents from
submit to ``succeeded``; variants alternate so load drifts hit both. Two corpora: one-sentence notes (what a folder
of small files gives) and SciFact abstracts (about 14 units each).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ragpress.bench.ingest_scaling import abstracts

VARIANTS = {"poll 1 s (kombu default)": 1.0, "poll 0.02 s (shipped)": 0.02}


def notes(count: int) -> list[dict[str, str]]:
    return [{"id": f"notes/{n:05d}.txt", "text": f"Note {n} records reading number {n * 7919 % 99991}."}
            for n in range(count)]


def one_round(corpus: str, count: int, poll_s: float) -> float:
    """Seconds for one job, in a process of its own: ``--child`` below."""
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "RAGPRESS_HOME": home,
               "RAGPRESS_MODELS_DIR": os.environ.get("RAGPRESS_MODELS_DIR", os.path.expanduser("~/.ragpress/models"))}
        done = subprocess.run([sys.executable, "-m", "ragpress.bench.embedded_ingest", "--child", corpus,
                               "--docs", str(count), "--poll", str(poll_s)], env=env, capture_output=True, text=True,
                              check=True)
        return float(done.stdout.strip().splitlines()[-1])


def child(corpus: str, count: int, poll_s: float) -> None:
    from ragpress.base import schema
    from ragpress.base.settings import get_settings
    from ragpress.service import IncomingDocument, Service
    from ragpress.workers import celery_app

    celery_app.MEMORY_POLL_S = poll_s  # read when the app is made, at the Service's start
    documents = [IncomingDocument(text=d["text"], id=d["id"])
                 for d in (notes(count + 16) if corpus == "notes" else abstracts(count + 16))]
    service = Service(get_settings())
    service.start()
    try:
        service.wait(schema.DEFAULT_TENANT, service.submit(schema.DEFAULT_TENANT, "warm", documents[:16]))
        started = time.perf_counter()
        job = service.wait(schema.DEFAULT_TENANT, service.submit(schema.DEFAULT_TENANT, "timed", documents[16:]),
                           timeout_s=3600)
        elapsed = time.perf_counter() - started
    finally:
        service.stop()
    if job["status"] != "succeeded":
        raise SystemExit(f"job ended {job['status']}: {job['errors'][:3]}")
    print(elapsed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--corpora", default="notes,scifact")
    parser.add_argument("--child", choices=["notes", "scifact"], help=argparse.SUPPRESS)
    parser.add_argument("--poll", type=float, default=0.02, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.docs, args.poll)
        return
    results: dict[str, dict[str, list[float]]] = {}
    for corpus in args.corpora.split(","):
        for round_ in range(args.rounds):
            order = list(VARIANTS.items()) if round_ % 2 == 0 else list(reversed(VARIANTS.items()))
            for name, poll_s in order:
                results.setdefault(corpus, {}).setdefault(name, []).append(one_round(corpus, args.docs, poll_s))
    print("| corpus | variant | rounds | seconds (median) | docs/s | ratio vs baseline |")
    print("|---|---|---:|---:|---:|---:|")
    for corpus, by_variant in results.items():
        baseline = statistics.median(by_variant[next(iter(VARIANTS))])
        for name, times in by_variant.items():
            median = statistics.median(times)
            print(f"| {corpus} | {name} | {len(times)} | {median:.1f} | {args.docs / median:.1f} | "
                  f"{baseline / median:.2f}x |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
