"""Job and document state: SQLite in the embedded default, PostgreSQL in the distributed mode.

One SQLAlchemy Core code path serves both, so the distributed mode is a different ``database_url``.
A job's counters are derived from its documents' rows when read, so concurrent workers never race on a
counter. Document text waits in ``job_documents`` until it is indexed, so a dead worker loses nothing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from ragpress.base.database import make_engine, metadata

jobs = sa.Table(
    "jobs", metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("tenant", sa.String(128), nullable=False, index=True),
    sa.Column("collection", sa.String(128), nullable=False),
    sa.Column("cancelled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

job_documents = sa.Table(
    "job_documents", metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),
    sa.Column("doc_id", sa.String(512), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("text", sa.Text),
    sa.Column("meta", sa.Text, nullable=False, default="{}"),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

documents = sa.Table(
    "documents", metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("collection", sa.String(128), primary_key=True),
    sa.Column("doc_id", sa.String(512), primary_key=True),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("units", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

collections = sa.Table(
    "collections", metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# Per-collection choices, apart from ``collections`` so databases made before an option existed gain it by
# create_all (no migration); a missing row or NULL means the server default.
collection_options = sa.Table(
    "collection_options", metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("name", sa.String(128), primary_key=True),
    sa.Column("kv_precompute", sa.String(16)),
)

# The KV follow-up of indexed documents (eager pre-compute, or just freeing a replaced version's states).
# Its failure is a warning on the job, never a failed document: the document is searchable either way.
job_kv = sa.Table(
    "job_kv", metadata,
    sa.Column("job_id", sa.String(36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("doc_id", sa.String(512), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),  # queued | done | lazy | failed
    sa.Column("entries", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
KV_STATUSES = ("queued", "done", "lazy", "failed")

QUEUED, RUNNING, SUCCEEDED, SKIPPED, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "skipped", "failed", "cancelled")
FINISHED = (SUCCEEDED, SKIPPED, FAILED, CANCELLED)


@dataclass(frozen=True)
class PendingDocument:
    seq: int
    doc_id: str
    content_hash: str
    text: str
    meta: dict[str, Any]


@dataclass(frozen=True)
class UnfinishedDocument:
    """A document still queued or running, as a process that died may have left it."""

    job_id: str
    seq: int
    tenant: str
    collection: str
    doc_id: str
    touched: bool  # a worker claimed it at least once, so some of its new units may be in the index
    cancelled: bool  # its job was cancelled: nothing will claim it again


def _now() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """Jobs, their documents, and the registry of indexed documents per tenant and collection."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        metadata.create_all(self.engine)

    # --- jobs -------------------------------------------------------------------------------------
    def create_job(self, tenant: str, collection: str, docs: list[tuple[str, str, str, dict[str, Any]]]) -> str:
        """Record a job for ``(doc_id, content_hash, text, meta)`` items; unchanged documents are skipped."""
        job_id = str(uuid.uuid4())
        now = _now()
        with self.engine.begin() as conn:
            self._ensure_collection(conn, tenant, collection, now)
            current = self._current_hashes(conn, tenant, collection, [d[0] for d in docs])
            conn.execute(jobs.insert().values(id=job_id, tenant=tenant, collection=collection,
                                              cancelled=False, created_at=now))
            rows = []
            for seq, (doc_id, digest, text, meta) in enumerate(docs):
                unchanged = current.get(doc_id) == digest
                rows.append({
                    "job_id": job_id, "seq": seq, "doc_id": doc_id, "content_hash": digest,
                    "status": SKIPPED if unchanged else QUEUED, "error": None,
                    "text": None if unchanged else text, "meta": json.dumps(meta), "attempts": 0,
                    "updated_at": now,
                })
            if rows:
                conn.execute(job_documents.insert(), rows)
        return job_id

    def pending_seqs(self, job_id: str) -> list[int]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(job_documents.c.seq).where(
                job_documents.c.job_id == job_id, job_documents.c.status == QUEUED).order_by(job_documents.c.seq))
            return [r.seq for r in rows]

    def claim(self, job_id: str, seqs: list[int]) -> list[PendingDocument]:
        """Documents of ``seqs`` still to index (queued, or running when a worker died), marked running."""
        with self.engine.begin() as conn:
            job = conn.execute(sa.select(jobs.c.cancelled).where(jobs.c.id == job_id)).first()
            if job is None or job.cancelled:
                return []
            where = sa.and_(job_documents.c.job_id == job_id, job_documents.c.seq.in_(seqs),
                            job_documents.c.status.in_((QUEUED, RUNNING)))
            rows = conn.execute(sa.select(job_documents).where(where).order_by(job_documents.c.seq)).all()
            conn.execute(job_documents.update().where(where).values(
                status=RUNNING, attempts=job_documents.c.attempts + 1, updated_at=_now()))
        return [PendingDocument(r.seq, r.doc_id, r.content_hash, r.text or "", json.loads(r.meta)) for r in rows]

    def finish_document(self, job_id: str, seq: int, tenant: str, collection: str, units: int) -> None:
        """Mark a document indexed and record it in the registry, in one transaction."""
        now = _now()
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(job_documents.c.doc_id, job_documents.c.content_hash).where(
                job_documents.c.job_id == job_id, job_documents.c.seq == seq)).one()
            conn.execute(job_documents.update().where(
                job_documents.c.job_id == job_id, job_documents.c.seq == seq).values(
                status=SUCCEEDED, text=None, error=None, updated_at=now))
            self._upsert_document(conn, tenant, collection, row.doc_id, row.content_hash, units, now)

    def fail_document(self, job_id: str, seq: int, error: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(job_documents.update().where(
                job_documents.c.job_id == job_id, job_documents.c.seq == seq).values(
                status=FAILED, error=error[:2000], text=None, updated_at=_now()))

    def close_unfinished(self, job_id: str, seqs: list[int], status: str, error: str | None = None) -> int:
        """Give the documents of ``seqs`` still queued or running a final status (failed with ``error``, or
        cancelled); documents already finished keep theirs. Returns how many were closed."""
        with self.engine.begin() as conn:
            return int(conn.execute(job_documents.update().where(
                job_documents.c.job_id == job_id, job_documents.c.seq.in_(seqs),
                job_documents.c.status.in_((QUEUED, RUNNING))).values(
                status=status, error=error[:2000] if error else None, text=None, updated_at=_now())).rowcount)

    def unfinished_documents(self) -> list[UnfinishedDocument]:
        """Every document still queued or running, oldest job first: what a process that died left behind."""
        query = (sa.select(jobs.c.id, jobs.c.tenant, jobs.c.collection, jobs.c.cancelled, job_documents.c.seq,
                           job_documents.c.doc_id, job_documents.c.status, job_documents.c.attempts)
                 .select_from(jobs.join(job_documents, job_documents.c.job_id == jobs.c.id))
                 .where(job_documents.c.status.in_((QUEUED, RUNNING)))
                 .order_by(jobs.c.created_at, jobs.c.id, job_documents.c.seq))
        with self.engine.connect() as conn:
            return [UnfinishedDocument(r.id, r.seq, r.tenant, r.collection, r.doc_id,
                                       touched=r.status == RUNNING or r.attempts > 0, cancelled=r.cancelled)
                    for r in conn.execute(query)]

    def doc_ids(self, job_id: str, seqs: list[int]) -> dict[int, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(job_documents.c.seq, job_documents.c.doc_id).where(
                job_documents.c.job_id == job_id, job_documents.c.seq.in_(seqs)))
            return {r.seq: r.doc_id for r in rows}

    def requeue(self, job_id: str, seqs: list[int]) -> None:
        """Put documents whose task failed transiently back in the queue for the retry."""
        with self.engine.begin() as conn:
            conn.execute(job_documents.update().where(
                job_documents.c.job_id == job_id, job_documents.c.seq.in_(seqs),
                job_documents.c.status == RUNNING).values(status=QUEUED, updated_at=_now()))

    def cancel(self, job_id: str, tenant: str) -> bool:
        with self.engine.begin() as conn:
            found = conn.execute(jobs.update().where(jobs.c.id == job_id, jobs.c.tenant == tenant)
                                 .values(cancelled=True)).rowcount
            if found:
                conn.execute(job_documents.update().where(
                    job_documents.c.job_id == job_id, job_documents.c.status == QUEUED).values(
                    status=CANCELLED, text=None, updated_at=_now()))
        return bool(found)

    def job(self, job_id: str, tenant: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            job = conn.execute(sa.select(jobs).where(jobs.c.id == job_id, jobs.c.tenant == tenant)).first()
            if job is None:
                return None
            rows = conn.execute(sa.select(job_documents.c.doc_id, job_documents.c.status, job_documents.c.error)
                                .where(job_documents.c.job_id == job_id).order_by(job_documents.c.seq)).all()
            kv_rows = conn.execute(sa.select(job_kv).where(job_kv.c.job_id == job_id).order_by(job_kv.c.doc_id)).all()
        summary = summarize(job, rows)
        kv = {status: 0 for status in KV_STATUSES}
        for row in kv_rows:
            kv[row.status] = kv.get(row.status, 0) + 1
        summary["kv"] = {**kv, "entries": sum(r.entries for r in kv_rows)}
        summary["warnings"] = [{"doc_id": r.doc_id, "warning": r.error} for r in kv_rows if r.status == "failed"]
        return summary

    # --- KV follow-up -----------------------------------------------------------------------------
    def kv_queued(self, job_id: str, doc_ids: list[str]) -> None:
        now = _now()
        with self.engine.begin() as conn:
            for doc_id in doc_ids:  # a redelivered batch queues its follow-up again: replace, never duplicate
                conn.execute(job_kv.delete().where(job_kv.c.job_id == job_id, job_kv.c.doc_id == doc_id))
            if doc_ids:
                conn.execute(job_kv.insert(), [{"job_id": job_id, "doc_id": d, "status": "queued", "entries": 0,
                                                "error": None, "updated_at": now} for d in doc_ids])

    def kv_finished(self, job_id: str, doc_id: str, status: str, entries: int = 0, error: str | None = None) -> None:
        if status not in KV_STATUSES:
            raise ValueError(f"unknown KV status {status!r}")
        with self.engine.begin() as conn:
            conn.execute(job_kv.update().where(job_kv.c.job_id == job_id, job_kv.c.doc_id == doc_id).values(
                status=status, entries=entries, error=error[:2000] if error else None, updated_at=_now()))

    def list_jobs(self, tenant: str, limit: int = 50) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            ids = [r.id for r in conn.execute(sa.select(jobs.c.id).where(jobs.c.tenant == tenant)
                                              .order_by(jobs.c.created_at.desc()).limit(limit))]
        return [j for j in (self.job(i, tenant) for i in ids) if j is not None]

    def job_scope(self, job_id: str) -> tuple[str, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(jobs.c.tenant, jobs.c.collection).where(jobs.c.id == job_id)).first()
        return (row.tenant, row.collection) if row else None

    # --- documents and collections ----------------------------------------------------------------
    def forget_document(self, tenant: str, collection: str, doc_id: str) -> bool:
        with self.engine.begin() as conn:
            return bool(conn.execute(documents.delete().where(
                documents.c.tenant == tenant, documents.c.collection == collection,
                documents.c.doc_id == doc_id)).rowcount)

    def list_collections(self, tenant: str) -> list[dict[str, Any]]:
        counts = (sa.select(documents.c.collection, sa.func.count().label("documents"),
                            sa.func.coalesce(sa.func.sum(documents.c.units), 0).label("units"))
                  .where(documents.c.tenant == tenant).group_by(documents.c.collection).subquery())
        query = (sa.select(collections.c.name, collections.c.created_at, counts.c.documents, counts.c.units)
                 .select_from(collections.outerjoin(counts, counts.c.collection == collections.c.name))
                 .where(collections.c.tenant == tenant).order_by(collections.c.name))
        with self.engine.connect() as conn:
            return [{"name": r.name, "documents": int(r.documents or 0), "units": int(r.units or 0),
                     "created_at": r.created_at.isoformat()} for r in conn.execute(query)]

    def collection(self, tenant: str, name: str) -> dict[str, Any] | None:
        return next((c for c in self.list_collections(tenant) if c["name"] == name), None)

    def set_collection_options(self, tenant: str, name: str, kv_precompute: str | None) -> None:
        """Create the collection if needed and store its options (None keeps the server default)."""
        with self.engine.begin() as conn:
            self._ensure_collection(conn, tenant, name, _now())
            key = sa.and_(collection_options.c.tenant == tenant, collection_options.c.name == name)
            if not conn.execute(collection_options.update().where(key).values(kv_precompute=kv_precompute)).rowcount:
                conn.execute(collection_options.insert().values(tenant=tenant, name=name, kv_precompute=kv_precompute))

    def collection_options(self, tenant: str, name: str) -> dict[str, Any]:
        """The options a collection chose; an option it never set is absent."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(collection_options).where(
                collection_options.c.tenant == tenant, collection_options.c.name == name)).first()
        return {"kv_precompute": row.kv_precompute} if row is not None and row.kv_precompute else {}

    def document_hash(self, tenant: str, collection: str, doc_id: str) -> str | None:
        with self.engine.connect() as conn:
            return self._current_hashes(conn, tenant, collection, [doc_id]).get(doc_id)

    def _ensure_collection(self, conn: Any, tenant: str, name: str, now: datetime) -> None:
        exists = conn.execute(sa.select(collections.c.name).where(
            collections.c.tenant == tenant, collections.c.name == name)).first()
        if not exists:
            conn.execute(collections.insert().values(tenant=tenant, name=name, created_at=now))

    @staticmethod
    def _current_hashes(conn: Any, tenant: str, collection: str, doc_ids: list[str]) -> dict[str, str]:
        if not doc_ids:
            return {}
        rows = conn.execute(sa.select(documents.c.doc_id, documents.c.content_hash).where(
            documents.c.tenant == tenant, documents.c.collection == collection, documents.c.doc_id.in_(doc_ids)))
        return {r.doc_id: r.content_hash for r in rows}

    @staticmethod
    def _upsert_document(conn: Any, tenant: str, collection: str, doc_id: str, digest: str, units: int,
                         now: datetime) -> None:
        key = sa.and_(documents.c.tenant == tenant, documents.c.collection == collection,
                      documents.c.doc_id == doc_id)
        if conn.execute(documents.update().where(key).values(content_hash=digest, units=units,
                                                             updated_at=now)).rowcount == 0:
            conn.execute(documents.insert().values(tenant=tenant, collection=collection, doc_id=doc_id,
                                                   content_hash=digest, units=units, updated_at=now))


def summarize(job: Any, rows: list[Any]) -> dict[str, Any]:
    total = len(rows)
    by_status: dict[str, int] = {}
    for row in rows:
        by_status[row.status] = by_status.get(row.status, 0) + 1
    done = by_status.get(SUCCEEDED, 0) + by_status.get(SKIPPED, 0)
    failed = by_status.get(FAILED, 0)
    finished = done + failed + by_status.get(CANCELLED, 0)
    if job.cancelled:
        status = "cancelled"
    elif finished < total:
        status = "running" if finished or by_status.get(RUNNING) else "queued"
    elif failed == 0:
        status = "succeeded"
    else:
        status = "failed" if done == 0 else "partial"
    return {
        "job_id": job.id, "collection": job.collection, "status": status, "total": total, "done": done,
        "failed": failed, "skipped": by_status.get(SKIPPED, 0), "created_at": job.created_at.isoformat(),
        "errors": [{"doc_id": r.doc_id, "error": r.error} for r in rows if r.status == FAILED],
    }
