"""The Redis cache tier: PostgreSQL stays the source of truth.

``AsyncCachedBackend`` wraps an :class:`AsyncPostgresBackend`. Reads that
build a window (context, history pages, the newest messages) are cached per
session in one Redis hash, ``memory:{<tenant>:<session>}:cache``: the hash
tag keeps every key of a session in one cluster slot, so each script touches
one key.

- A read is one ``HMGET`` of the session's generation and the entry.
- A miss is computed by PostgreSQL and stored by a script only if the
  generation is still the one read (a concurrent write wins: no stale fill).
- A write to PostgreSQL is followed, before it returns, by a script that
  bumps the generation and drops the entries (read-your-writes).
- Redis errors or slowness open a circuit breaker: reads and writes go to
  PostgreSQL alone, sessions written meanwhile are remembered and
  invalidated first when Redis answers again.

:mod:`pymem.tier.cache_async` is the source and
:mod:`pymem.tier.cache` its generated sync twin.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import redis.asyncio as redis  # sync: import redis

from ..backends.postgres_async import AsyncPostgresBackend
from ..models import (
    FIRST_PAGE,
    AppendResult,
    Batch,
    ContextRequest,
    ContextWindow,
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
from ..security.sealing import CacheSealer
from .entries import (
    FILL,
    INVALIDATE,
    MESSAGES,
    WINDOWS,
    CacheStats,
    Codec,
    Skip,
    entry_name,
    session_key,
)

log = logging.getLogger("pymem.cache")

T = TypeVar("T")


class AsyncCachedBackend:
    """PostgreSQL behind a Redis cache of built windows, with graceful degradation."""

    def __init__(
        self,
        backend: AsyncPostgresBackend,
        client: Any,
        *,
        ttl: timedelta = timedelta(hours=1),
        compress_over: int = 512,
        max_entries_per_session: int = 64,
        breaker: CircuitBreaker | None = None,
        sealer: CacheSealer | None = None,
    ) -> None:
        self.backend = backend
        self.sealer = sealer
        self.client = client
        self.ttl_ms = int(ttl.total_seconds() * 1000)
        self.compress_over = compress_over
        self.max_entries = max_entries_per_session
        self.cache_stats = CacheStats()
        self.events = Events()
        self.breaker = breaker or CircuitBreaker(on_change=self.events.breaker_moved)
        if breaker is not None and breaker.on_change is None:
            breaker.on_change = self.events.breaker_moved
        self._fill = client.register_script(FILL)
        self._invalidate = client.register_script(INVALIDATE)
        self._dirty: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------

    async def _redis(
        self,
        call: Callable[[], Awaitable[T]],
    ) -> T:
        if not self.breaker.allow():
            self.cache_stats.bypassed += 1
            raise Skip
        try:
            result = await call()
        except (redis.RedisError, OSError) as exc:
            self.cache_stats.errors += 1
            self.breaker.failure()
            log.warning("redis unavailable, using PostgreSQL alone: %s", exc)
            raise Skip from exc
        self.breaker.success()
        return result

    async def _bump(self, tenant: str, session: str) -> None:
        key = session_key(tenant, session)
        await self._redis(lambda: self._invalidate(keys=[key], args=[self.ttl_ms]))

    async def _replay_dirty(self) -> bool:
        """Invalidate sessions written while Redis was unreachable; False if still down."""
        with self._lock:
            dirty = list(self._dirty)
        for tenant, session in dirty:
            try:
                await self._bump(tenant, session)
            except Skip:
                return False
            with self._lock:
                self._dirty.discard((tenant, session))
        return True

    async def _cached(
        self,
        tenant: str,
        session: str,
        op: str,
        params: Sequence[Any],
        load: Callable[[], Awaitable[T]],
        codec: Codec[T],
    ) -> T:
        if self._dirty and not await self._replay_dirty():
            return await load()
        key = session_key(tenant, session)
        entry = entry_name(op, params)
        try:
            gen, blob = await self._redis(lambda: self.client.hmget(key, ["gen", entry]))
        except Skip:
            return await load()
        context = f"{key}/{entry}".encode()
        if blob is not None:
            raw = blob if isinstance(blob, bytes) else blob.encode()
            opened = raw if self.sealer is None else self.sealer.open(raw, context)
            if opened is not None:
                self.cache_stats.hits += 1
                return codec.decode(opened)
        self.cache_stats.misses += 1
        value = await load()
        stored, raw_size = codec.encode(value, self.compress_over)
        if self.sealer is not None:
            stored = self.sealer.seal(stored, context)
        seen = gen.decode() if isinstance(gen, bytes) else (gen or "")
        # The window must not outlive the session: ask for its expiry (misses only).
        expires = (await self.backend.session_info(tenant, session)).expires_at
        until = "" if expires is None else str(int(expires.timestamp() * 1000))
        args = [seen, entry, stored, self.ttl_ms, self.max_entries, until]
        try:
            if await self._redis(lambda: self._fill(keys=[key], args=args)):
                self.cache_stats.raw_bytes += raw_size
                self.cache_stats.stored_bytes += len(stored)
        except Skip:
            pass
        return value

    async def invalidate(self, tenant: str, session: str) -> None:
        """Drop a session's cached windows (after every write to it)."""
        self.cache_stats.invalidations += 1
        try:
            await self._bump(tenant, session)
        except Skip:
            with self._lock:
                self._dirty.add((tenant, session))

    async def _written(self, tenant: str, session: str, result: T) -> T:
        await self.invalidate(tenant, session)
        return result

    # -- writes: PostgreSQL first, then the cache -----------------------------------

    async def append(
        self, tenant: str, session: str, message: NewMessage, *, user_id: str | None = None
    ) -> AppendResult:
        result = await self.backend.append(tenant, session, message, user_id=user_id)
        return await self._written(tenant, session, result)

    async def append_many(
        self, tenant: str, session: str, messages: Batch, *, user_id: str | None = None
    ) -> list[AppendResult]:
        results = await self.backend.append_many(tenant, session, messages, user_id=user_id)
        return await self._written(tenant, session, results)

    async def configure_session(self, tenant: str, session: str, settings: SessionSettings) -> None:
        await self.backend.configure_session(tenant, session, settings)
        await self.invalidate(tenant, session)

    async def delete_session(self, tenant: str, session: str) -> datetime:
        deleted = await self.backend.delete_session(tenant, session)
        return await self._written(tenant, session, deleted)

    async def restore_session(self, tenant: str, session: str) -> None:
        await self.backend.restore_session(tenant, session)
        await self.invalidate(tenant, session)

    async def purge_session(self, tenant: str, session: str) -> int:
        purged = await self.backend.purge_session(tenant, session)
        return await self._written(tenant, session, purged)

    async def pop_message(self, tenant: str, session: str) -> StoredMessage | None:
        popped = await self.backend.pop_message(tenant, session)
        return await self._written(tenant, session, popped)

    async def add_summary(self, tenant: str, session: str, summary: NewSummary) -> int:
        summary_id = await self.backend.add_summary(tenant, session, summary)
        return await self._written(tenant, session, summary_id)

    async def set_embeddings(
        self,
        tenant: str,
        session: str,
        seqs: Sequence[int],
        embeddings: Sequence[Sequence[float]],
    ) -> int:
        updated = await self.backend.set_embeddings(tenant, session, seqs, embeddings)
        return await self._written(tenant, session, updated)

    async def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        expires = await self.backend.extend_session(tenant, session, ttl)
        return await self._written(tenant, session, expires)

    async def configure_tenant(self, tenant: str, settings: TenantSettings) -> None:
        await self.backend.configure_tenant(tenant, settings)

    async def configure_recall(self, tenant: str, settings: RecallSettings) -> None:
        await self.backend.configure_recall(tenant, settings)

    async def configure_pii(self, tenant: str, policy: Mapping[str, str]) -> None:
        await self.backend.configure_pii(tenant, policy)

    async def pii_policy(self, tenant: str) -> dict[str, str]:
        return await self.backend.pii_policy(tenant)

    async def apply_pii_policy(self, tenant: str, content: str) -> str | None:
        return await self.backend.apply_pii_policy(tenant, content)

    # -- reads: from the cache when it can ------------------------------------------

    async def context(self, tenant: str, session: str, request: ContextRequest) -> ContextWindow:
        return await self._cached(
            tenant,
            session,
            "context",
            request.cache_fields(),
            lambda: self.backend.context(tenant, session, request),
            WINDOWS,
        )

    async def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        return await self._cached(
            tenant,
            session,
            "history",
            [after_seq, page_size],
            lambda: self.backend.history(tenant, session, after_seq=after_seq, page_size=page_size),
            MESSAGES,
        )

    async def last_messages(
        self, tenant: str, session: str, count: int = 50
    ) -> list[StoredMessage]:
        return await self._cached(
            tenant,
            session,
            "last",
            [count],
            lambda: self.backend.last_messages(tenant, session, count),
            MESSAGES,
        )

    async def recall(
        self, tenant: str, session: str, request: RecallRequest
    ) -> list[RecalledMessage]:
        return await self.backend.recall(tenant, session, request)

    async def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        return await self.backend.list_summaries(tenant, session)

    async def session_info(self, tenant: str, session: str) -> SessionInfo:
        return await self.backend.session_info(tenant, session)

    async def list_sessions(
        self, tenant: str, query: SessionQuery = FIRST_PAGE
    ) -> list[SessionInfo]:
        return await self.backend.list_sessions(tenant, query)

    async def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        return await self.backend.export_subject(tenant, user_id)

    async def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        erased = await self.backend.erase_subject(tenant, user_id)
        for session, _ in erased:
            await self.invalidate(tenant, session)
        return erased

    async def stats(self, tenant: str | None = None) -> list[TenantStats]:
        return await self.backend.stats(tenant)

    async def close(self) -> None:
        await self.backend.close()
        await self.client.aclose()


async def connect_redis(url: str, *, timeout: float = 0.25) -> Any:
    """A client for ``url``: Redis Cluster when the server says it is one."""
    plain = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        info = await plain.info("cluster")
    except (redis.RedisError, OSError):
        return plain  # unreachable now: the breaker handles it, the cluster check can wait
    if info.get("cluster_enabled"):
        await plain.aclose()
        return redis.RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    return plain
