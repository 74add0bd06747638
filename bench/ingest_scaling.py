"""Ingestion scaling: do two single-threaded `ragpress worker` processes index a batch >= 1.6x as fast as one?

Run by hand (it starts its own processes over the local Redis and PostgreSQL and stops them):

    python -m ragpress.bench.ingest_scaling --docs 2000

Setup, as in the distributed mode: one `ragpress serve` owns the embedded index and only writes (it does not
consume the ingest queue); N `ragpress worker --concurrency 1` processes convert, chunk and embed and hand
their units to the owner; jobs and documents live in PostgreSQL; Celery runs over Redis. Every process runs
with OMP/MKL threads = 1, so one worker is one core's worth of work. Rounds alternate 1 and 2 workers; each
round indexes the same SciFact abstracts into a fresh collection, after a warm-up batch per worker (model
loading is not counted). Time = first request sent to every job `succeeded`.

Where time went, per round: the CPU seconds each process used (from /proc), and each worker's busy share
(seconds inside ingestion tasks, from Celery's log, over the round's wall time). Workers busy ~100% of the
time never waited for the broker, the job store or the index owner: a ratio below 2 then means they got
less CPU than a core each (a shared machine), not that the write path serialized them. Docs per worker
CPU-second staying flat from 1 to 2 workers says the same from the other side (no work added by contention).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ragpress.bench.load_test import HOST, ROOT, free_port, start_server, wait_ready

DATA = ROOT.parent / "shared" / "datasets" / "scifact" / "corpus.jsonl"
REDIS_URL = "redis://127.0.0.1:6379/12"  # a database of its own, flushed before use
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_DATABASE = "ragpress_bench_scaling"
SINGLE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
REQUEST_DOCS = 1000  # the server's default max_documents_per_request
TASK_DONE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): INFO/MainProcess\] "
                       r"Task workers\.tasks\.ingest_batch\[[^\]]+\] succeeded in ([0-9.]+)s")


@dataclass
class Round:
    workers: int
    seconds: float
    documents: int
    units: int
    worker_cpu_s: list[float]
    worker_busy_s: list[float]
    owner_cpu_s: float
    load_before: float
    load_after: float

    @property
    def docs_per_s(self) -> float:
        return self.documents / self.seconds


def abstracts(count: int) -> list[dict[str, Any]]:
    documents = []
    with DATA.open() as corpus:
        for line in corpus:
            record = json.loads(line)
            text = record["title"] + "\n\n" + " ".join(s.strip() for s in record["abstract"])
            documents.append({"id": str(record["doc_id"]), "text": text})
            if len(documents) == count:
                break
    if len(documents) < count:
        raise SystemExit(f"{DATA} holds only {len(documents)} abstracts")
    return documents


def fresh_database() -> str:
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {PG_DATABASE} WITH (FORCE)"))
        conn.execute(sa.text(f"CREATE DATABASE {PG_DATABASE}"))
    admin.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DATABASE


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process, from /proc (fields 14 and 15 of stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds(log: Path, since: datetime) -> float:
    """Seconds a worker spent inside ingestion tasks that ended after ``since`` (Celery logs local time)."""
    total = 0.0
    for line in log.read_text(errors="replace").splitlines():
        match = TASK_DONE.match(line)
        if match and datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f") >= since:
            total += float(match.group(2))
    return total


def start_worker(log: Path) -> subprocess.Popen[bytes]:
    out = log.open("wb")
    return subprocess.Popen([sys.executable, "-m", "ragpress", "worker", "--concurrency", "1"],
                            stdout=out, stderr=out, cwd=ROOT)


def wait_worker_ready(proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a worker exited early:\n{log.read_text()[-2000:]}")
        if " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.3)
    raise SystemExit("a worker was not ready in time")


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ingest(client: httpx.Client, collection: str, documents: list[dict[str, Any]]) -> int:
    """Send the documents, wait for every job to succeed; returns the collection's indexed units."""
    job_ids = [client.post(f"/v1/collections/{collection}/documents",
                           json={"documents": documents[i:i + REQUEST_DOCS]}).json()["job_id"]
               for i in range(0, len(documents), REQUEST_DOCS)]
    for job_id in job_ids:
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] not in ("queued", "running"):
                break
            time.sleep(0.25)
        if job["status"] != "succeeded":
            raise SystemExit(f"job {job_id} ended {job['status']}: {job['errors'][:3]}")
    return int(client.get(f"/v1/collections/{collection}").json()["indexed_units"])


