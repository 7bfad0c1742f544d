"""Rate limiters per tenant, user and session: GCRA in Redis (Lua) or PostgreSQL (SQL).

Each decision is one atomic step on one key (a Lua script in Redis, a row
lock in PostgreSQL), so concurrent callers are never admitted beyond the
limit (the rule and the values are in :mod:`pymem.tier.limits`).

Policy when Redis is unavailable: ``AsyncFailoverRateLimiter`` asks
PostgreSQL instead (exact, slower) and never fails open; when PostgreSQL
fails too, the error propagates and the write is refused.

:mod:`pymem.tier.ratelimit_async` is the source and
:mod:`pymem.tier.ratelimit` its generated sync twin.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import redis.asyncio as redis  # sync: import redis

from ..backends.postgres_async import AsyncPostgresBackend
from ..resilience.breaker import CircuitBreaker
from .limits import (
    GCRA,
    Decision,
    Limit,
    RateLimited,
    RateLimits,
    check_limit,
    limiter_key,
    refused,
    scopes,
)

log = logging.getLogger("pymem.ratelimit")


@runtime_checkable
class AsyncRateLimiter(Protocol):
    async def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision: ...


class AsyncRedisRateLimiter:
    """GCRA in one Lua script on one key ``memory:rl:{<tenant>}:<key>``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._script = client.register_script(GCRA)

    async def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        check_limit(limit, cost)
        period_us = int(limit.period.total_seconds() * 1_000_000)
        allowed, wait_us, remaining = await self._script(
            keys=[limiter_key(tenant, key)], args=[period_us, limit.count, cost]
        )
        return Decision(bool(allowed), timedelta(microseconds=int(wait_us)), int(remaining))


class AsyncPostgresRateLimiter:
    """GCRA in ``memory.rate_limit``: a row per key, serialized by its lock."""

    def __init__(self, backend: AsyncPostgresBackend) -> None:
        self.backend = backend

    async def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        check_limit(limit, cost)
        allowed, wait, remaining = await self.backend.rate_limit(
            tenant, key, limit.count, limit.period, cost
        )
        return Decision(allowed, wait, remaining)


class AsyncFailoverRateLimiter:
    """Redis while it answers, PostgreSQL while it does not (never fails open)."""

    def __init__(
        self,
        primary: AsyncRateLimiter,
        fallback: AsyncRateLimiter,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker or CircuitBreaker()

    async def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        if self.breaker.allow():
            try:
                decision = await self.primary.acquire(tenant, key, limit, cost)
            except (redis.RedisError, OSError) as exc:
                self.breaker.failure()
                log.warning("redis limiter unavailable, using PostgreSQL: %s", exc)
            else:
                self.breaker.success()
                return decision
        return await self.fallback.acquire(tenant, key, limit, cost)


async def enforce(
    limiter: AsyncRateLimiter, limits: RateLimits, tenant: str, session: str, user: str | None
) -> None:
    """Raise RateLimited when an append would pass any of the limits."""
    for scope, key, limit in scopes(limits, session, user):
        decision = await limiter.acquire(tenant, key, limit)
        if not decision.allowed:
            raise refused(scope, tenant, key, limit, decision)


__all__ = [
    "AsyncFailoverRateLimiter",
    "AsyncPostgresRateLimiter",
    "AsyncRateLimiter",
    "AsyncRedisRateLimiter",
    "Decision",
    "Limit",
    "RateLimited",
    "RateLimits",
    "enforce",
]
