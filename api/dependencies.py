"""What every route shares: the service behind the app, the per-caller rate limit and the name a path may hold."""

from __future__ import annotations

from fastapi import Path, Request

from ragpress.api import auth
from ragpress.api.schemas import NAME_PATTERN
from ragpress.service import Service

Name = Path(..., pattern=NAME_PATTERN, description="Letters, digits, '_', '.', '-'; at most 64.")


def service(request: Request) -> Service:
    return request.app.state.service


def rate_limited(request: Request) -> None:
    caller = auth.principal(request)
    key = caller.key_id if caller is not auth.ANONYMOUS else f"ip:{request.client.host if request.client else '-'}"
    request.app.state.limiter.check(key)
