"""The PostgreSQL backend: every method is one call of a ``memory.*`` function.

:mod:`pymem.backends.postgres_async` is the source and
:mod:`pymem.backends.postgres` its generated sync twin.
"""

from __future__ import annotations

import asyncio  # sync: import time
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..correlation import annotate
from ..db.queries import QUERIES
from ..errors import translate_errors
from ..models import (
    FIRST_PAGE,
    AppendResult,
    Batch,
    ClaimedJob,
    ContextItem,
    ContextRequest,
    ContextWindow,
    MaintenanceRun,
    NewMessage,
    NewSummary,
    RecalledMessage,
    RecallRequest,
    RecallSettings,
    SessionInfo,
    SessionQuery,
    SessionSettings,
    StoredMessage,
    Summary,
    TenantSettings,
    TenantStats,
)
from ..resilience.breaker import CircuitBreaker
from ..resilience.events import Events
from ..resilience.retry import CallClock, RetryPolicy, classify, deadline, scoped_deadline
from ..resilience.watchdog import WATCHDOG
from ..security.pii import check_policy
from ..validation import vector_literal
from . import calls
from .resilient import (
    IDEMPOTENT,
    DatabaseStats,
    breaker_moved,
    call_keys,
    circuit_open,
    database_breaker,
    gave_up,
    own_retries,
    timeout_ms,
    with_session_timeouts,
)
from .rows import open_failed, row_factory, window

T = TypeVar("T")

_CONNECTION_KWARGS: Final[Mapping[str, Any]] = {"autocommit": True, "prepare_threshold": 0}


class _ReconnectingPool(AsyncConnectionPool):
    """psycopg's pool, trying a lost server about once a second instead of
    backing off to minutes apart, so that calls recover within a second or
    two of its return (and the breaker sees each failed attempt)."""

    async def _add_connection(self, attempt: Any, growing: bool = False) -> None:
        # psycopg doubles the delay after each failed attempt: keep it near 1 s.
        if attempt is not None and getattr(attempt, "delay", 0.0) > 0.5:
            attempt.delay = 0.5
        await super()._add_connection(attempt, growing)


