"""Ingestion jobs: list the tenant's, look at one, cancel one; a job is named by its id or a unique prefix of it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool

from ragpress.api import auth, errors
from ragpress.api.dependencies import service
from ragpress.api.openapi import error_responses
from ragpress.api.schemas import JobList, JobOut
from ragpress.service import MIN_JOB_PREFIX, AmbiguousJobId

JobId = Path(..., max_length=36, description=f"The job id, or its first {MIN_JOB_PREFIX} or more characters.")


def job_routes() -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

    @router.get("/{job_id}", response_model=JobOut, responses=error_responses(409))
    async def get_job(request: Request, job_id: str = JobId, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return await _by_id(service(request).job, tenant, job_id)

    @router.get("", response_model=JobList)
    async def list_jobs(request: Request, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return {"jobs": await run_in_threadpool(service(request).jobs, tenant)}

    @router.post("/{job_id}/cancel", response_model=JobOut, responses=error_responses(409))
    async def cancel_job(request: Request, job_id: str = JobId, tenant: str = Depends(auth.tenant)) -> dict[str, Any]:
        return await _by_id(service(request).cancel, tenant, job_id)

    return router


async def _by_id(call: Callable[[str, str], dict[str, Any]], tenant: str, job_id: str) -> dict[str, Any]:
    try:
        return await run_in_threadpool(call, tenant, job_id)
    except AmbiguousJobId as exc:
        raise errors.ApiError(409, "ambiguous_job_id", str(exc)) from None
