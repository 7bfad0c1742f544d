"""The Python API: ``AsyncMemory`` (a store) and ``AsyncSession`` (one conversation).

:mod:`pymem.aio` (asyncio) is the source; :mod:`pymem.client` (``Memory``
and ``Session``) is generated from it by ``scripts/async_to_sync.py``, so
both have the same features, names, arguments and documentation.
"""

from __future__ import annotations

import asyncio  # sync: drop
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from .backends.base_async import AsyncMemoryBackend
from .backends.memory_async import AsyncInMemoryBackend
from .config import Settings
from .context.tokens import TokenCounter
from .correlation import annotate, tracing_active
from .defaults import choose_counter, count_tokens, limits_for, require_dsn
from .errors import InvalidArgument, PiiBlocked, PymemError
from .models import (
    AppendResult,
    ContextRequest,
    ContextWindow,
    MessagePage,
    NewMessage,
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
from .resilience.breaker import CircuitBreaker
from .resilience.retry import RetryPolicy
from .security.keys import KeyProvider, keyed_dsn
from .security.pii import PiiFilter, scrub_batch
from .telemetry.metrics import ClientMetrics
from .telemetry.operations import operation, record_append, record_recall, record_window
from .telemetry.tracing import Tracing
from .tier.limits import RateLimits
from .tier.ratelimit_async import AsyncRateLimiter, enforce
from .transcript import Part, to_turns


class AsyncMemory:
    """A conversation store: PostgreSQL, an embedded PostgreSQL, Redis, or process memory.

    >>> mem = AsyncMemory.in_memory()
    >>> chat = mem.session("support-42", tenant="acme", user="u-7")
    """

    def __init__(
        self,
        backend: AsyncMemoryBackend,
        *,
        counter: TokenCounter | str | None = None,
        tenant: str | None = None,
        limiter: AsyncRateLimiter | None = None,
        rate_limits: RateLimits | Mapping[str, RateLimits] | None = None,
        pii: PiiFilter | None = None,
        metrics: ClientMetrics | bool = False,
        tracing: Tracing | bool = False,
    ) -> None:
        settings = Settings.from_env()
        self.pii = pii
        self.metrics = ClientMetrics.default() if metrics is True else (metrics or None)
        self.tracing = Tracing() if tracing is True else (tracing or None)
        if self.metrics is not None and hasattr(backend, "cache_stats"):
            self.metrics.watch_cache(backend)
        database = (
            backend if hasattr(backend, "database_stats") else getattr(backend, "backend", None)
        )
        if self.metrics is not None and hasattr(database, "database_stats"):
            self.metrics.watch_database(database)
        self.backend = backend
        self.counter = choose_counter(counter, settings)
        self.tenant = tenant or settings.tenant
        self.limiter = limiter
        self.rate_limits = rate_limits

    def limits_for(self, tenant: str) -> RateLimits | None:
        """The append limits of ``tenant`` (a mapping may name tenants and ``"*"``)."""
        return limits_for(self.rate_limits, tenant)

    @classmethod
    async def connect(
        cls,
        dsn: str | None = None,
        *,
        counter: TokenCounter | str | None = None,
        tenant: str | None = None,
        min_size: int = 1,
        max_size: int | None = None,
        migrate: bool = False,
        redis: str | None = None,
        rate_limits: RateLimits | Mapping[str, RateLimits] | None = None,
        keys: KeyProvider | None = None,
        pii: PiiFilter | None = None,
        metrics: ClientMetrics | bool = False,
        tracing: Tracing | bool = False,
        deadline: float | None = 10.0,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> AsyncMemory:
        """Connect to PostgreSQL (``dsn`` or ``PYMEM_DSN``) through a connection pool.

        With ``migrate=True`` the schema is installed or upgraded first. With
        ``redis`` (a URL, or ``PYMEM_REDIS``) built windows are cached in Redis
        and rate limits are counted there, PostgreSQL taking over whenever
        Redis is unavailable. ``rate_limits`` limits appends per tenant, user
        and session (one RateLimits, or a mapping by tenant with ``"*"``).
        ``keys`` supplies the master key for tenants that encrypt their content
        (default: ``PYMEM_MASTER_KEY`` when set); it travels in each pooled
        connection's startup options, never in SQL. ``pii`` runs Python
        classifiers on each message before it is sent (see :mod:`pymem.security.pii`).
        ``metrics`` (True, or a :class:`~pymem.telemetry.metrics.ClientMetrics`)
        exports Prometheus metrics of every call (``pymem[metrics]``);
        ``tracing`` (True, or a :class:`~pymem.telemetry.tracing.Tracing`) opens
        an OpenTelemetry span for each (``pymem[otel]``).

        Every call ends within ``deadline`` seconds (None: no deadline; a
        ``with pymem.deadline(s):`` block overrides it for the calls inside):
        it is the call's statement and lock timeout, and failed attempts are
        retried within it where that is safe (lost connections, a restart or
        failover, serialization failures and deadlocks; appends always carry
        an idempotency key, made here when not given). ``retry`` tunes the
        backoff (:class:`~pymem.resilience.retry.RetryPolicy`; its own
        deadline gives way to ``deadline``); ``breaker``
        (:class:`~pymem.resilience.breaker.CircuitBreaker`) makes calls fail at
        once while PostgreSQL stays down.
        """
        from dataclasses import replace

        from .backends.postgres_async import AsyncPostgresBackend
        from .db.migrate import migrate as run_migrate
        from .tier.ratelimit_async import (
            AsyncFailoverRateLimiter,
            AsyncPostgresRateLimiter,
            AsyncRedisRateLimiter,
        )

        settings = Settings.from_env()
        url = require_dsn(dsn, settings)
        if migrate:
            await asyncio.to_thread(run_migrate, url)  # sync: run_migrate(url)
        pool_url, master = keyed_dsn(url, keys)
        pool_max = max_size or settings.pool_max
        policy = replace(retry or RetryPolicy(), deadline=deadline)
        pg = await AsyncPostgresBackend(
            pool_url, min_size=min_size, max_size=pool_max, retry=policy, breaker=breaker
        ).open()
        backend: AsyncMemoryBackend = pg
        limiter: AsyncRateLimiter = AsyncPostgresRateLimiter(pg)
        redis_url = redis or settings.redis
        if redis_url:
            from .security.sealing import CacheSealer
            from .tier.cache_async import AsyncCachedBackend, connect_redis

            client = await connect_redis(redis_url)
            # With a master key, cached windows are sealed too (pymem.security.sealing).
            sealer = CacheSealer(master) if master else None
            backend = AsyncCachedBackend(pg, client, sealer=sealer)
            limiter = AsyncFailoverRateLimiter(AsyncRedisRateLimiter(client), limiter)
        return cls(
            backend,
            counter=counter,
            tenant=tenant,
            limiter=limiter,
            rate_limits=rate_limits,
            pii=pii,
            metrics=metrics,
            tracing=tracing,
        )

    @classmethod
    async def embedded(
        cls,
        home: Path | str | None = None,
        *,
        counter: TokenCounter | str | None = None,
        tenant: str | None = None,
        metrics: ClientMetrics | bool = False,
        tracing: Tracing | bool = False,
    ) -> AsyncMemory:
        """Use a private PostgreSQL cluster in a local folder, created and migrated on
        first use and reused afterwards (see :mod:`pymem.db.embedded`)."""
        from .db.embedded import EmbeddedPostgres

        start = EmbeddedPostgres(home).start
        server = await asyncio.to_thread(start)  # sync: server = start()
        dsn = server.dsn()
        return await cls.connect(
            dsn, counter=counter, tenant=tenant, migrate=True, metrics=metrics, tracing=tracing
        )

    @classmethod
    def in_memory(
        cls,
        *,
        counter: TokenCounter | str | None = None,
        tenant: str | None = None,
        pii: PiiFilter | None = None,
        metrics: ClientMetrics | bool = False,
        tracing: Tracing | bool = False,
    ) -> AsyncMemory:
        """No server at all: everything lives in this process and dies with it."""
        backend = AsyncInMemoryBackend()
        return cls(
            backend, counter=counter, tenant=tenant, pii=pii, metrics=metrics, tracing=tracing
        )

    @classmethod
    def redis(
        cls,
        url: str | None = None,
        *,
        counter: TokenCounter | str | None = None,
        tenant: str | None = None,
        pii: PiiFilter | None = None,
        metrics: ClientMetrics | bool = False,
        tracing: Tracing | bool = False,
    ) -> AsyncMemory:
        """Conversations in Redis alone (``url`` or ``PYMEM_REDIS``): fast and ephemeral,
        no PostgreSQL; no job queue, personal data policies or encryption at rest."""
        from .backends.redis_async import AsyncRedisBackend

        found = url or Settings.from_env().redis
        if not found:
            raise PymemError(
                "pymem: no Redis URL given",
                hint="pass Memory.redis('redis://localhost:6379/0') or set PYMEM_REDIS",
            )
        backend = AsyncRedisBackend.from_url(found)
        return cls(
            backend, counter=counter, tenant=tenant, pii=pii, metrics=metrics, tracing=tracing
        )

    def session(
        self, session_id: str, *, tenant: str | None = None, user: str | None = None
    ) -> AsyncSession:
        """A handle on one conversation; nothing is written until the first append."""
        return AsyncSession(self, session_id, tenant=tenant or self.tenant, user=user)

    async def sessions(
        self,
        *,
        tenant: str | None = None,
        user: str | None = None,
        include_deleted: bool = False,
        page_size: int = 100,
    ) -> AsyncIterator[SessionInfo]:
        """Every session of a tenant (or of one user), fetched a page at a time."""
        after: str | None = None
        while True:
            query = SessionQuery(user, include_deleted, after, page_size)
            page = await self.backend.list_sessions(tenant or self.tenant, query)
            for info in page:
                yield info
            if len(page) < page_size:
                return
            after = page[-1].session_id

    @operation("configure_tenant")
    async def configure_tenant(
        self,
        *,
        tenant: str | None = None,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        default_ttl: timedelta | None = None,
        retention: timedelta | None = None,
    ) -> None:
        """Set a tenant's default caps, the TTL given to its new sessions, and how long
        its messages are kept (``retention``: maintenance removes older turns;
        PostgreSQL only)."""
        settings = TenantSettings(max_messages, max_tokens, default_ttl, retention)
        await self.backend.configure_tenant(tenant or self.tenant, settings)

    @operation("configure_recall")
    async def configure_recall(
        self,
        *,
        tenant: str | None = None,
        summary_every_tokens: int | None = 2000,
        embed_messages: bool = False,
    ) -> None:
        """Set a tenant's background work: digest cadence and message embeddings."""
        settings = RecallSettings(summary_every_tokens, embed_messages)
        await self.backend.configure_recall(tenant or self.tenant, settings)

    @operation("configure_pii")
    async def configure_pii(self, policy: Mapping[str, str], *, tenant: str | None = None) -> None:
        """Set the tenant's personal data policy, applied by PostgreSQL at every append.

        ``policy`` maps a kind (email, phone, card, iban, ip, national_id,
        secret, a Python classifier's kind, or ``default``) to off, redact,
        mask, block or tag; ``{}`` turns it off. PostgreSQL backends only.
        """
        name = tenant or self.tenant
        configure = getattr(self.backend, "configure_pii", None)
        if configure is None:
            raise PymemError(
                "pymem: personal data policies are kept by PostgreSQL backends only",
                hint="with this backend, give the policy in code: PiiFilter(policy=...)",
            )
        await configure(name, policy)
        if self.pii is not None:
            self.pii.forget(name)

    @operation("export_subject")
    async def export_subject(self, user: str, *, tenant: str | None = None) -> dict[str, Any]:
        """Everything held about ``user`` (sessions, messages, digests) as a JSON-ready dict."""
        return await self.backend.export_subject(tenant or self.tenant, user)

    @operation("erase_subject")
    async def erase_subject(self, user: str, *, tenant: str | None = None) -> list[tuple[str, int]]:
        """Erase every session of ``user``; returns (session id, messages removed) pairs."""
        return await self.backend.erase_subject(tenant or self.tenant, user)

    @operation("stats")
    async def stats(self, *, tenant: str | None = None) -> list[TenantStats]:
        """Totals per tenant (all tenants unless one is named)."""
        return await self.backend.stats(tenant)

    async def close(self) -> None:
        """Close the backend's pool and clients."""
        await self.backend.close()

    async def __aenter__(self) -> AsyncMemory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class AsyncSession:
    """One conversation of one tenant (and optionally one user)."""

    def __init__(
        self, memory: AsyncMemory, session_id: str, *, tenant: str, user: str | None = None
    ) -> None:
        self.memory = memory
        self.id = session_id
        self.tenant = tenant
        self.user = user

    @property
    def _backend(self) -> AsyncMemoryBackend:
        return self.memory.backend

    @operation("append")
    async def append(
        self,
        role: str,
        content: str = "",
        *,
        parts: Sequence[Part] | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        tokens: int | None = None,
        embedding: Sequence[float] | None = None,
        idempotency_key: str | None = None,
    ) -> AppendResult:
        """Store one message; its tokens are counted here unless given.

        Text is the simple path (``append("user", "hi")``). A turn of an agent
        transcript gives ``parts`` instead: tool calls, tool results, image
        and file references (:mod:`pymem.transcript`), with an optional sender
        ``name``. Pass an ``idempotency_key`` to make retries safe: a retry
        returns the original seq with ``duplicate=True`` and stores nothing.
        """
        if parts is not None and content:
            raise InvalidArgument(
                "pymem: give content or parts, not both",
                hint="put the text in a Text part, or pass content alone",
            )
        message = NewMessage(
            role,
            content,
            tokens,
            metadata,
            embedding,
            idempotency_key,
            parts=tuple(parts) if parts is not None else None,
            name=name,
        )
        (message,) = await self._prepare([message])
        result = await self._backend.append(self.tenant, self.id, message, user_id=self.user)
        record_append(self.memory.metrics, self.tenant, [message], [result])
        return result

    @operation("append_many")
    async def append_many(self, messages: Sequence[NewMessage]) -> list[AppendResult]:
        """Store a batch in order, all or nothing, in one round trip."""
        prepared = await self._prepare(messages)
        results = await self._backend.append_many(self.tenant, self.id, prepared, user_id=self.user)
        record_append(self.memory.metrics, self.tenant, prepared, results)
        return results

    async def append_messages(
        self, messages: Iterable[Any], format: str = "openai"
    ) -> list[AppendResult]:
        """Store what a model API takes and returns, in order, all or nothing:
        ``openai`` (Chat Completions messages, as dicts or the SDK's objects),
        ``openai-responses`` (input and output items) or ``anthropic`` (Messages
        API messages; the system prompt as a ``{"role": "system"}`` message).
        Tool calls and results keep their ids and arguments."""
        turns = to_turns(messages, format)
        if not turns:
            return []
        return await self.append_many([NewMessage.from_turn(t) for t in turns])

    async def _prepare(self, messages: Sequence[NewMessage]) -> list[NewMessage]:
        """Apply the client's personal data classifiers, count tokens, check rate limits."""
        if self.memory.pii is not None:
            messages = scrub_batch(self.memory.pii, await self._pii_policy(), messages)
        counted = count_tokens(self.memory.counter, messages)
        limits = self.memory.limits_for(self.tenant)
        if limits is not None and self.memory.limiter is not None:
            await enforce(self.memory.limiter, limits, self.tenant, self.id, self.user)
        return counted

    async def _pii_policy(self) -> dict[str, str]:
        pii = self.memory.pii
        assert pii is not None
        found = pii.cached_policy(self.tenant)
        if found is not None:
            return found
        reader = pii.policy_reader(self._backend)
        return pii.remember(self.tenant, await reader(self.tenant))

    @operation("history")
    async def messages(
        self, *, last: int | None = None, after_seq: int = 0, page_size: int = 500
    ) -> list[StoredMessage]:
        """The newest ``last`` messages, or every message after ``after_seq``, fetched
        ``page_size`` at a time (use :meth:`page` for one page and its cursor)."""
        if last is not None:
            return await self._backend.last_messages(self.tenant, self.id, last)
        out: list[StoredMessage] = []
        cursor: int | None = after_seq
        while cursor is not None:
            page = await self.page(after_seq=cursor, size=page_size)
            out.extend(page.messages)
            cursor = page.next_after
        return out

    @operation("history")
    async def page(self, *, after_seq: int = 0, size: int = 100) -> MessagePage:
        """One page of at most ``size`` messages after ``after_seq``, with the cursor
        (``next_after``) of the next page, None after the last one."""
        rows = await self._backend.history(
            self.tenant, self.id, after_seq=after_seq, page_size=size
        )
        return MessagePage(tuple(rows), rows[-1].seq if len(rows) == size else None)

    @operation("context", by_strategy=True)
    async def context(
        self,
        *,
        budget: int,
        query: str | None = None,
        query_embedding: Sequence[float] | None = None,
        strategy: str = "recent",
        message_overhead: int = 0,
        summary_share: float | None = None,
        recent_share: float | None = None,
        shorten_results: int | None = None,
    ) -> ContextWindow:
        """The context window for the next model call, never over ``budget`` tokens.

        ``strategy`` is ``recent`` (newest turns), ``summary`` (digests of older
        turns, then the newest) or ``hybrid`` (digests, turns relevant to
        ``query`` / ``query_embedding``, then the newest). The shares split the
        budget between digests and newest turns (see ``memory.context``).
        ``shorten_results`` (tokens): cut tool results older than the newest
        tool call to that many tokens, with a marker, before whole turns are
        dropped (off by default).
        """
        request = ContextRequest(
            budget=budget,
            strategy=strategy,
            query=query,
            query_embedding=query_embedding,
            message_overhead=message_overhead,
            summary_share=summary_share,
            recent_share=recent_share,
            shorten_results=shorten_results,
        )
        if query and tracing_active():
            await self._trace_query(query)
        window = await self._backend.context(self.tenant, self.id, request)
        record_window(self.memory.metrics, self.tenant, request, window)
        return window

    @operation("recall")
    async def recall(
        self,
        query: str,
        *,
        query_embedding: Sequence[float] | None = None,
        before_seq: int | None = None,
        max_rows: int = 20,
    ) -> list[RecalledMessage]:
        """The turns most relevant to ``query`` (and ``query_embedding``), best first."""
        request = RecallRequest(query, query_embedding, before_seq, max_rows)
        if tracing_active():
            await self._trace_query(query)
        found = await self._backend.recall(self.tenant, self.id, request)
        record_recall(found)
        return found

    async def _trace_query(self, query: str) -> None:
        """Put the query on the span, as the tenant's policy would store it (opt-in)."""
        tracing = self.memory.tracing
        if tracing is None or not tracing.record_query:
            return
        text: str | None = None
        apply = getattr(self._backend, "apply_pii_policy", None)
        if apply is not None:
            text = await apply(self.tenant, query)
        elif self.memory.pii is not None and self.memory.pii.policy is not None:
            # No policies kept here: the client's own classifiers and fixed policy.
            try:
                text, _ = self.memory.pii.scrub(query, None, self.memory.pii.policy)
            except PiiBlocked:
                text = None
        if text is not None:
            annotate({"gen_ai.memory.query.text": text})

    @operation("summaries")
    async def summaries(self) -> list[Summary]:
        """The digests written for this session so far, oldest first."""
        return await self._backend.list_summaries(self.tenant, self.id)

    @operation("session_info")
    async def info(self) -> SessionInfo:
        """Counters, caps, metadata and timestamps of this session."""
        return await self._backend.session_info(self.tenant, self.id)

    @operation("extend_session")
    async def extend(self, ttl: timedelta) -> datetime:
        """Push the session's expiry ``ttl`` further out; returns the new expiry."""
        return await self._backend.extend_session(self.tenant, self.id, ttl)

    @operation("configure_session")
    async def configure(
        self,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        summary_every_tokens: int | None = None,
    ) -> None:
        """Cap the session (oldest messages are trimmed first), set its digest cadence
        (unsummarized tokens per digest) and its metadata. None keeps the tenant's."""
        settings = SessionSettings(max_messages, max_tokens, metadata, summary_every_tokens)
        await self._backend.configure_session(self.tenant, self.id, settings)

    @operation("delete_session")
    async def delete(self) -> datetime:
        """Soft-delete: hidden from reads and appends until restored or purged."""
        return await self._backend.delete_session(self.tenant, self.id)

    @operation("restore_session")
    async def restore(self) -> None:
        """Undo :meth:`delete`."""
        await self._backend.restore_session(self.tenant, self.id)

    @operation("pop_message")
    async def pop(self) -> StoredMessage | None:
        """Remove the newest message and return it (None when there is none); its
        seq is given back, so seqs stay gap-free. For frameworks that undo a turn."""
        return await self._backend.pop_message(self.tenant, self.id)

    @operation("purge_session")
    async def purge(self) -> int:
        """Remove the session and all it stored; returns the number of messages removed."""
        return await self._backend.purge_session(self.tenant, self.id)

    def __repr__(self) -> str:
        return f"AsyncSession(tenant={self.tenant!r}, id={self.id!r}, user={self.user!r})"
