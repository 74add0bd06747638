"""Where ``ingest`` and ``query`` run: the server when one answers (it owns the index), else a Service embedded in
this process, behind one small interface; either one's refusal is a message, never a traceback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from ragpress.base.settings import get_settings
from ragpress.cli_common import client, explain, fail

if TYPE_CHECKING:
    from ragpress.client import Client
    from ragpress.service import Service


class Backend(Protocol):
    def submit(self, collection: str, documents: list[dict[str, Any]], kv_precompute: str | None = None) -> str: ...

    def job(self, job_id: str) -> dict[str, Any]: ...

    def documents(self, collection: str, after: str | None) -> dict[str, Any]: ...

    def delete_documents(self, collection: str, ids: list[str]) -> dict[str, Any]: ...

    def query(self, collection: str, text: str, options: dict[str, Any]) -> dict[str, Any]: ...

    def pipeline_yaml(self, name: str) -> str: ...

    def save_pipeline(self, name: str, text: str) -> None: ...

    def delete_pipeline(self, name: str) -> None: ...


PAGE = 1000  # documents per listing page and per delete request: the most the routes take


class Remote:
    def __init__(self, server: Client) -> None:
        self.client = server

    def submit(self, collection: str, documents: list[dict[str, Any]], kv_precompute: str | None = None) -> str:
        return self.client.add_documents(collection, documents, kv_precompute)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.client.job(job_id)

    def documents(self, collection: str, after: str | None) -> dict[str, Any]:
        return self.client.documents(collection, after, PAGE)

    def delete_documents(self, collection: str, ids: list[str]) -> dict[str, Any]:
        return self.client.delete_documents(collection, ids)

    def query(self, collection: str, text: str, options: dict[str, Any]) -> dict[str, Any]:
        return self.client.query(collection, text, **options)

    def pipeline_yaml(self, name: str) -> str:
        return str(self.client.pipeline(name)["yaml"])

    def save_pipeline(self, name: str, text: str) -> None:
        self.client.save_pipeline(name, text.encode())

    def delete_pipeline(self, name: str) -> None:
        self.client.delete_pipeline(name)


class Embedded:
    """The default tenant's data in this machine's index, as a server without keys would serve it."""

    def __init__(self, service: Service) -> None:
        from ragpress.base import schema

        self.service, self.tenant = service, schema.DEFAULT_TENANT

    def submit(self, collection: str, documents: list[dict[str, Any]], kv_precompute: str | None = None) -> str:
        from ragpress.service import IncomingDocument

        return self.service.submit(self.tenant, collection, [IncomingDocument(**d) for d in documents], kv_precompute)

    def job(self, job_id: str) -> dict[str, Any]:
        return self.service.job(self.tenant, job_id)

    def documents(self, collection: str, after: str | None) -> dict[str, Any]:
        return self.service.documents(self.tenant, collection, limit=PAGE, after=after)

    def delete_documents(self, collection: str, ids: list[str]) -> dict[str, Any]:
        return self.service.delete_documents(self.tenant, collection, ids=ids)

    def query(self, collection: str, text: str, options: dict[str, Any]) -> dict[str, Any]:
        from ragpress.pipelines.query_pipeline import QueryRequest

        return self.service.query(self.tenant, collection, QueryRequest(query=text, **options))

    def pipeline_yaml(self, name: str) -> str:
        return str(self.service.pipeline(self.tenant, name)["yaml"])

    def save_pipeline(self, name: str, text: str) -> None:
        self.service.save_pipeline(self.tenant, name, text)

    def delete_pipeline(self, name: str) -> None:
        self.service.delete_pipeline(self.tenant, name)


@contextmanager
def backend(server: str | None, api_key: str | None) -> Iterator[Backend]:
    """The server at ``server`` (or the configured one) when it answers; otherwise, unless a server or a key was
    named, a Service embedded in this process for the command's duration."""
    from ragpress.client import ServerError

    remote = client(server, api_key)
    if remote.alive():
        try:
            yield Remote(remote)
        except ServerError as exc:
            fail(explain(exc, api_key))
        return
    if server or api_key:
        fail(f"no ragpress server answers at {remote.base_url}; start one with `ragpress serve` (given a server "
             "or an API key, a command never falls back to this machine's embedded index).")
    service = _embedded_service()
    try:
        yield Embedded(service)
    except Exception as exc:
        _fail_if_written_for_the_user(exc)
        raise
    finally:
        service.stop()


def _embedded_service() -> Service:
    from ragpress.base.document_stores import IndexUnavailable
    from ragpress.base.models import ModelError
    from ragpress.service import Service

    service = Service(get_settings())
    try:
        service.start()
    except (IndexUnavailable, ModelError) as exc:
        fail(str(exc))
    return service


def _fail_if_written_for_the_user(exc: Exception) -> None:
    """The Service's refusals (an unknown collection or pipeline, a query above a ceiling) are their messages,
    as the server would answer them."""
    from ragpress.api.errors import known_error_code

    if known_error_code(exc) is not None:
        fail(str(exc))
