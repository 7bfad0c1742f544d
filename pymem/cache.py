"""The Redis cache tier: PostgreSQL stays the source of truth.

``CachedBackend`` wraps a :class:`PostgresBackend`. Reads that build a window
(context, history pages, the newest messages) are cached per session in one
Redis hash, ``memory:{<tenant>:<session>}:cache``: the hash tag keeps every
key of a session in one cluster slot, so each script touches one key.

- A read is one ``HMGET`` of the session's generation and the entry.
- A miss is computed by PostgreSQL and stored by a script only if the
  generation is still the one read (a concurrent write wins: no stale fill).
- A write to PostgreSQL is followed, before it returns, by a script that
  bumps the generation and drops the entries (read-your-writes).
- Redis errors or slowness open a circuit breaker: reads and writes go to
  PostgreSQL alone, sessions written meanwhile are remembered and
  invalidated first when Redis answers again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import redis

from .backends.postgres import PostgresBackend
from .breaker import CircuitBreaker, State
from .cache_crypto import CacheSealer
from .models import (
    AppendResult,
    ContextItem,
    ContextWindow,
    NewMessage,
    RecalledMessage,
    SessionInfo,
    StoredMessage,
    Summary,
    TenantStats,
)

log = logging.getLogger("pymem.cache")
T = TypeVar("T")

_FILL = """
local gen = redis.call('HGET', KEYS[1], 'gen') or ''
if gen ~= ARGV[1] then return 0 end
if gen == '' then redis.call('HSET', KEYS[1], 'gen', '0') end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

_INVALIDATE = """
redis.call('HINCRBY', KEYS[1], 'gen', 1)
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if f ~= 'gen' then redis.call('HDEL', KEYS[1], f) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


def _escape(part: str) -> str:
    """Identifiers may hold ':', '{' or '}'; escape them so keys and hash tags stay exact."""
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def session_key(tenant: str, session: str) -> str:
    """The Redis key holding a session's cached windows (hash-tagged by session)."""
    return f"memory:{{{_escape(tenant)}:{_escape(session)}}}:cache"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    errors: int = 0
    invalidations: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0

    @property
    def compression_ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 1.0


@dataclass
class CacheEvents:
    """Subscribers to the tier's state: ``degraded`` and ``recovered``."""

    subscribers: list[Callable[[str, Mapping[str, Any]], None]] = field(default_factory=list)

    def emit(self, name: str, **details: Any) -> None:
        for subscriber in list(self.subscribers):
            try:
                subscriber(name, details)
            except Exception:  # a broken subscriber must not break the data path
                log.exception("cache event subscriber failed")


class _Skip(Exception):
    """Redis is unavailable for this call: use PostgreSQL alone."""


def _encode(payload: Any, compress_over: int) -> tuple[bytes, int]:
    raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
    if len(raw) > compress_over:
        return b"z" + zlib.compress(raw, 6), len(raw)
    return b"j" + raw, len(raw)


def _decode(blob: bytes) -> Any:
    body = zlib.decompress(blob[1:]) if blob[:1] == b"z" else blob[1:]
    return json.loads(body)


def _window_payload(w: ContextWindow) -> Any:
    return [w.budget, w.strategy, w.message_overhead, [list(i) for i in w.items]]


def _window_from(p: Any) -> ContextWindow:
    return ContextWindow(
        items=tuple(ContextItem(*i) for i in p[3]),
        budget=p[0],
        strategy=p[1],
        message_overhead=p[2],
    )


def _messages_payload(ms: Sequence[StoredMessage]) -> Any:
    return [
        [
            m.seq,
            m.role,
            m.content,
            m.tokens,
            m.tokens_estimated,
            m.metadata,
            m.created_at.isoformat(),
        ]
        for m in ms
    ]


def _messages_from(p: Any) -> list[StoredMessage]:
    return [
        StoredMessage(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6])) for r in p
    ]


