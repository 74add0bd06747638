"""``ragpress serve`` says where it answers (the address and port it really listens on), decides on keys from that
address, and a server whose last key is revoked serves localhost without keys again, saying so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from support import REPO, free_port, models_dir

from ragpress.cli import served_urls


@contextmanager
def serving(home: Path, *args: str) -> Iterator[Path]:
    """``ragpress serve ARGS`` with RAGPRESS_PORT naming another port than the one passed; yields its log."""
    log = home / "serve.log"
    env = {**os.environ, "RAGPRESS_HOME": str(home), "RAGPRESS_MODELS_DIR": str(models_dir()),
           "RAGPRESS_PORT": str(free_port())}
    process = subprocess.Popen([sys.executable, "-m", "ragpress", "serve", *args], env=env, cwd=REPO,
                               stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        port = args[args.index("--port") + 1]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"server not ready:\n{log.read_text()[-3000:]}")
        yield log
    finally:
        process.terminate()
        process.wait(timeout=30)


def ragpress(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAGPRESS_HOME": str(home), "RAGPRESS_MODELS_DIR": str(models_dir())}
    return subprocess.run([sys.executable, "-m", "ragpress", *args], env=env, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.unit
def test_the_urls_printed_are_the_api_console_docs_and_metrics() -> None:
    assert served_urls("127.0.0.1", 8123) == [
        "serving on http://127.0.0.1:8123", "  API      http://127.0.0.1:8123/v1",
        "  console  http://127.0.0.1:8123/console/", "  docs     http://127.0.0.1:8123/docs",
        "  metrics  http://127.0.0.1:8123/metrics"]
    assert served_urls("0.0.0.0", 80)[0] == "serving on http://127.0.0.1:80 (listening on 0.0.0.0, every interface)"


@pytest.mark.integration
@pytest.mark.slow
def test_serve_prints_the_port_it_listens_on_and_revoking_the_last_key_reopens_localhost(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(tmp_path, "--port", str(port)) as log:
        printed = log.read_text()
        assert f"serving on {url}\n" in printed and f"console  {url}/console/" in printed
        assert f'"port": {port}' in printed
        for path in ("/v1/pipelines", "/console/", "/metrics"):
            assert httpx.get(url + path).status_code == 200, path

        key_id = ragpress(tmp_path, "keys", "create", "--tenant", "acme").stdout.split()[2]
        locked = ragpress(tmp_path, "jobs", "list", "--server", url)
        assert locked.returncode == 1 and "pass --api-key KEY or set RAGPRESS_API_KEY" in " ".join(
            locked.stderr.split())
        revoked = ragpress(tmp_path, "keys", "revoke", key_id)
        assert revoked.returncode == 0
        assert "The last active API key was revoked" in revoked.stderr
        assert ragpress(tmp_path, "jobs", "list", "--server", url).returncode == 0
        assert httpx.get(f"{url}/v1/collections").status_code == 200


@pytest.mark.integration
@pytest.mark.slow
def test_a_server_listening_beyond_localhost_requires_keys_even_before_one_exists(tmp_path: Path) -> None:
    port = free_port()
    with serving(tmp_path, "--host", "0.0.0.0", "--port", str(port)) as log:
        assert f"serving on http://127.0.0.1:{port} (listening on 0.0.0.0, every interface)" in log.read_text()
        refused = httpx.get(f"http://127.0.0.1:{port}/v1/collections")
        assert refused.status_code == 401 and "--api-key" in refused.json()["error"]["message"]
