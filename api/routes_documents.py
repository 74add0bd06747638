"""A collection's documents: add them (JSON or uploaded files; an ingestion job), list them, look at one with its
chunks, delete some."""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from ragpress.api import auth, errors, metrics
from ragpress.api.dependencies import Name, service
from ragpress.api.openapi import error_responses, request_body
from ragpress.api.schemas import (
    DOC_ID_CHARS,
    DocumentDeleted,
    DocumentDetail,
    DocumentPage,
    DocumentsDeleted,
    DocumentsDeleteIn,
    DocumentsIn,
    FilesAccepted,
    FilesIn,
    JobAccepted,
    doc_id_problem,
)
from ragpress.base.settings import Settings
from ragpress.service import MAX_PAGE, IncomingDocument, IncomingFile

DocIdPath = Path(..., min_length=1, max_length=DOC_ID_CHARS, description="The document id; it may contain '/'.")
# Only kv_precompute is a plain field; anything beyond a handful is not an upload this route reads.
_MAX_FORM_FIELDS = 8


def document_routes(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/v1/collections/{collection}", tags=["documents"])

    @router.post("/documents", status_code=202, response_model=JobAccepted, openapi_extra=request_body(DocumentsIn))
    async def add_documents(request: Request, collection: str = Name,
                            tenant: str = Depends(auth.tenant)) -> dict[str, str]:
        body = await errors.parse_body(request, DocumentsIn)
        _check_count(len(body.documents), settings)
        for index, document in enumerate(body.documents):
            _check_size(document.id or f"documents[{index}]", len(document.text.encode("utf-8")), settings)
        incoming = [IncomingDocument(text=d.text, id=d.id, meta=d.meta) for d in body.documents]
        job_id = await run_in_threadpool(service(request).submit, tenant, collection, incoming, body.kv_precompute)
        metrics.DOCUMENTS_SUBMITTED.inc(len(incoming))
        return {"job_id": job_id}

    @router.post("/files", status_code=202, response_model=FilesAccepted, responses=error_responses(415),
                 openapi_extra=request_body(FilesIn, "multipart/form-data"))
    async def upload_files(request: Request, collection: str = Name,
                           tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        """Upload files (multipart/form-data, parts named `files`) to index as documents, one per file, named by
        its file name. A file that cannot be read is a failed document of the job, with the reason."""
        files, kv_precompute = await _read_upload(request, settings)
        # converting PDFs and DOCX files is CPU work: off the event loop
        accepted = await run_in_threadpool(service(request).submit_files, tenant, collection, files, kv_precompute)
        metrics.DOCUMENTS_SUBMITTED.inc(len(files))
        return accepted

    @router.get("/documents", response_model=DocumentPage, response_model_exclude_unset=True)
    async def list_documents(request: Request, collection: str = Name, tenant: str = Depends(auth.tenant),
                             limit: int = Query(100, ge=1, le=MAX_PAGE),
                             after: str | None = Query(None, max_length=DOC_ID_CHARS,
                                                       description="The last id of the previous page.")
                             ) -> dict[str, Any]:
        """The collection's documents by id, a page at a time, with their status and unit counts."""
        return await run_in_threadpool(service(request).documents, tenant, collection, limit, after)

    @router.post("/documents/delete", response_model=DocumentsDeleted,
                 openapi_extra=request_body(DocumentsDeleteIn))
    async def delete_documents(request: Request, collection: str = Name,
                               tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        """Delete documents by `ids`, or those with an indexed unit `filters` match."""
        body = await errors.parse_body(request, DocumentsDeleteIn)
        return await run_in_threadpool(service(request).delete_documents, tenant, collection, body.ids, body.filters)

    @router.get("/documents/{doc_id:path}", response_model=DocumentDetail, response_model_exclude_unset=True)
    async def get_document(request: Request, doc_id: str = DocIdPath, collection: str = Name,
                           tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        """One document with every indexed unit (chunk) of it and its level."""
        return await run_in_threadpool(service(request).document, tenant, collection, doc_id)

    @router.delete("/documents/{doc_id:path}", response_model=DocumentDeleted)
    async def delete_document(request: Request, doc_id: str = DocIdPath, collection: str = Name,
                              tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        removed = await run_in_threadpool(service(request).delete_document, tenant, collection, doc_id)
        return {"deleted": doc_id, "units_removed": removed}

    return router


def _check_count(count: int, settings: Settings) -> None:
    if count > settings.max_documents_per_request:
        raise _too_many(settings)


def _too_many(settings: Settings) -> errors.ApiError:
    return errors.ApiError(413, "too_many_documents", f"At most {settings.max_documents_per_request} "
                           "documents per request; split the batch.")


def _check_size(name: str, size: int, settings: Settings) -> None:
    if size > settings.max_document_bytes:
        raise errors.ApiError(413, "document_too_large", f"Document '{name}' is {size:,} bytes; the limit is "
                              f"{settings.max_document_bytes:,}. Split it into smaller documents. Nothing "
                              "from this request was stored.")


async def _read_upload(request: Request, settings: Settings) -> tuple[list[IncomingFile], str | None]:
    """The uploaded files and the kv_precompute field; a body that is no upload, or breaks a limit, is refused
    whole (nothing stored)."""
    if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() != "multipart/form-data":
        raise errors.ApiError(415, "unsupported_media_type", "Send the files as multipart/form-data, one part "
                              "named 'files' per file (e.g. curl -F files=@report.pdf).")
    try:
        async with request.form(max_files=settings.max_documents_per_request,
                                max_fields=_MAX_FORM_FIELDS) as form:
            body = _validated(form)
            for upload in body.files:
                _check_size(upload.filename or "", upload.size or 0, settings)  # before reading it into memory
            files = [IncomingFile(name=u.filename or "", data=await u.read(), content_type=u.content_type)
                     for u in body.files]
    except StarletteHTTPException as exc:  # the multipart parser's refusal
        if str(exc.detail).startswith("Too many files"):
            raise _too_many(settings) from None
        raise errors.ApiError(400, "invalid_multipart", f"The multipart body cannot be read: {exc.detail}") from None
    return files, body.kv_precompute


def _validated(form: FormData) -> FilesIn:
    parts = form.getlist("files")
    if not parts:
        raise errors.ApiError(422, "invalid_request", "files: no file sent; send one or more file parts named "
                              "'files' (e.g. curl -F files=@report.pdf).")
    for index, part in enumerate(parts):
        if not isinstance(part, UploadFile):
            raise errors.ApiError(422, "invalid_request", f"files[{index}] is a plain field, not a file: send each "
                                  "file as a file part with its file name (curl -F files=@path).")
        if not part.filename or len(part.filename) > DOC_ID_CHARS:
            raise errors.ApiError(422, "invalid_request", f"files[{index}]: a file name (the document id) must have "
                                  f"1 to {DOC_ID_CHARS} characters.")
        problem = doc_id_problem(part.filename, f"files[{index}]: the file name")
        if problem is not None:
            raise errors.ApiError(422, "invalid_request", problem + ".")
    repeated = sorted(name for name, count in Counter(part.filename for part in parts).items() if count > 1)
    if repeated:
        raise errors.ApiError(422, "invalid_request", "file names are document ids, so they must be unique within "
                              f"a request; repeated: {repeated[:5]}. Send them with their paths to tell them apart.")
    fields = {key: form.get(key) for key in form if key != "files"}
    try:
        return FilesIn.model_validate({"files": parts, **fields})
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