class CachedBackend:
    """PostgreSQL behind a Redis cache of built windows, with graceful degradation."""

    def __init__(
        self,
        backend: PostgresBackend,
        client: redis.Redis | redis.cluster.RedisCluster,
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
        self.events = CacheEvents()
        self.breaker = breaker or CircuitBreaker(on_change=self._breaker_moved)
        if breaker is not None and breaker.on_change is None:
            breaker.on_change = self._breaker_moved
        self._fill = client.register_script(_FILL)
        self._invalidate = client.register_script(_INVALIDATE)
        self._dirty: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------

    def _breaker_moved(self, old: State, new: State) -> None:
        if new == "open":
            self.events.emit("degraded", previous=old)
        elif new == "closed":
            self.events.emit("recovered", previous=old)

    def _redis(self, call: Callable[[], T]) -> T:
        if not self.breaker.allow():
            self.cache_stats.bypassed += 1
            raise _Skip
        try:
            result = call()
        except (redis.RedisError, OSError) as exc:
            self.cache_stats.errors += 1
            self.breaker.failure()
            log.warning("redis unavailable, using PostgreSQL alone: %s", exc)
            raise _Skip from exc
        self.breaker.success()
        return result

    def _replay_dirty(self) -> bool:
        """Invalidate sessions written while Redis was unreachable; False if still down."""
        with self._lock:
            dirty = list(self._dirty)
        for tenant, session in dirty:
            key = session_key(tenant, session)

            def bump(key: str = key) -> Any:
                return self._invalidate(keys=[key], args=[self.ttl_ms])

            try:
                self._redis(bump)
            except _Skip:
                return False
            with self._lock:
                self._dirty.discard((tenant, session))
        return True

    def _cached(
        self,
        tenant: str,
        session: str,
        op: str,
        params: Sequence[Any],
        load: Callable[[], T],
        dump: Callable[[T], Any],
        restore: Callable[[Any], T],
    ) -> T:
        if self._dirty and not self._replay_dirty():
            return load()
        key = session_key(tenant, session)
        entry = hashlib.sha1(json.dumps([op, *params], default=str).encode()).hexdigest()[:20]
        try:
            gen, blob = self._redis(lambda: self.client.hmget(key, ["gen", entry]))
        except _Skip:
            return load()
        context = f"{key}/{entry}".encode()
        if blob is not None:
            raw = blob if isinstance(blob, bytes) else blob.encode()
            opened = raw if self.sealer is None else self.sealer.open(raw, context)
            if opened is not None:
                self.cache_stats.hits += 1
                return restore(_decode(opened))
        self.cache_stats.misses += 1
        value = load()
        stored, raw_size = _encode(dump(value), self.compress_over)
        if self.sealer is not None:
            stored = self.sealer.seal(stored, context)
        try:
            seen = gen.decode() if isinstance(gen, bytes) else (gen or "")
            if self._redis(
                lambda: self._fill(
                    keys=[key], args=[seen, entry, stored, self.ttl_ms, self.max_entries]
                )
            ):
                self.cache_stats.raw_bytes += raw_size
                self.cache_stats.stored_bytes += len(stored)
        except _Skip:
            pass
        return value

    def invalidate(self, tenant: str, session: str) -> None:
        """Drop a session's cached windows (after every write to it)."""
        self.cache_stats.invalidations += 1
        try:
            self._redis(
                lambda: self._invalidate(keys=[session_key(tenant, session)], args=[self.ttl_ms])
            )
        except _Skip:
            with self._lock:
                self._dirty.add((tenant, session))

    def _written(self, tenant: str, session: str, result: T) -> T:
        self.invalidate(tenant, session)
        return result

    # -- writes: PostgreSQL first, then the cache -----------------------------------

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
        result = self.backend.append(
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
        return self._written(tenant, session, result)

    def append_many(
        self,
        tenant: str,
        session: str,
        messages: Sequence[NewMessage],
        *,
        user_id: str | None = None,
    ) -> list[AppendResult]:
        return self._written(
            tenant, session, self.backend.append_many(tenant, session, messages, user_id=user_id)
        )

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
        self.backend.configure_session(
            tenant,
            session,
            max_messages=max_messages,
            max_tokens=max_tokens,
            metadata=metadata,
            summary_every_tokens=summary_every_tokens,
        )
        self.invalidate(tenant, session)

    def delete_session(self, tenant: str, session: str) -> datetime:
        return self._written(tenant, session, self.backend.delete_session(tenant, session))

    def restore_session(self, tenant: str, session: str) -> None:
        self.backend.restore_session(tenant, session)
        self.invalidate(tenant, session)

    def purge_session(self, tenant: str, session: str) -> int:
        return self._written(tenant, session, self.backend.purge_session(tenant, session))

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
        return self._written(
            tenant,
            session,
            self.backend.add_summary(
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

    def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        return self.backend.extend_session(tenant, session, ttl)

    def configure_tenant(
        self,
        tenant: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        default_ttl: timedelta | None = None,
    ) -> None:
        self.backend.configure_tenant(
            tenant, max_messages=max_messages, max_tokens=max_tokens, default_ttl=default_ttl
        )

    def configure_recall(
        self, tenant: str, *, summary_every_tokens: int | None = 2000, embed_messages: bool = False
    ) -> None:
        self.backend.configure_recall(
            tenant, summary_every_tokens=summary_every_tokens, embed_messages=embed_messages
        )

    def configure_pii(self, tenant: str, policy: Mapping[str, str]) -> None:
        self.backend.configure_pii(tenant, policy)

    def pii_policy(self, tenant: str) -> dict[str, str]:
        return self.backend.pii_policy(tenant)

    # -- reads: from the cache when it can ------------------------------------------

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
        def load() -> ContextWindow:
            return self.backend.context(
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

        params = [
            budget,
            query,
            list(query_embedding) if query_embedding else None,
            strategy,
            message_overhead,
            summary_share,
            recent_share,
        ]
        return self._cached(tenant, session, "context", params, load, _window_payload, _window_from)

    def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        return self._cached(
            tenant,
            session,
            "history",
            [after_seq, page_size],
            lambda: self.backend.history(tenant, session, after_seq=after_seq, page_size=page_size),
            _messages_payload,
            _messages_from,
        )

    def last_messages(self, tenant: str, session: str, count: int = 50) -> list[StoredMessage]:
        return self._cached(
            tenant,
            session,
            "last",
            [count],
            lambda: self.backend.last_messages(tenant, session, count),
            _messages_payload,
            _messages_from,
        )

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
        return self.backend.recall(
            tenant,
            session,
            query,
            query_embedding=query_embedding,
            before_seq=before_seq,
            max_rows=max_rows,
        )

    def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        return self.backend.list_summaries(tenant, session)

    def session_info(self, tenant: str, session: str) -> SessionInfo:
        return self.backend.session_info(tenant, session)

    def list_sessions(
        self,
        tenant: str,
        *,
        owner: str | None = None,
        include_deleted: bool = False,
        after_session: str | None = None,
        page_size: int = 100,
    ) -> list[SessionInfo]:
        return self.backend.list_sessions(
            tenant,
            owner=owner,
            include_deleted=include_deleted,
            after_session=after_session,
            page_size=page_size,
        )

    def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        return self.backend.export_subject(tenant, user_id)

    def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        erased = self.backend.erase_subject(tenant, user_id)
        for session, _ in erased:
            self.invalidate(tenant, session)
        return erased

    def stats(self, tenant: str | None = None) -> list[TenantStats]:
        return self.backend.stats(tenant)

    def close(self) -> None:
        self.backend.close()
        self.client.close()


def connect_redis(url: str, *, timeout: float = 0.25) -> Any:
    """A client for ``url``: Redis Cluster when the server says it is one."""
    plain = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        info = plain.info("cluster")
    except redis.RedisError:
        return plain  # unreachable now: the breaker handles it, the cluster check can wait
    if info.get("cluster_enabled"):
        plain.close()
        return redis.cluster.RedisCluster.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    return plain
