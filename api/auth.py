"""Who is calling: an API key maps to one tenant, enforced on the server for every route.

With ``auth=auto`` and no key created yet, a server listening on localhost only serves everyone as the
default tenant (and says so at start); once a key exists, or when it listens beyond localhost, every
request needs one. Admin keys manage tenants and keys and may act for a tenant named in ``X-Ragpress-Tenant``.
"""

from __future__ import annotations

import ipaddress
import logging

from fastapi import Request

from ragpress.api.errors import ApiError
from ragpress.base import schema
from ragpress.base.api_keys import Principal
from ragpress.base.settings import Settings

logger = logging.getLogger(__name__)
ANONYMOUS = Principal(key_id="anonymous", tenant=schema.DEFAULT_TENANT, admin=False)
_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def keys_required(settings: Settings, any_keys: bool) -> bool:
    if settings.auth == "off":
        return False
    if settings.auth == "required":
        return True
    return any_keys or not is_loopback(settings.host)


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None


def principal(request: Request) -> Principal:
    """The caller; raises 401 when a key is needed and missing or wrong."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    service = request.app.state.service
    settings: Settings = request.app.state.settings
    key = presented_key(request)
    if key is None:
        if keys_required(settings, service.any_keys()):
            raise ApiError(401, "unauthorized", "An API key is required: send `Authorization: Bearer <key>` (the "
                           "CLI: --api-key KEY or RAGPRESS_API_KEY). Create one with `ragpress keys create "
                           "--tenant NAME`.", _UNAUTHORIZED)
        found = ANONYMOUS
    else:
        found = service.authenticate(key)
        if found is None:
            raise ApiError(401, "unauthorized", "The API key is unknown or revoked.", _UNAUTHORIZED)
    request.state.principal = found
    return found


def tenant(request: Request) -> str:
    """The tenant every read and write of this request is confined to."""
    caller = principal(request)
    if caller.admin:
        acting_for = request.headers.get("x-ragpress-tenant")
        if not acting_for:
            raise ApiError(400, "tenant_required", "Admin keys act for a tenant named in the X-Ragpress-Tenant header.")
        return acting_for
    assert caller.tenant is not None
    return caller.tenant


def admin(request: Request) -> Principal:
    caller = principal(request)
    if not caller.admin:
        raise ApiError(403, "forbidden", "This route needs an admin key (`ragpress keys create --admin`).")
    return caller
