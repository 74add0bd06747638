"""API keys: each belongs to one tenant (or is an admin key); only a hash of the key is stored.

Keys are 256-bit random tokens, so a plain SHA-256 is a sufficient hash (there is nothing to brute-force);
the plain key is shown once, at creation.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ragpress.base.database import metadata
from ragpress.base.schema import DEFAULT_TENANT

logger = logging.getLogger(__name__)
KEY_PREFIX = "rp_"
TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(16), primary_key=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("tenant", sa.String(128), nullable=True),  # None for admin keys
    sa.Column("admin", sa.Boolean, nullable=False, default=False),
    sa.Column("label", sa.String(128), nullable=False, default=""),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant: str | None
    admin: bool


def _hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeyStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        metadata.create_all(engine, tables=[api_keys, tenants])

    def create_tenant(self, name: str) -> None:
        if not TENANT_PATTERN.match(name):
            raise ValueError("tenant names are lower-case letters, digits, '_' and '-', at most 64")
        with self.engine.begin() as conn:
            if conn.execute(sa.select(tenants.c.name).where(tenants.c.name == name)).first() is None:
                conn.execute(tenants.insert().values(name=name, created_at=datetime.now(UTC)))

    def list_tenants(self) -> list[str]:
        with self.engine.connect() as conn:
            return [r.name for r in conn.execute(sa.select(tenants.c.name).order_by(tenants.c.name))]

    def create_key(self, tenant: str | None, admin: bool = False, label: str = "") -> tuple[str, str]:
        """Create a key; returns (key id, the plain key, shown only now)."""
        if admin == (tenant is not None):
            raise ValueError("a key is either an admin key or belongs to exactly one tenant")
        if tenant is not None:
            self.create_tenant(tenant)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        key_id = secrets.token_hex(6)
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(id=key_id, key_hash=_hash(key), tenant=tenant, admin=admin,
                                                  label=label, created_at=datetime.now(UTC)))
        return key_id, key

    def revoke(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            revoked = bool(conn.execute(api_keys.update().where(api_keys.c.id == key_id,
                                                                api_keys.c.revoked_at.is_(None))
                                        .values(revoked_at=datetime.now(UTC))).rowcount)
        if revoked and not self.any_keys():
            logger.warning("The last active API key was revoked: with auth=auto, a server listening on localhost "
                           "now serves requests without a key again (as tenant '%s').", DEFAULT_TENANT)
        return revoked

    def authenticate(self, key: str) -> Principal | None:
        if not key.startswith(KEY_PREFIX):
            return None
        digest = _hash(key)
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.key_hash == digest,
                                                         api_keys.c.revoked_at.is_(None))).first()
        if row is None or not hmac.compare_digest(row.key_hash, digest):
            return None
        return Principal(key_id=row.id, tenant=row.tenant, admin=row.admin)

    def any_keys(self) -> bool:
        """Whether an active key exists: revoking the last one gives back keyless access where settings allow it
        (auth=auto on localhost), serving the default tenant only."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(api_keys.c.id).where(api_keys.c.revoked_at.is_(None)).limit(1)).first() \
                is not None

    def list_keys(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at)).all()
        return [{"id": r.id, "tenant": r.tenant, "admin": r.admin, "label": r.label,
                 "created_at": r.created_at.isoformat(), "revoked": r.revoked_at is not None} for r in rows]
