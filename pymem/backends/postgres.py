"""The PostgreSQL backend: every method is one call of a ``memory.*`` function."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from typing import Any, Final, Protocol, TypeVar, cast

import psycopg
from psycopg.rows import RowFactory, RowMaker, class_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolTimeout

from .._queries import QUERIES
from ..errors import UNREACHABLE_HINT, DatabaseUnavailable, translate_errors
from ..models import (
    AppendResult,
    ClaimedJob,
    ContextItem,
    ContextWindow,
    NewMessage,
    RecalledMessage,
    SessionInfo,
    StoredMessage,
    Summary,
    TenantStats,
)
from ..pii import check_policy
from ..validation import check_text, vector_literal
from . import _calls

T = TypeVar("T")
R = TypeVar("R", covariant=True)

# Act for a tenant until the end of the current transaction.
SET_TENANT: Final = "select set_config('pymem.tenant', %s, true)"

_CONNECTION_KWARGS: Mapping[str, Any] = {"autocommit": True, "prepare_threshold": 0}


class _Tuple(Protocol[R]):
    _fields: tuple[str, ...]

    def _make(self, values: Iterable[Any]) -> R: ...


def tuple_row(cls: type[R]) -> RowFactory[R]:
    """Rows as ``cls`` (a NamedTuple), matched to the result columns by name.

    The column names are checked against the fields once per result, so the
    fast positional build can never put a value in the wrong field.
    """
    maker = cast(_Tuple[R], cls)

    def factory(cursor: Any) -> RowMaker[R]:
        names = tuple(c.name for c in cursor.description or ())
        if names != maker._fields:
            raise TypeError(f"{cls.__name__} expects columns {maker._fields}, got {names}")
        return maker._make

    return factory


def _factory(row: type[T]) -> Any:
    """The row factory for ``row``; it serves sync and async cursors alike."""
    return tuple_row(row) if hasattr(row, "_make") else class_row(row)


def _window(items: list[ContextItem], params: Mapping[str, Any]) -> ContextWindow:
    return ContextWindow(
        items=tuple(items),
        budget=params["budget"],
        strategy=params["strategy"],
        message_overhead=params["message_overhead"],
    )


def _open_failed(exc: Exception) -> DatabaseUnavailable:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DatabaseUnavailable(
        f"memory: cannot connect to PostgreSQL: {reason}", hint=UNREACHABLE_HINT
    )


class PostgresBackend:
    """Synchronous backend over a psycopg 3 connection pool.

    The constructor does no I/O; :meth:`open` (called by ``Memory.connect``)
    opens the pool and waits for the first connection.
    """

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0
    ) -> None:
        self.dsn = dsn
        self._pool = ConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs=dict(_CONNECTION_KWARGS),
            open=False,
            name="pymem",
        )

    def open(self, *, wait: bool = True, timeout: float = 10.0) -> PostgresBackend:
        """Open the pool; fail at once, with the server's reason, when it is unreachable."""
        try:
            psycopg.connect(self.dsn, connect_timeout=max(1, int(timeout))).close()
        except psycopg.OperationalError as exc:
            raise _open_failed(exc) from exc
        try:
            self._pool.open(wait=wait, timeout=timeout)
        except PoolTimeout as exc:
            raise _open_failed(exc) from exc
        return self

    def close(self) -> None:
        self._pool.close()

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        """Borrow a pooled connection (autocommit; use ``conn.transaction()``)."""
        with translate_errors(), self._pool.connection() as conn:
            yield conn

    @contextmanager
    def tenant_connection(self, tenant: str) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection inside a transaction that acts for ``tenant``.

        For your own SQL against pymem's views and functions: row-level
        security and the functions' tenant guard read the transaction-local
        setting pymem.tenant, gone at commit. pymem's own calls set it in the
        statement itself (see queries.sql).
        """
        with self.connection() as conn, conn.transaction():
            conn.execute(SET_TENANT, (tenant,))
            yield conn

    def _rows(self, name: str, params: Mapping[str, Any], row: type[T]) -> list[T]:
        with self.connection() as conn, conn.cursor(row_factory=_factory(row)) as cur:
            cur.execute(QUERIES[name], params, prepare=True)
            return cur.fetchall()

    def _scalar(self, name: str, params: Mapping[str, Any]) -> Any:
        with self.connection() as conn:
            found = conn.execute(QUERIES[name], params, prepare=True).fetchone()
        assert found is not None  # each function returns one value or raises
        return found[0]

    # -- writes ----------------------------------------------------------------

    def append(
        self,
        tenant: str,
        session: str,
        role: str,
        content: str,
        *,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
        idempotency_key: str | None = None,
        user_id: str | None = None,
    ) -> AppendResult:
        params = _calls.append_params(
            tenant,
            session,
            role,
            content,
            tokens=tokens,
            metadata=metadata,
            embedding=embedding,
            idempotency_key=idempotency_key,
            user_id=user_id,
        )
        return self._rows("append", params, AppendResult)[0]

    def append_many(
        self,
        tenant: str,
        session: str,
        messages: Sequence[NewMessage],
        *,
        user_id: str | None = None,
    ) -> list[AppendResult]:
        params = _calls.append_many_params(tenant, session, messages, user_id)
        return self._rows("append_many", params, AppendResult)

    def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        expires: datetime = self._scalar(
            "extend_session", {**_calls.session_params(tenant, session), "ttl": ttl}
        )
        return expires

    def configure_session(
        self,
        tenant: str,
        session: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        summary_every_tokens: int | None = None,
    ) -> None:
        self._scalar(
            "configure_session",
            _calls.configure_session_params(
                tenant,
                session,
                max_messages=max_messages,
                max_tokens=max_tokens,
                metadata=metadata,
                summary_every_tokens=summary_every_tokens,
            ),
        )

    def configure_tenant(
        self,
        tenant: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        default_ttl: timedelta | None = None,
    ) -> None:
        self._scalar(
            "configure_tenant",
            _calls.configure_tenant_params(
                tenant, max_messages=max_messages, max_tokens=max_tokens, default_ttl=default_ttl
            ),
        )

    def delete_session(self, tenant: str, session: str) -> datetime:
        deleted: datetime = self._scalar("delete_session", _calls.session_params(tenant, session))
        return deleted

    def restore_session(self, tenant: str, session: str) -> None:
        self._scalar("restore_session", _calls.session_params(tenant, session))

    def purge_session(self, tenant: str, session: str) -> int:
        purged: int = self._scalar("purge_session", _calls.session_params(tenant, session))
        return purged

    # -- reads -----------------------------------------------------------------

    def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        params = {
            **_calls.session_params(tenant, session),
            "after_seq": after_seq,
            "page_size": page_size,
        }
        return self._rows("history", params, StoredMessage)

    def last_messages(self, tenant: str, session: str, count: int = 50) -> list[StoredMessage]:
        params = {**_calls.session_params(tenant, session), "count": count}
        return self._rows("last_messages", params, StoredMessage)

    def context(
        self,
        tenant: str,
        session: str,
        *,
        budget: int,
        query: str | None = None,
        query_embedding: Sequence[float] | None = None,
        strategy: str = "recent",
        message_overhead: int = 0,
        summary_share: float | None = None,
        recent_share: float | None = None,
    ) -> ContextWindow:
        params = _calls.context_params(
            tenant,
            session,
            budget=budget,
            query=query,
            query_embedding=query_embedding,
            strategy=strategy,
            message_overhead=message_overhead,
            summary_share=summary_share,
            recent_share=recent_share,
        )
        return _window(self._rows("context", params, ContextItem), params)

    def session_info(self, tenant: str, session: str) -> SessionInfo:
        return self._rows("session_info", _calls.session_params(tenant, session), SessionInfo)[0]

    def list_sessions(
        self,
        tenant: str,
        *,
        owner: str | None = None,
        include_deleted: bool = False,
        after_session: str | None = None,
        page_size: int = 100,
    ) -> list[SessionInfo]:
        params = _calls.list_params(
            tenant,
            owner=owner,
            include_deleted=include_deleted,
            after_session=after_session,
            page_size=page_size,
        )
        return self._rows("list_sessions", params, SessionInfo)

    def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        document: dict[str, Any] = self._scalar(
            "export_subject", {"tenant": tenant, "user_id": check_text("user_id", user_id)}
        )
        return document

    def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        params = {"tenant": tenant, "user_id": check_text("user_id", user_id)}
        with self.connection() as conn:
            cur = conn.execute(QUERIES["erase_subject"], params)
            rows = cur.fetchall()
        return [(r[0], r[1]) for r in rows]

    def stats(self, tenant: str | None = None) -> list[TenantStats]:
        return self._rows("stats", {"tenant": tenant}, TenantStats)

    # -- recall and summaries --------------------------------------------------

    def recall(
        self,
        tenant: str,
        session: str,
        query: str,
        *,
        query_embedding: Sequence[float] | None = None,
        before_seq: int | None = None,
        max_rows: int = 50,
    ) -> list[RecalledMessage]:
        params = _calls.recall_params(
            tenant,
            session,
            query=query,
            query_embedding=query_embedding,
            before_seq=before_seq,
            max_rows=max_rows,
        )
        return self._rows("recall", params, RecalledMessage)

    def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        return self._rows("list_summaries", _calls.session_params(tenant, session), Summary)

    def add_summary(
        self,
        tenant: str,
        session: str,
        *,
        level: int,
        seq_from: int,
        seq_to: int,
        content: str,
        tokens: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        summary_id: int = self._scalar(
            "add_summary",
            _calls.add_summary_params(
                tenant,
                session,
                level=level,
                seq_from=seq_from,
                seq_to=seq_to,
                content=content,
                tokens=tokens,
                metadata=metadata,
            ),
        )
        return summary_id

    def configure_recall(
        self,
        tenant: str,
        *,
        summary_every_tokens: int | None = 2000,
        embed_messages: bool = False,
    ) -> None:
        self._scalar(
            "configure_recall",
            {
                "tenant": tenant,
                "summary_every_tokens": summary_every_tokens,
                "embed_messages": embed_messages,
            },
        )

    def configure_pii(self, tenant: str, policy: Mapping[str, str]) -> None:
        """Set the tenant's personal data policy (memory.configure_pii)."""
        self._scalar("configure_pii", {"tenant": tenant, "policy": Jsonb(check_policy(policy))})

    def pii_policy(self, tenant: str) -> dict[str, str]:
        """The tenant's personal data policy (memory.pii_policy)."""
        policy: dict[str, str] = self._scalar("pii_policy", {"tenant": tenant})
        return policy

    # -- the job queue (PostgreSQL only) -------------------------------------------

    def claim_jobs(
        self,
        worker: str,
        *,
        kinds: Sequence[str] = ("summarize", "embed"),
        max_jobs: int = 1,
        lease: timedelta = timedelta(minutes=5),
    ) -> list[ClaimedJob]:
        params = {"worker": worker, "kinds": list(kinds), "max_jobs": max_jobs, "lease": lease}
        return self._rows("claim_jobs", params, ClaimedJob)

    def complete_job(self, job: ClaimedJob, worker: str) -> str:
        status: str = self._scalar(
            "complete_job",
            {
                "tenant": job.tenant_id,
                "session": job.session_id,
                "kind": job.kind,
                "worker": worker,
            },
        )
        return status

    def fail_job(self, job: ClaimedJob, worker: str, error: str, *, max_attempts: int = 5) -> str:
        status: str = self._scalar(
            "fail_job",
            {
                "tenant": job.tenant_id,
                "session": job.session_id,
                "kind": job.kind,
                "worker": worker,
                "error": error,
                "max_attempts": max_attempts,
            },
        )
        return status

    def job_stats(self) -> list[tuple[str, str, int]]:
        with self.connection() as conn:
            rows = conn.execute(QUERIES["job_stats"], prepare=True).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    def summary_cadence(self, tenant: str, session: str) -> int | None:
        cadence: int | None = self._scalar(
            "summary_cadence", _calls.session_params(tenant, session)
        )
        return cadence

    def messages_to_embed(
        self, tenant: str, session: str, max_count: int = 64
    ) -> list[tuple[int, str]]:
        params = {**_calls.session_params(tenant, session), "max_count": max_count}
        with self.connection() as conn:
            rows = conn.execute(QUERIES["messages_to_embed"], params, prepare=True).fetchall()
        return [(r[0], r[1]) for r in rows]

    def set_embeddings(
        self,
        tenant: str,
        session: str,
        seqs: Sequence[int],
        embeddings: Sequence[Sequence[float]],
    ) -> int:
        params = {
            **_calls.session_params(tenant, session),
            "seqs": list(seqs),
            "embeddings": [vector_literal(e) for e in embeddings],
        }
        updated: int = self._scalar("set_embeddings", params)
        return updated


