"""A small REST client for a running ragpress server (the CLI uses it when a server answers)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx


class ServerError(RuntimeError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def alive(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                raise ServerError(response.status_code, error["code"], error["message"])
            except (ValueError, KeyError):
                raise ServerError(response.status_code, "http_error", response.text[:300]) from None
        return response.json()

    def add_documents(self, collection: str, documents: list[dict[str, Any]]) -> str:
        return self._call("POST", f"/v1/collections/{collection}/documents", json={"documents": documents})["job_id"]

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/jobs")["jobs"]

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/jobs/{job_id}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{job_id}/cancel")

    def wait(self, job_id: str, timeout_s: float = 600, poll_s: float = 0.3,
             on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if on_progress is not None:
                on_progress(job)
            if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
                return job
            time.sleep(poll_s)

    def query(self, collection: str, query: str, **options: Any) -> dict[str, Any]:
        return self._call("POST", f"/v1/collections/{collection}/query", json={"query": query, **options})

    def delete_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/collections/{collection}/documents/{doc_id}")

    def collections(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/collections")["collections"]

    def pipeline(self, name: str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version is not None else {}
        return self._call("GET", f"/v1/pipelines/{name}", params=params)

    def save_pipeline(self, name: str, text: bytes) -> dict[str, Any]:
        """Validate and save pipeline YAML as the pipeline's next version."""
        return self._call("PUT", f"/v1/pipelines/{name}", content=text, headers={"content-type": "application/yaml"})
