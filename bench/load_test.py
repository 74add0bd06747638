"""Load test of the embedded default: N concurrent query clients for a fixed time against a fresh `ragpress serve`.

Run by hand (it is not part of `make test`):

    python -m ragpress.bench.load_test --clients 50 --seconds 60 --generate-share 0.1

It starts its own server on 127.0.0.1 (loopback only) with a throw-away RAGPRESS_HOME, ingests samples/, then runs
the clients. It is bounded three ways: the duration, a cap on the total number of requests, and a per-request
timeout; it stops the server itself. Success means no request was lost: every one got a result (200) or
back-pressure (429/503 with Retry-After); any other status, timeout or broken connection counts as a loss, and
the server must still answer /healthz at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"  # loopback only: this tool never targets another machine
CONTENT_TYPES = {".md": "text/markdown", ".html": "text/html", ".htm": "text/html"}
QUESTIONS = [
    "When was the Millau Viaduct opened?",
    "Who designed the Millau Viaduct?",
    "How tall is the Millau Viaduct?",
    "What do honeybees make?",
    "How do honeybees communicate?",
    "What is written on the Rosetta Stone?",
    "Where is the Rosetta Stone kept?",
    "Which languages appear on the Rosetta Stone?",
]


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"retrieval": [], "generating": []})
    losses: list[str] = field(default_factory=list)
    sent: int = 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    models = os.environ.get("RAGPRESS_MODELS_DIR") or str(Path.home() / ".ragpress" / "models")
    env = {**os.environ, "RAGPRESS_HOME": str(home), "RAGPRESS_MODELS_DIR": models,
           "RAGPRESS_HOST": HOST, "RAGPRESS_PORT": str(port)}
    log = (home / "serve.log").open("wb")
    # cwd=ROOT: `python -m` imports from the working directory first, so the tree holding this file is what runs.
    return subprocess.Popen([sys.executable, "-m", "ragpress", "serve"], env=env, stdout=log, stderr=log, cwd=ROOT)


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ragpress serve exited with {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("ragpress serve was not ready in time")


def ingest_samples(base: str, collection: str) -> None:
    documents = [{"id": path.stem, "text": path.read_text(encoding="utf-8"),
                  "meta": {"content_type": CONTENT_TYPES[path.suffix]} if path.suffix in CONTENT_TYPES else {}}
                 for path in sorted((ROOT / "samples").iterdir()) if path.is_file()]
    with httpx.Client(base_url=base, timeout=60) as client:
        job_id = client.post(f"/v1/collections/{collection}/documents", json={"documents": documents}).json()["job_id"]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] not in {"queued", "running"}:
                if job["status"] != "succeeded":
                    raise SystemExit(f"ingestion ended {job['status']}: {job['errors']}")
                print(f"ingested {job['done']} sample documents into {collection!r}", file=sys.stderr)
                return
            time.sleep(0.5)
    raise SystemExit("ingestion did not finish in time")


async def client_loop(client: httpx.AsyncClient, collection: str, stop_at: float, max_requests: int,
                      generate_share: float, tally: Tally, rng: random.Random) -> None:
    while time.monotonic() < stop_at and tally.sent < max_requests:
        tally.sent += 1
        generate = rng.random() < generate_share
        body = {"query": rng.choice(QUESTIONS), "top_k": 3, "generate": generate}
        started = time.perf_counter()
        try:
            response = await client.post(f"/v1/collections/{collection}/query", json=body)
        except httpx.HTTPError as exc:
            tally.statuses[type(exc).__name__] += 1
            tally.losses.append(f"{type(exc).__name__}: {exc}")
            continue
        elapsed_ms = (time.perf_counter() - started) * 1000
        tally.statuses[str(response.status_code)] += 1
        if response.status_code == 200:
            tally.latencies_ms["generating" if generate else "retrieval"].append(elapsed_ms)
        elif response.status_code in (429, 503):
            # Behave like a polite client: honour Retry-After, capped so the pressure stays high for the test.
            retry_after = float(response.headers.get("Retry-After", "1"))
            await asyncio.sleep(min(retry_after, 1.0) * rng.uniform(0.5, 1.0))
        else:
            tally.losses.append(f"HTTP {response.status_code}: {response.text[:200]}")


def still_alive(base: str, proc: subprocess.Popen[bytes], patience_s: float = 120) -> bool:
    """Whether the server still answers once the work queued by the clients has drained (it may be busy a while)."""
    deadline = time.monotonic() + patience_s
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=10).status_code == 200:
                return True
        except httpx.HTTPError:
            time.sleep(1)
    return False


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


async def run_clients(base: str, collection: str, clients: int, seconds: float, max_requests: int,
                      generate_share: float, timeout_s: float) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=timeout_s, limits=limits) as client:
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(*(client_loop(client, collection, stop_at, max_requests, generate_share, tally,
                                           random.Random(seed)) for seed in range(clients)))
        return tally, time.monotonic() - started


def report(tally: Tally, elapsed_s: float, clients: int, generate_share: float) -> str:
    ok = sum(len(v) for v in tally.latencies_ms.values())
    total = sum(tally.statuses.values())
    rows = [
        "| clients | duration | generating share | requests | answered 200 | 429 | 503 | lost |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {clients} | {elapsed_s:.1f} s | {generate_share:.0%} | {total} | {ok} | {tally.statuses['429']} "
        f"| {tally.statuses['503']} | {len(tally.losses)} |",
        "",
        "| query kind | 200s | p50 latency | p95 latency | throughput (200s/s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for kind, values in tally.latencies_ms.items():
        rows.append(f"| {kind} (`generate: {str(kind == 'generating').lower()}`) | {len(values)} "
                    f"| {percentile(values, 50):.0f} ms | {percentile(values, 95):.0f} ms "
                    f"| {len(values) / elapsed_s:.1f} |")
    every = [v for values in tally.latencies_ms.values() for v in values]
    rows.append(f"| all | {ok} | {percentile(every, 50):.0f} ms | {percentile(every, 95):.0f} ms "
                f"| {ok / elapsed_s:.1f} |")
    rows.append("")
    rows.append(f"Status counts: {dict(sorted(tally.statuses.items()))}; all responses/s: {total / elapsed_s:.1f}.")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--max-requests", type=int, default=50_000, help="hard cap on requests sent, whatever the time")
    parser.add_argument("--generate-share", type=float, default=0.1, help="fraction of queries that generate")
    parser.add_argument("--timeout", type=float, default=60.0, help="per-request timeout in seconds")
    args = parser.parse_args()
    if not 0 < args.seconds <= 600 or not 0 < args.clients <= 200:
        parser.error("keep it bounded: 1-200 clients, at most 600 s")

    with tempfile.TemporaryDirectory(prefix="ragpress-load-") as tmp:
        port = free_port()
        base = f"http://{HOST}:{port}"
        proc = start_server(Path(tmp), port)
        try:
            wait_ready(base, proc)
            ingest_samples(base, "load")
            print(f"{args.clients} clients for {args.seconds:.0f} s against {base} ...", file=sys.stderr)
            tally, elapsed = asyncio.run(run_clients(base, "load", args.clients, args.seconds, args.max_requests,
                                                     args.generate_share, args.timeout))
            alive = still_alive(base, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    print(report(tally, elapsed, args.clients, args.generate_share))
    print(f"server alive after the run: {alive}; lost requests: {len(tally.losses)}")
    for loss in tally.losses[:10]:
        print(f"  lost: {loss}")
    return 0 if alive and not tally.losses else 1


if __name__ == "__main__":
    raise SystemExit(main())
