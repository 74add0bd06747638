"""Helpers for tests that start real processes: a ragpress server, free ports, job polling."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"


def models_dir() -> Path:
    return Path(os.environ["RAGPRESS_MODELS_DIR"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_available(url: str = "redis://127.0.0.1:6379/0") -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


class ServerProcess:
    """A real `ragpress serve` subprocess on a free port with its own RAGPRESS_HOME."""

    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = home
        self.log = home / "server.log"
        full_env = {**os.environ, "RAGPRESS_HOME": str(home), "RAGPRESS_MODELS_DIR": str(models_dir()),
                    "RAGPRESS_PORT": str(self.port), **(env or {})}
        home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([sys.executable, "-m", "ragpress", "serve"], env=full_env,
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT, cwd=REPO)

    def wait_ready(self, timeout_s: float = 180) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def serving(home: Path, env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A ready server for a fixture to yield from; stopped when the fixture ends."""
    proc = ServerProcess(home, env=env)
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def wait_for_job(client: httpx.Client, job_id: str, timeout_s: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.3)
    raise TimeoutError(f"job {job_id} still {job['status']}")


PG_ADMIN_URL = os.environ.get("RAGPRESS_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def postgres_database() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database for a fixture to yield from, dropped after; skips when no server
    answers at RAGPRESS_TEST_POSTGRES (default: the standard local port)."""
    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            name = f"ragpress_test_{uuid.uuid4().hex[:8]}"
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        pytest.skip(f"needs PostgreSQL at {PG_ADMIN_URL} ({exc.__class__.__name__}); set RAGPRESS_TEST_POSTGRES")
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