def run_round(client: httpx.Client, owner_pid: int, workers: int, documents: list[dict[str, Any]],
              warm_up: list[dict[str, Any]], name: str, logs: Path) -> Round:
    worker_logs = [logs / f"{name}-worker{k}.log" for k in range(workers)]
    procs = [start_worker(log) for log in worker_logs]
    try:
        for proc, log in zip(procs, worker_logs, strict=True):
            wait_worker_ready(proc, log)
        ingest(client, f"{name}-warm", warm_up)  # one batch per worker: prefetch 1 + acks_late spread them
        cpu_before = [cpu_seconds(p.pid) for p in procs]
        owner_before = cpu_seconds(owner_pid)
        load_before = os.getloadavg()[0]
        since = datetime.now()
        started = time.perf_counter()
        units = ingest(client, name, documents)
        seconds = time.perf_counter() - started
        worker_cpu = [cpu_seconds(p.pid) - b for p, b in zip(procs, cpu_before, strict=True)]
        busy = [busy_seconds(log, since) for log in worker_logs]
        result = Round(workers, seconds, len(documents), units, worker_cpu, busy,
                       cpu_seconds(owner_pid) - owner_before, load_before, os.getloadavg()[0])
    finally:
        stop(procs)
    print(f"{name}: {workers} worker(s) {result.docs_per_s:.2f} docs/s ({seconds:.1f} s, {units} units); "
          f"worker CPU {[round(c / seconds, 2) for c in worker_cpu]} of a core, busy "
          f"{[round(b / seconds, 2) for b in busy]}, owner "
          f"{result.owner_cpu_s / seconds:.2f}; load {result.load_before:.2f} -> {result.load_after:.2f}",
          flush=True)
    return result


def report(rounds: list[Round], batch_size: int) -> None:
    by_workers = {n: [r for r in rounds if r.workers == n] for n in (1, 2)}
    median = {n: statistics.median(r.docs_per_s for r in rs) for n, rs in by_workers.items()}
    ratio = median[2] / median[1]
    print("\n| workers | rounds | docs/s (median) | units/s | worker CPU / core | worker busy share "
          "| docs per worker CPU-s | owner CPU / core | load avg (1 min) |\n"
          "|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n, rs in by_workers.items():
        units = statistics.median(r.units / r.seconds for r in rs)
        worker_cpu = statistics.median(c / r.seconds for r in rs for c in r.worker_cpu_s)
        busy = statistics.median(b / r.seconds for r in rs for b in r.worker_busy_s)
        efficiency = statistics.median(r.documents / sum(r.worker_cpu_s) for r in rs)
        owner_cpu = statistics.median(r.owner_cpu_s / r.seconds for r in rs)
        loads = ", ".join(f"{r.load_before:.1f}-{r.load_after:.1f}" for r in rs)
        print(f"| {n} | {len(rs)} | {median[n]:.2f} | {units:.1f} | {worker_cpu:.2f} | {busy:.2f} | "
              f"{efficiency:.2f} | {owner_cpu:.2f} | {loads} |")
    print(f"\nratio 2 workers / 1 worker: {ratio:.2f}x (target >= 1.6x); {rounds[0].documents} SciFact abstracts "
          f"per round, {batch_size} documents per task; cores: {os.cpu_count()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=2000, help="SciFact abstracts indexed per round")
    parser.add_argument("--repeats", type=int, default=1, help="pairs of rounds (1 worker, 2 workers)")
    parser.add_argument("--batch-size", type=int, default=16, help="documents per ingestion task")
    args = parser.parse_args()
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    corpus = abstracts(args.docs + 2 * args.batch_size)
    documents, warm_up = corpus[:args.docs], corpus[args.docs:]
    home = Path(tempfile.mkdtemp(prefix="ragpress-scaling-"))
    port = free_port()
    os.environ.update(SINGLE_THREAD, REDIS_URL=REDIS_URL, RAGPRESS_DATABASE_URL=fresh_database(),
                      RAGPRESS_HOME=str(home), RAGPRESS_HOST=HOST, RAGPRESS_PORT=str(port),
                      RAGPRESS_CONSUME_INGEST_QUEUE="false", RAGPRESS_INGEST_BATCH_SIZE=str(args.batch_size))
    os.environ.setdefault("RAGPRESS_MODELS_DIR", str(Path.home() / ".ragpress" / "models"))
    owner = start_server(home, port)
    base = f"http://{HOST}:{port}"
    rounds: list[Round] = []
    try:
        wait_ready(base, owner)
        with httpx.Client(base_url=base, timeout=120) as client:
            # 1, 2, 2, 1, ...: a drift in the machine's load hits both sides alike
            order = [n for k in range(args.repeats) for n in ((1, 2) if k % 2 == 0 else (2, 1))]
            for k, workers in enumerate(order):
                half = warm_up[:workers * args.batch_size]
                rounds.append(run_round(client, owner.pid, workers, documents, half, f"r{k}-w{workers}", home))
    finally:
        stop([owner])
    report(rounds, args.batch_size)
    print(f"logs in {home}")


if __name__ == "__main__":
    main()
