"""A small REST client for a running ragpress server (the CLI uses it when a server answers).

Whatever comes back (an error in the API's shape or any other, a page that is not JSON, a body without what a
ragpress server sends, no answer at all) is a ``ServerError`` with a message for a person, never a KeyError.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx


class ServerError(RuntimeError):
    """The server refused or could not be understood; ``status`` is 0 when it could not be reached."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


def _segment(value: str, keep_slashes: bool = False) -> str:
    """``value`` as one path segment: a document id may hold '/', which its routes take whole."""
    return quote(value, safe="/" if keep_slashes else "")


class Client:
    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)

    def alive(self) -> bool:
        try:
            return self.http.get("/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def _call(self, method: str, path: str, expect: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any]:
        """The JSON object answered, holding every key in ``expect``; anything else is a ServerError."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise ServerError(0, "timeout", f"the server at {self.base_url} did not answer {method} {path} "
                                            "in time.") from None
        except httpx.HTTPError as exc:
            raise ServerError(0, "unreachable", f"no ragpress server answers at {self.base_url} "
                                                f"({exc.__class__.__name__}).") from None
        if not response.is_success:
            raise _refusal(response, self.base_url)
        try:
            body = response.json()
        except ValueError:
            body = None
        missing = [key for key in expect if key not in body] if isinstance(body, dict) else None
        if missing is None or missing:
            what = f"an object without {', '.join(map(repr, missing))}" if missing else \
                "something other than a JSON object"
            raise ServerError(response.status_code, "unexpected_answer",
                              f"{self.base_url} answered {method} {path} with {what}: is it a ragpress server "
                              "of this version?")
        return body

    # --- documents and jobs -----------------------------------------------------------------------
    def add_documents(self, collection: str, documents: list[dict[str, Any]], kv_precompute: str | None = None) -> str:
        """Queue documents; returns the job id. httpx sends compact UTF-8 JSON, which the CLI's batches measure."""
        body: dict[str, Any] = {"documents": documents, **({"kv_precompute": kv_precompute} if kv_precompute else {})}
        return self._call("POST", f"/v1/collections/{_segment(collection)}/documents", ("job_id",), json=body)["job_id"]

    def documents(self, collection: str, after: str | None = None, limit: int = 1000) -> dict[str, Any]:
        """One page of the collection's documents, ordered by id, after ``after``."""
        params: dict[str, Any] = {"limit": limit, **({"after": after} if after is not None else {})}
        return self._call("GET", f"/v1/collections/{_segment(collection)}/documents", ("documents",), params=params)

    def delete_documents(self, collection: str, ids: list[str]) -> dict[str, Any]:
        return self._call("POST", f"/v1/collections/{_segment(collection)}/documents/delete", ("deleted",),
                          json={"ids": ids})

    def delete_document(self, collection: str, doc_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/collections/{_segment(collection)}/documents/"
                                    f"{_segment(doc_id, keep_slashes=True)}")

    def jobs(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/jobs", ("jobs",))["jobs"]

    def job(self, job_id: str) -> dict[str, Any]:
        """A job by its id or a unique prefix of it (at least 8 characters)."""
        return self._call("GET", f"/v1/jobs/{_segment(job_id)}", _JOB_FIELDS)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/jobs/{_segment(job_id)}/cancel", _JOB_FIELDS)

    # --- query and collections --------------------------------------------------------------------
    def query(self, collection: str, query: str, **options: Any) -> dict[str, Any]:
        return self._call("POST", f"/v1/collections/{_segment(collection)}/query", ("documents",),
                          json={"query": query, **options})

    def collections(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/collections", ("collections",))["collections"]

    # --- pipelines --------------------------------------------------------------------------------
    def pipelines(self) -> list[dict[str, Any]]:
        return self._call("GET", "/v1/pipelines", ("pipelines",))["pipelines"]

    def pipeline(self, name: str, version: int | None = None) -> dict[str, Any]:
        params = {"version": version} if version is not None else {}
        return self._call("GET", f"/v1/pipelines/{_segment(name)}", ("yaml", "version"), params=params)

    def pipeline_versions(self, name: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/v1/pipelines/{_segment(name)}/versions", ("versions",))["versions"]

    def save_pipeline(self, name: str, text: bytes) -> dict[str, Any]:
        """Validate and save pipeline YAML as the pipeline's next version."""
        return self._call("PUT", f"/v1/pipelines/{_segment(name)}", ("version",), content=text,
                          headers={"content-type": "application/yaml"})

    def delete_pipeline(self, name: str) -> dict[str, Any]:
        return self._call("DELETE", f"/v1/pipelines/{_segment(name)}", ("deleted",))

    def rollback_pipeline(self, name: str, version: int) -> dict[str, Any]:
        """Save an earlier version again, as the pipeline's next version."""
        return self._call("POST", f"/v1/pipelines/{_segment(name)}/rollback", ("version",),
                          json={"version": version})


_JOB_FIELDS = ("job_id", "status", "total", "done", "failed")


def _refusal(response: httpx.Response, base_url: str) -> ServerError:
    """The server's own error when it sent one in the API's shape, else what came back, briefly."""
    try:
        error = response.json()["error"]
        return ServerError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        pass
    text = " ".join(response.text.split())[:200]
    request = response.request
    return ServerError(response.status_code, "http_error",
                       f"{base_url} answered {request.method} {request.url.path} with HTTP {response.status_code}"
                       f"{': ' + text if text else ''}")