class AsyncPostgresBackend:
    """The async twin of :class:`PostgresBackend` over an async connection pool."""

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0
    ) -> None:
        self.dsn = dsn
        self._pool = AsyncConnectionPool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs=dict(_CONNECTION_KWARGS),
            open=False,
            name="pymem-async",
        )

    async def open(self, *, wait: bool = True, timeout: float = 10.0) -> AsyncPostgresBackend:
        """Open the pool; fail at once, with the server's reason, when it is unreachable."""
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.dsn, connect_timeout=max(1, int(timeout))
            )
            await conn.close()
        except psycopg.OperationalError as exc:
            raise _open_failed(exc) from exc
        try:
            await self._pool.open(wait=wait, timeout=timeout)
        except PoolTimeout as exc:
            raise _open_failed(exc) from exc
        return self

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """Borrow a pooled connection (autocommit; use ``conn.transaction()``)."""
        with translate_errors():
            async with self._pool.connection() as conn:
                yield conn

    @asynccontextmanager
    async def tenant_connection(self, tenant: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection inside a transaction that acts for ``tenant``.

        For your own SQL against pymem's views and functions: row-level
        security and the functions' tenant guard read the transaction-local
        setting pymem.tenant, gone at commit. pymem's own calls set it in the
        statement itself (see queries.sql).
        """
        async with self.connection() as conn, conn.transaction():
            await conn.execute(SET_TENANT, (tenant,))
            yield conn

    async def _rows(self, name: str, params: Mapping[str, Any], row: type[T]) -> list[T]:
        async with self.connection() as conn, conn.cursor(row_factory=_factory(row)) as cur:
            await cur.execute(QUERIES[name], params, prepare=True)
            rows: list[T] = await cur.fetchall()
            return rows

    async def _scalar(self, name: str, params: Mapping[str, Any]) -> Any:
        async with self.connection() as conn:
            cur = await conn.execute(QUERIES[name], params, prepare=True)
            found = await cur.fetchone()
        assert found is not None  # each function returns one value or raises
        return found[0]

    async def append(
        self,
        tenant: str,
        session: str,
        role: str,
        content: str,
        *,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
        idempotency_key: str | None = None,
        user_id: str | None = None,
    ) -> AppendResult:
        params = _calls.append_params(
            tenant,
            session,
            role,
            content,
            tokens=tokens,
            metadata=metadata,
            embedding=embedding,
            idempotency_key=idempotency_key,
            user_id=user_id,
        )
        return (await self._rows("append", params, AppendResult))[0]

    async def append_many(
        self,
        tenant: str,
        session: str,
        messages: Sequence[NewMessage],
        *,
        user_id: str | None = None,
    ) -> list[AppendResult]:
        params = _calls.append_many_params(tenant, session, messages, user_id)
        return await self._rows("append_many", params, AppendResult)

    async def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        expires: datetime = await self._scalar(
            "extend_session", {**_calls.session_params(tenant, session), "ttl": ttl}
        )
        return expires

    async def configure_session(
        self,
        tenant: str,
        session: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        summary_every_tokens: int | None = None,
    ) -> None:
        await self._scalar(
            "configure_session",
            _calls.configure_session_params(
                tenant,
                session,
                max_messages=max_messages,
                max_tokens=max_tokens,
                metadata=metadata,
                summary_every_tokens=summary_every_tokens,
            ),
        )

    async def configure_tenant(
        self,
        tenant: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        default_ttl: timedelta | None = None,
    ) -> None:
        await self._scalar(
            "configure_tenant",
            _calls.configure_tenant_params(
                tenant, max_messages=max_messages, max_tokens=max_tokens, default_ttl=default_ttl
            ),
        )

    async def delete_session(self, tenant: str, session: str) -> datetime:
        deleted: datetime = await self._scalar(
            "delete_session", _calls.session_params(tenant, session)
        )
        return deleted

    async def restore_session(self, tenant: str, session: str) -> None:
        await self._scalar("restore_session", _calls.session_params(tenant, session))

    async def purge_session(self, tenant: str, session: str) -> int:
        purged: int = await self._scalar("purge_session", _calls.session_params(tenant, session))
        return purged

    async def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        params = {
            **_calls.session_params(tenant, session),
            "after_seq": after_seq,
            "page_size": page_size,
        }
        return await self._rows("history", params, StoredMessage)

    async def last_messages(
        self, tenant: str, session: str, count: int = 50
    ) -> list[StoredMessage]:
        params = {**_calls.session_params(tenant, session), "count": count}
        return await self._rows("last_messages", params, StoredMessage)

    async def context(
        self,
        tenant: str,
        session: str,
        *,
        budget: int,
        query: str | None = None,
        query_embedding: Sequence[float] | None = None,
        strategy: str = "recent",
        message_overhead: int = 0,
        summary_share: float | None = None,
        recent_share: float | None = None,
    ) -> ContextWindow:
        params = _calls.context_params(
            tenant,
            session,
            budget=budget,
            query=query,
            query_embedding=query_embedding,
            strategy=strategy,
            message_overhead=message_overhead,
            summary_share=summary_share,
            recent_share=recent_share,
        )
        return _window(await self._rows("context", params, ContextItem), params)

    async def session_info(self, tenant: str, session: str) -> SessionInfo:
        rows = await self._rows("session_info", _calls.session_params(tenant, session), SessionInfo)
        return rows[0]

    async def list_sessions(
        self,
        tenant: str,
        *,
        owner: str | None = None,
        include_deleted: bool = False,
        after_session: str | None = None,
        page_size: int = 100,
    ) -> list[SessionInfo]:
        params = _calls.list_params(
            tenant,
            owner=owner,
            include_deleted=include_deleted,
            after_session=after_session,
            page_size=page_size,
        )
        return await self._rows("list_sessions", params, SessionInfo)

    async def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        document: dict[str, Any] = await self._scalar(
            "export_subject", {"tenant": tenant, "user_id": check_text("user_id", user_id)}
        )
        return document

    async def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        params = {"tenant": tenant, "user_id": check_text("user_id", user_id)}
        async with self.connection() as conn:
            cur = await conn.execute(QUERIES["erase_subject"], params)
            rows = await cur.fetchall()
        return [(r[0], r[1]) for r in rows]

    async def stats(self, tenant: str | None = None) -> list[TenantStats]:
        return await self._rows("stats", {"tenant": tenant}, TenantStats)

    # -- recall and summaries --------------------------------------------------

    async def recall(
        self,
        tenant: str,
        session: str,
        query: str,
        *,
        query_embedding: Sequence[float] | None = None,
        before_seq: int | None = None,
        max_rows: int = 50,
    ) -> list[RecalledMessage]:
        params = _calls.recall_params(
            tenant,
            session,
            query=query,
            query_embedding=query_embedding,
            before_seq=before_seq,
            max_rows=max_rows,
        )
        return await self._rows("recall", params, RecalledMessage)

    async def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        return await self._rows("list_summaries", _calls.session_params(tenant, session), Summary)

    async def add_summary(
        self,
        tenant: str,
        session: str,
        *,
        level: int,
        seq_from: int,
        seq_to: int,
        content: str,
        tokens: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        summary_id: int = await self._scalar(
            "add_summary",
            _calls.add_summary_params(
                tenant,
                session,
                level=level,
                seq_from=seq_from,
                seq_to=seq_to,
                content=content,
                tokens=tokens,
                metadata=metadata,
            ),
        )
        return summary_id

    async def configure_recall(
        self,
        tenant: str,
        *,
        summary_every_tokens: int | None = 2000,
        embed_messages: bool = False,
    ) -> None:
        await self._scalar(
            "configure_recall",
            {
                "tenant": tenant,
                "summary_every_tokens": summary_every_tokens,
                "embed_messages": embed_messages,
            },
        )

    async def configure_pii(self, tenant: str, policy: Mapping[str, str]) -> None:
        """Set the tenant's personal data policy (memory.configure_pii)."""
        await self._scalar(
            "configure_pii", {"tenant": tenant, "policy": Jsonb(check_policy(policy))}
        )

    async def pii_policy(self, tenant: str) -> dict[str, str]:
        """The tenant's personal data policy (memory.pii_policy)."""
        policy: dict[str, str] = await self._scalar("pii_policy", {"tenant": tenant})
        return policy

    # -- the job queue (PostgreSQL only) -------------------------------------------

    async def claim_jobs(
        self,
        worker: str,
        *,
        kinds: Sequence[str] = ("summarize", "embed"),
        max_jobs: int = 1,
        lease: timedelta = timedelta(minutes=5),
    ) -> list[ClaimedJob]:
        params = {"worker": worker, "kinds": list(kinds), "max_jobs": max_jobs, "lease": lease}
        return await self._rows("claim_jobs", params, ClaimedJob)

    async def complete_job(self, job: ClaimedJob, worker: str) -> str:
        status: str = await self._scalar(
            "complete_job",
            {
                "tenant": job.tenant_id,
                "session": job.session_id,
                "kind": job.kind,
                "worker": worker,
            },
        )
        return status

    async def fail_job(
        self, job: ClaimedJob, worker: str, error: str, *, max_attempts: int = 5
    ) -> str:
        status: str = await self._scalar(
            "fail_job",
            {
                "tenant": job.tenant_id,
                "session": job.session_id,
                "kind": job.kind,
                "worker": worker,
                "error": error,
                "max_attempts": max_attempts,
            },
        )
        return status

    async def job_stats(self) -> list[tuple[str, str, int]]:
        async with self.connection() as conn:
            cur = await conn.execute(QUERIES["job_stats"], prepare=True)
            rows = await cur.fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    async def summary_cadence(self, tenant: str, session: str) -> int | None:
        cadence: int | None = await self._scalar(
            "summary_cadence", _calls.session_params(tenant, session)
        )
        return cadence

    async def messages_to_embed(
        self, tenant: str, session: str, max_count: int = 64
    ) -> list[tuple[int, str]]:
        params = {**_calls.session_params(tenant, session), "max_count": max_count}
        async with self.connection() as conn:
            cur = await conn.execute(QUERIES["messages_to_embed"], params, prepare=True)
            rows = await cur.fetchall()
        return [(r[0], r[1]) for r in rows]

    async def set_embeddings(
        self,
        tenant: str,
        session: str,
        seqs: Sequence[int],
        embeddings: Sequence[Sequence[float]],
    ) -> int:
        params = {
            **_calls.session_params(tenant, session),
            "seqs": list(seqs),
            "embeddings": [vector_literal(e) for e in embeddings],
        }
        updated: int = await self._scalar("set_embeddings", params)
        return updated