class AsyncPostgresBackend:
    """A backend over a psycopg 3 connection pool.

    Every call has a deadline (``retry.deadline``, 10 s by default; a
    :func:`pymem.deadline` block overrides it): it becomes the call's
    statement and lock timeouts, and failed attempts are retried within it
    when that is safe (see :mod:`pymem.resilience.retry`). ``breaker`` makes
    calls fail at once while PostgreSQL stays down.

    The constructor does no I/O; :meth:`open` (called by ``AsyncMemory.connect``)
    opens the pool and waits for the first connection.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.dsn = dsn
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or database_breaker()
        self.events = Events()  # degraded / recovered, as the breaker moves
        if self.breaker.on_change is None:
            self.breaker.on_change = self._breaker_moved
        self.database_stats = DatabaseStats()
        # The statement_timeout each pooled connection has now, where it is
        # not the one its startup options gave it.
        self._timeouts: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        self._default_ms = timeout_ms(self.retry.deadline)
        self._connect_errors = 0
        self._pool = _ReconnectingPool(
            with_session_timeouts(dsn, self.retry.deadline),
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs=dict(_CONNECTION_KWARGS),
            open=False,
            name="pymem",
        )

    async def open(self, *, wait: bool = True, timeout: float = 10.0) -> AsyncPostgresBackend:
        """Open the pool; fail at once, with the server's reason, when it is unreachable."""
        try:
            probe = await psycopg.AsyncConnection.connect(
                self.dsn, connect_timeout=max(1, int(timeout))
            )
            await probe.close()
        except psycopg.OperationalError as exc:
            raise open_failed(exc) from exc
        try:
            await self._pool.open(wait=wait, timeout=timeout)
        except PoolTimeout as exc:
            raise open_failed(exc) from exc
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
            await conn.execute(QUERIES["set_tenant"], {"tenant": tenant})
            yield conn

    async def _rows(self, name: str, params: Mapping[str, Any], row: type[T]) -> list[T]:
        rows: list[T] = await self._execute(name, params, row_factory(row))
        return rows

    async def _tuples(self, name: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = await self._execute(name, params, None)
        return rows

    async def _execute(self, name: str, params: Mapping[str, Any], factory: Any) -> list[Any]:
        """Run one named query within the call's deadline, retrying what is safe."""
        call = CallClock(self.retry, scoped_deadline(self.retry.deadline))
        idempotent = name in IDEMPOTENT
        last: BaseException | None = None
        while True:
            call.attempts += 1
            if not self.breaker.allow():
                self.database_stats.fast_failed += 1
                raise circuit_open(name, call, last) from last
            sent = False
            try:
                # The pool is asked in slices of a second: between them, the
                # breaker hears whether the server can be reached at all.
                left = call.remaining()
                wait_for = 1.0 if left is None else min(left, 1.0)
                # getconn / putconn rather than the pool's connection(): the
                # connections are in autocommit, so its commit or rollback at
                # the end has nothing to do (putconn still drops a broken one).
                conn = await self._pool.getconn(timeout=wait_for)
                try:
                    # Past the deadline, a connection that cannot be heard is abandoned.
                    watch = WATCHDOG.arm(conn, call.remaining())
                    try:
                        await self._fit_timeouts(conn, call)
                        if not idempotent:
                            # A connection that died in the pool fails here,
                            # before a call that must not run twice is sent.
                            await conn.execute("")
                        sent = True
                        async with conn.cursor(row_factory=factory) as cur:
                            if call.attempts > 1 and "call_retried" in params:
                                # An append's retry: its first attempt is looked for.
                                params = {**params, "call_retried": True}
                            await cur.execute(QUERIES[name], params, prepare=True)
                            rows: list[Any] = await cur.fetchall()
                    finally:
                        WATCHDOG.disarm(watch)
                finally:
                    await self._pool.putconn(conn)
            except (psycopg.Error, PoolTimeout) as exc:
                last = exc
                failure = classify(exc, sent=sent)
                if self._cannot_connect(exc):
                    self.breaker.failure()
                elif not failure.lost_server:
                    self.breaker.success()  # it answered
                else:
                    self.breaker.inconclusive()
                # A connection that broke: the next pooled one may be fine, and
                # when none is the pool blocks until it can connect again, so
                # there is nothing to wait for here (a wait would only let more
                # idle connections go stale).
                stale = failure.lost_server and not isinstance(exc, PoolTimeout)
                wait = call.next_delay(failure, idempotent, at_once=stale)
                if wait is None:
                    error = gave_up(name, exc, failure, call, idempotent)
                    self.database_stats.gave_up[type(error).__name__] += 1
                    if error is exc:
                        raise
                    raise error from exc
                self.database_stats.retries[failure.value] += 1
                annotate(
                    {"pymem.db.attempts": call.attempts + 1, "pymem.db.retried": failure.value}
                )
                if wait:
                    await asyncio.sleep(wait)  # sync: time.sleep(wait)
                continue
            except BaseException:
                # Cancelled, interrupted: a probe that cannot report must not
                # leave the breaker waiting for it.
                self.breaker.inconclusive()
                raise
            self.breaker.success()
            return rows

    async def _fit_timeouts(self, conn: psycopg.AsyncConnection[Any], call: CallClock) -> None:
        """Give the connection the call's remaining time as its statement and lock
        timeouts, when its own differ (one more round trip, on retries mostly)."""
        wanted = timeout_ms(call.remaining())
        current = self._timeouts.get(conn, self._default_ms)
        # Up to 50 ms over (time spent waiting for the pool) is let be.
        if current == wanted or (wanted and current and 0 <= current - wanted <= 50):
            return
        await conn.execute(QUERIES["set_timeouts"], {"ms": str(wanted)})
        self._timeouts[conn] = wanted

    def _breaker_moved(self, old: str, new: str) -> None:
        breaker_moved(old, new)
        self.events.breaker_moved(old, new)

    def _cannot_connect(self, exc: BaseException) -> bool:
        """Whether the pool timed out because it failed to open connections since
        the last look (the server is down), rather than because all of them
        were busy. Only this counts against the breaker: a pooled connection
        that a restart broke says nothing about the server now."""
        if not isinstance(exc, PoolTimeout):
            return False
        errors = int(self._pool.get_stats().get("connections_errors", 0))
        failed, self._connect_errors = errors > self._connect_errors, errors
        return failed

    async def _scalar(self, name: str, params: Mapping[str, Any]) -> Any:
        found = await self._tuples(name, params)
        return found[0][0]  # each function returns one value or raises

    # -- writes ----------------------------------------------------------------

    async def append(
        self, tenant: str, session: str, message: NewMessage, *, user_id: str | None = None
    ) -> AppendResult:
        # Every append carries a key, so that a retry after a lost reply cannot
        # store it twice: the caller's idempotency key, or one made for the call.
        keys = call_keys([message])
        params = calls.append_params(tenant, session, message, user_id, keys[0])
        return own_retries(await self._rows("append", params, AppendResult), keys)[0]

    async def append_many(
        self, tenant: str, session: str, messages: Batch, *, user_id: str | None = None
    ) -> list[AppendResult]:
        keys = call_keys(messages)
        params = calls.append_many_params(tenant, session, messages, user_id, keys)
        return own_retries(await self._rows("append_many", params, AppendResult), keys)

    async def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        params = {**calls.session_params(tenant, session), "ttl": ttl}
        expires: datetime = await self._scalar("extend_session", params)
        return expires

    async def configure_session(self, tenant: str, session: str, settings: SessionSettings) -> None:
        params = calls.configure_session_params(tenant, session, settings)
        await self._scalar("configure_session", params)

    async def configure_tenant(self, tenant: str, settings: TenantSettings) -> None:
        await self._scalar("configure_tenant", calls.configure_tenant_params(tenant, settings))

    async def delete_session(self, tenant: str, session: str) -> datetime:
        params = calls.session_params(tenant, session)
        deleted: datetime = await self._scalar("delete_session", params)
        return deleted

    async def restore_session(self, tenant: str, session: str) -> None:
        await self._scalar("restore_session", calls.session_params(tenant, session))

    async def purge_session(self, tenant: str, session: str) -> int:
        purged: int = await self._scalar("purge_session", calls.session_params(tenant, session))
        return purged

    async def pop_message(self, tenant: str, session: str) -> StoredMessage | None:
        rows = await self._rows("pop_message", calls.session_params(tenant, session), StoredMessage)
        return rows[0] if rows else None

    # -- reads -----------------------------------------------------------------

    async def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        params = {
            **calls.session_params(tenant, session),
            "after_seq": after_seq,
            "page_size": page_size,
        }
        return await self._rows("history", params, StoredMessage)

    async def last_messages(
        self, tenant: str, session: str, count: int = 50
    ) -> list[StoredMessage]:
        params = {**calls.session_params(tenant, session), "count": count}
        return await self._rows("last_messages", params, StoredMessage)

    async def context(self, tenant: str, session: str, request: ContextRequest) -> ContextWindow:
        params = calls.context_params(tenant, session, request)
        return window(await self._rows("context", params, ContextItem), request)

    async def session_info(self, tenant: str, session: str) -> SessionInfo:
        params = calls.session_params(tenant, session)
        return (await self._rows("session_info", params, SessionInfo))[0]

    async def list_sessions(
        self, tenant: str, query: SessionQuery = FIRST_PAGE
    ) -> list[SessionInfo]:
        return await self._rows("list_sessions", calls.list_params(tenant, query), SessionInfo)

    async def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        params = calls.subject_params(tenant, user_id)
        document: dict[str, Any] = await self._scalar("export_subject", params)
        return document

    async def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        rows = await self._tuples("erase_subject", calls.subject_params(tenant, user_id))
        return [(r[0], r[1]) for r in rows]

    async def stats(self, tenant: str | None = None) -> list[TenantStats]:
        return await self._rows("stats", {"tenant": tenant}, TenantStats)

    # -- recall and summaries --------------------------------------------------

    async def recall(
        self, tenant: str, session: str, request: RecallRequest
    ) -> list[RecalledMessage]:
        params = calls.recall_params(tenant, session, request)
        return await self._rows("recall", params, RecalledMessage)

    async def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        return await self._rows("list_summaries", calls.session_params(tenant, session), Summary)

    async def add_summary(self, tenant: str, session: str, summary: NewSummary) -> int:
        params = calls.add_summary_params(tenant, session, summary)
        summary_id: int = await self._scalar("add_summary", params)
        return summary_id

    async def configure_recall(self, tenant: str, settings: RecallSettings) -> None:
        await self._scalar("configure_recall", calls.configure_recall_params(tenant, settings))

    async def configure_pii(self, tenant: str, policy: Mapping[str, str]) -> None:
        """Set the tenant's personal data policy (memory.configure_pii)."""
        params = {"tenant": tenant, "policy": Jsonb(check_policy(policy))}
        await self._scalar("configure_pii", params)

    async def pii_policy(self, tenant: str) -> dict[str, str]:
        """The tenant's personal data policy (memory.pii_policy)."""
        policy: dict[str, str] = await self._scalar("pii_policy", {"tenant": tenant})
        return policy

    async def apply_pii_policy(self, tenant: str, content: str) -> str | None:
        """``content`` as the tenant's policy would store it; None when it blocks it."""
        found: str | None = await self._scalar(
            "apply_pii_policy", {"tenant": tenant, "content": content}
        )
        return found

    async def rate_limit(
        self, tenant: str, key: str, count: int, period: timedelta, cost: int = 1
    ) -> tuple[bool, timedelta, int]:
        """Take ``cost`` units of a limit (memory.rate_limit): allowed, wait, remaining."""
        params = {"tenant": tenant, "key": key, "count": count, "period": period, "cost": cost}
        row = (await self._tuples("rate_limit", params))[0]
        return bool(row[0]), row[1], int(row[2])

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
        params = calls.job_params(job.tenant_id, job.session_id, job.kind, worker)
        status: str = await self._scalar("complete_job", params)
        return status

    async def fail_job(
        self, job: ClaimedJob, worker: str, error: str, *, max_attempts: int = 5
    ) -> str:
        params = {
            **calls.job_params(job.tenant_id, job.session_id, job.kind, worker),
            "error": error,
            "max_attempts": max_attempts,
        }
        status: str = await self._scalar("fail_job", params)
        return status

    async def maintain_if_due(self, every: timedelta = timedelta(hours=1)) -> MaintenanceRun:
        """Housekeeping unless it ran within ``every`` or runs elsewhere now.

        ``memory.maintain_in_steps`` commits after each step, so a session it
        trims waits only for that step. It has no deadline: a large backlog
        takes the time it takes.
        """
        with deadline(None):
            return (await self._rows("maintain_if_due", {"every": every}, MaintenanceRun))[0]

    async def job_stats(self) -> list[tuple[str, str, int]]:
        return [(r[0], r[1], r[2]) for r in await self._tuples("job_stats", {})]

    async def summary_cadence(self, tenant: str, session: str) -> int | None:
        params = calls.session_params(tenant, session)
        cadence: int | None = await self._scalar("summary_cadence", params)
        return cadence

    async def count_terms(self, tenant: str, session: str, max_turns: int = 20000) -> int:
        """Bring the session's term statistics for recall up to date, at most
        ``max_turns`` turns per call; returns the turns counted (0: up to date)."""
        params = {**calls.session_params(tenant, session), "max_turns": max_turns}
        turns: int = await self._scalar("count_terms", params)
        return turns

    async def messages_to_embed(
        self, tenant: str, session: str, max_count: int = 64
    ) -> list[tuple[int, str]]:
        params = {**calls.session_params(tenant, session), "max_count": max_count}
        return [(r[0], r[1]) for r in await self._tuples("messages_to_embed", params)]

    async def set_embeddings(
        self,
        tenant: str,
        session: str,
        seqs: Sequence[int],
        embeddings: Sequence[Sequence[float]],
    ) -> int:
        params = {
            **calls.session_params(tenant, session),
            "seqs": list(seqs),
            "embeddings": [vector_literal(e) for e in embeddings],
        }
        updated: int = await self._scalar("set_embeddings", params)
        return updated
