"""Job and document state: SQLite in the embedded default, PostgreSQL in the distributed mode.

One SQLAlchemy Core code path serves both, so the distributed mode is a different ``database_url``.
A job's counters are derived from its documents' rows when read, so concurrent workers never race on a
counter. Document text waits in ``job_documents`` until it is indexed, so a dead worker loses nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
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
    sa.Column("status", sa.String(16), nullable=False),  # queued | done | lazy | budget | failed
    sa.Column("entries", sa.Integer, nullable=False, default=0),
    sa.Column("error", sa.Text),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
KV_STATUSES = ("queued", "done", "lazy", "budget", "failed")  # budget: left lazy, the store being full

# Why a document's newest version could not be indexed, kept until it is indexed or deleted, so a collection's
# listing shows the failure (job rows are history: deleting a document must not rewrite its jobs).
document_failures = sa.Table(
    "document_failures", metadata,
    sa.Column("tenant", sa.String(128), primary_key=True),
    sa.Column("collection", sa.String(128), primary_key=True),
    sa.Column("doc_id", sa.String(512), primary_key=True),
    sa.Column("error", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

QUEUED, RUNNING, SUCCEEDED, SKIPPED, FAILED, CANCELLED = (
    "queued", "running", "succeeded", "skipped", "failed", "cancelled")
FINISHED = (SUCCEEDED, SKIPPED, FAILED, CANCELLED)
PENDING = (QUEUED, RUNNING)


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
    def create_job(self, tenant: str, collection: str, docs: list[tuple[str, str, str, dict[str, Any]]],
                   failed: Sequence[tuple[str, str, dict[str, Any]]] = ()) -> str:
        """Record a job for ``(doc_id, content_hash, text, meta)`` items; unchanged documents are skipped.
        ``failed`` holds ``(doc_id, reason, meta)`` of documents refused before indexing (a file that cannot be
        read): they are the job's failed documents from the start."""
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
            rows += [{"job_id": job_id, "seq": seq, "doc_id": doc_id, "content_hash": "", "status": FAILED,
                      "error": error[:2000], "text": None, "meta": json.dumps(meta), "attempts": 0, "updated_at": now}
                     for seq, (doc_id, error, meta) in enumerate(failed, start=len(rows))]
            if rows:
                conn.execute(job_documents.insert(), rows)
            # a document sent again unchanged is its indexed version: an earlier failure no longer describes it
            self._clear_failures(conn, tenant, collection, [r["doc_id"] for r in rows if r["status"] == SKIPPED])
            self._record_failures(conn, tenant, collection, {r["doc_id"]: r["error"] for r in rows
                                                             if r["status"] == FAILED}, now)
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
            self._clear_failures(conn, tenant, collection, [row.doc_id])

    def fail_document(self, job_id: str, seq: int, error: str) -> None:
        self.close_unfinished(job_id, [seq], FAILED, error, only_pending=False)

    def close_unfinished(self, job_id: str, seqs: list[int], status: str, error: str | None = None,
                         only_pending: bool = True) -> int:
        """Give the documents of ``seqs`` still queued or running (any, unless ``only_pending``) a final status
        (failed with ``error``, or cancelled); documents already finished keep theirs. Returns how many were
        closed."""
        now = _now()
        where = [job_documents.c.job_id == job_id, job_documents.c.seq.in_(seqs)]
        if only_pending:
            where.append(job_documents.c.status.in_(PENDING))
        with self.engine.begin() as conn:
            scope = conn.execute(sa.select(jobs.c.tenant, jobs.c.collection).where(jobs.c.id == job_id)).first()
            doc_ids = [r.doc_id for r in conn.execute(sa.select(job_documents.c.doc_id).where(*where))]
            conn.execute(job_documents.update().where(*where).values(
                status=status, error=error[:2000] if error else None, text=None, updated_at=now))
            if status == FAILED and scope is not None:
                self._record_failures(conn, scope.tenant, scope.collection,
                                      dict.fromkeys(doc_ids, (error or "failed")[:2000]), now)
        return len(doc_ids)

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

    def job_ids_with_prefix(self, tenant: str, prefix: str, limit: int = 2) -> list[str]:
        """Ids of the tenant's jobs that start with ``prefix`` (at most ``limit``, in order)."""
        with self.engine.connect() as conn:
            return [r.id for r in conn.execute(sa.select(jobs.c.id).where(
                jobs.c.tenant == tenant, jobs.c.id.startswith(prefix, autoescape=True)).order_by(jobs.c.id)
                .limit(limit))]

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

    def job_started(self, job_id: str) -> float | None:
        """When the job was created (Unix time), or None for an unknown job."""
        with self.engine.connect() as conn:
            created = conn.execute(sa.select(jobs.c.created_at).where(jobs.c.id == job_id)).scalar()
        if created is None:
            return None
        return _aware(created).timestamp()

    def kv_budget_reached(self, job_id: str) -> bool:
        """Whether the job's pre-compute already stopped at the KV store's budget (a document marked ``budget``)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(job_kv.c.doc_id).where(
                job_kv.c.job_id == job_id, job_kv.c.status == "budget").limit(1)).first() is not None

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

    def remove_documents(self, tenant: str, collection: str, doc_ids: list[str]) -> set[str]:
        """Forget documents whatever their state: their registry rows and failures go, and their copies still
        queued in any job are cancelled (so no job indexes them again). Returns the ids that were known."""
        queued = sa.and_(job_documents.c.job_id.in_(self._collection_jobs(tenant, collection)),
                         job_documents.c.doc_id.in_(doc_ids), job_documents.c.status == QUEUED)
        with self.engine.begin() as conn:
            known = {r.doc_id for r in conn.execute(sa.select(job_documents.c.doc_id).where(queued))}
            conn.execute(job_documents.update().where(queued).values(status=CANCELLED, text=None, updated_at=_now()))
            for table in (documents, document_failures):
                key = sa.and_(table.c.tenant == tenant, table.c.collection == collection, table.c.doc_id.in_(doc_ids))
                known |= {r.doc_id for r in conn.execute(sa.select(table.c.doc_id).where(key))}
                conn.execute(table.delete().where(key))
        return known

    def cancel_collection_jobs(self, tenant: str, collection: str) -> None:
        """Cancel every job of the collection: nothing queued will be indexed; running documents finish."""
        with self.engine.begin() as conn:
            conn.execute(jobs.update().where(jobs.c.tenant == tenant, jobs.c.collection == collection)
                         .values(cancelled=True))
            conn.execute(job_documents.update().where(
                job_documents.c.job_id.in_(self._collection_jobs(tenant, collection)),
                job_documents.c.status == QUEUED).values(status=CANCELLED, text=None, updated_at=_now()))

    def running_documents(self, tenant: str, collection: str) -> int:
        """How many of the collection's documents a worker holds at this moment."""
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(job_documents).where(
                job_documents.c.job_id.in_(self._collection_jobs(tenant, collection)),
                job_documents.c.status == RUNNING)).scalar_one())

    def drop_collection(self, tenant: str, collection: str) -> list[str]:
        """Delete the collection, its options, its registry rows and failures (its jobs stay, as history);
        returns the ids of the documents it had indexed."""
        with self.engine.begin() as conn:
            doc_ids = [r.doc_id for r in conn.execute(sa.select(documents.c.doc_id).where(
                documents.c.tenant == tenant, documents.c.collection == collection).order_by(documents.c.doc_id))]
            for table in (documents, document_failures):
                conn.execute(table.delete().where(table.c.tenant == tenant, table.c.collection == collection))
            for table in (collections, collection_options):
                conn.execute(table.delete().where(table.c.tenant == tenant, table.c.name == collection))
        return doc_ids

    def document_page(self, tenant: str, collection: str, limit: int,
                      after: str | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` of the collection's documents after ``after``, by id, each with its state (see
        ``document_state``); and whether more follow. A document is listed while it is indexed, queued or
        running, or failed and neither indexed nor deleted since."""
        with self.engine.connect() as conn:
            ids = self._page_ids(conn, tenant, collection, limit + 1, after)
            states = self._states(conn, tenant, collection, ids[:limit])
        return [states[doc_id] for doc_id in ids[:limit] if doc_id in states], len(ids) > limit

    def document_state(self, tenant: str, collection: str, doc_id: str) -> dict[str, Any] | None:
        """One document's ``id``, ``status`` (queued or running while a job holds it, else failed while its
        newest version could not be indexed, else indexed), ``units`` and ``content_hash`` of its indexed
        version (0 and the sent version's hash when none is indexed), ``updated_at``, ``meta`` as last sent,
        and the ``error`` of a failed one; None for a document the collection does not have."""
        with self.engine.connect() as conn:
            return self._states(conn, tenant, collection, [doc_id]).get(doc_id)

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

    @staticmethod
    def _collection_jobs(tenant: str, collection: str) -> Any:
        return sa.select(jobs.c.id).where(jobs.c.tenant == tenant, jobs.c.collection == collection)

    @staticmethod
    def _record_failures(conn: Any, tenant: str, collection: str, errors: dict[str, str], now: datetime) -> None:
        JobStore._clear_failures(conn, tenant, collection, list(errors))
        if errors:
            conn.execute(document_failures.insert(), [
                {"tenant": tenant, "collection": collection, "doc_id": doc_id, "error": error, "updated_at": now}
                for doc_id, error in errors.items()])

    @staticmethod
    def _clear_failures(conn: Any, tenant: str, collection: str, doc_ids: list[str]) -> None:
        if doc_ids:
            conn.execute(document_failures.delete().where(
                document_failures.c.tenant == tenant, document_failures.c.collection == collection,
                document_failures.c.doc_id.in_(doc_ids)))

    def _page_ids(self, conn: Any, tenant: str, collection: str, limit: int, after: str | None) -> list[str]:
        registered = sa.select(documents.c.doc_id).where(documents.c.tenant == tenant,
                                                         documents.c.collection == collection)
        failed = sa.select(document_failures.c.doc_id).where(document_failures.c.tenant == tenant,
                                                             document_failures.c.collection == collection)
        pending = sa.select(job_documents.c.doc_id).where(
            job_documents.c.job_id.in_(self._collection_jobs(tenant, collection)),
            job_documents.c.status.in_(PENDING))
        if after is not None:
            registered = registered.where(documents.c.doc_id > after)
            failed = failed.where(document_failures.c.doc_id > after)
            pending = pending.where(job_documents.c.doc_id > after)
        every = sa.union(registered, failed, pending).subquery()
        return [r.doc_id for r in conn.execute(sa.select(every.c.doc_id).order_by(every.c.doc_id).limit(limit))]

    def _states(self, conn: Any, tenant: str, collection: str, doc_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not doc_ids:
            return {}
        registered = {r.doc_id: r for r in conn.execute(sa.select(documents).where(
            documents.c.tenant == tenant, documents.c.collection == collection, documents.c.doc_id.in_(doc_ids)))}
        failures = {r.doc_id: r for r in conn.execute(sa.select(document_failures).where(
            document_failures.c.tenant == tenant, document_failures.c.collection == collection,
            document_failures.c.doc_id.in_(doc_ids)))}
        newest: dict[str, Any] = {}
        pending: dict[str, Any] = {}
        for row in self._sent_versions(conn, tenant, collection, doc_ids):  # oldest first
            newest[row.doc_id] = row
            if row.status in PENDING:
                pending[row.doc_id] = row
        states = {doc_id: _state(doc_id, registered.get(doc_id), failures.get(doc_id), pending.get(doc_id),
                                 newest.get(doc_id)) for doc_id in doc_ids}
        return {doc_id: state for doc_id, state in states.items() if state is not None}

    def _sent_versions(self, conn: Any, tenant: str, collection: str, doc_ids: list[str]) -> list[Any]:
        """Each document's newest job row and its pending ones, oldest first (not every row: a folder sent a
        hundred times holds a hundred rows per document)."""
        age = sa.func.row_number().over(partition_by=job_documents.c.doc_id,
                                        order_by=(jobs.c.created_at.desc(), jobs.c.id.desc()))
        ranked = (sa.select(job_documents.c.doc_id, job_documents.c.status, job_documents.c.content_hash,
                            job_documents.c.meta, job_documents.c.updated_at, age.label("age"))
                  .select_from(job_documents.join(jobs, jobs.c.id == job_documents.c.job_id))
                  .where(jobs.c.tenant == tenant, jobs.c.collection == collection,
                         job_documents.c.doc_id.in_(doc_ids), job_documents.c.status != CANCELLED)
                  .subquery())
        return list(conn.execute(sa.select(ranked).where(sa.or_(ranked.c.age == 1, ranked.c.status.in_(PENDING)))
                                 .order_by(ranked.c.age.desc())))

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


def _state(doc_id: str, registered: Any, failure: Any, pending: Any, sent: Any) -> dict[str, Any] | None:
    """A document's state from its registry row, failure, newest pending job row and newest job row."""
    if pending is None and failure is None and registered is None:
        return None
    state: dict[str, Any] = {"id": doc_id, "units": int(registered.units) if registered is not None else 0}
    if pending is not None:
        state.update(status=pending.status, updated_at=pending.updated_at)
    elif failure is not None:
        state.update(status=FAILED, updated_at=failure.updated_at, error=failure.error)
    else:
        state.update(status="indexed", updated_at=registered.updated_at)
    version = registered if registered is not None else sent
    state["content_hash"] = (version.content_hash if version is not None else "") or None
    state["updated_at"] = _aware(state["updated_at"]).isoformat()
    state["meta"] = json.loads(sent.meta) if sent is not None else {}
    return state


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for what was stored as UTC
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


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
