"""Rate limits per tenant, user and session: GCRA in Redis (Lua) or PostgreSQL (SQL).

Both limiters run the same rule: a burst of ``limit`` units, then one unit
every ``period / limit``. Each decision is one atomic step on one key (a Lua
script in Redis, a row lock in PostgreSQL), so concurrent callers are never
admitted beyond the limit.

Policy when Redis is unavailable: ``FailoverRateLimiter`` asks PostgreSQL
instead (exact, slower) and never fails open; when PostgreSQL fails too, the
error propagates and the write is refused.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import redis

from .backends.postgres import PostgresBackend
from .breaker import CircuitBreaker
from .cache import _escape
from .errors import PymemError, translate_errors

log = logging.getLogger("pymem.ratelimit")


class RateLimited(PymemError):
    """Over a rate limit; ``retry_after`` says when the next unit is admitted."""

    def __init__(self, message: str, *, retry_after: timedelta, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or f"retry in {retry_after.total_seconds():.2f}s")
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after: timedelta
    remaining: int


@dataclass(frozen=True, slots=True)
class Limit:
    """``count`` units per ``period``."""

    count: int
    period: timedelta


@dataclass(frozen=True, slots=True)
class RateLimits:
    """The limits applied to appends; None means unlimited at that scope."""

    per_tenant: Limit | None = None
    per_user: Limit | None = None
    per_session: Limit | None = None


@runtime_checkable
class RateLimiter(Protocol):
    def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision: ...


_GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local period = tonumber(ARGV[1])
local count = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local interval = period / count
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new = tat + interval * cost
if new - now > period then
  local left = math.max(math.floor((period - (tat - now)) / interval), 0)
  return {0, math.ceil(new - now - period), left}
end
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return {1, 0, math.floor((period - (new - now)) / interval)}
"""


def _check(limit: Limit, cost: int) -> None:
    if limit.count < 1 or limit.period <= timedelta(0) or not 1 <= cost <= limit.count:
        raise PymemError(
            "pymem: a limit needs count >= 1, period > 0 and 1 <= cost <= count",
            hint="e.g. Limit(60, timedelta(minutes=1))",
        )


class RedisRateLimiter:
    """GCRA in one Lua script on one key ``memory:rl:{<tenant>}:<key>``."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._script = client.register_script(_GCRA)

    def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        _check(limit, cost)
        period_us = int(limit.period.total_seconds() * 1_000_000)
        allowed, wait_us, remaining = self._script(
            keys=[f"memory:rl:{{{_escape(tenant)}}}:{_escape(key)}"],
            args=[period_us, limit.count, cost],
        )
        return Decision(bool(allowed), timedelta(microseconds=int(wait_us)), int(remaining))


class PostgresRateLimiter:
    """GCRA in ``memory.rate_limit``: a row per key, serialized by its lock."""

    def __init__(self, backend: PostgresBackend) -> None:
        self.backend = backend

    def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        _check(limit, cost)
        with self.backend.connection() as conn, translate_errors():
            row = conn.execute(
                "select r.* from set_config('pymem.tenant', %s, true) as t (tenant), "
                "memory.rate_limit(t.tenant, %s, %s, %s, %s) as r",
                (tenant, key, limit.count, limit.period, cost),
                prepare=True,
            ).fetchone()
        assert row is not None
        return Decision(bool(row[0]), row[1], int(row[2]))


class FailoverRateLimiter:
    """Redis while it answers, PostgreSQL while it does not (never fails open)."""

    def __init__(
        self, primary: RateLimiter, fallback: RateLimiter, breaker: CircuitBreaker | None = None
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker or CircuitBreaker()

    def acquire(self, tenant: str, key: str, limit: Limit, cost: int = 1) -> Decision:
        if self.breaker.allow():
            try:
                decision = self.primary.acquire(tenant, key, limit, cost)
            except (redis.RedisError, OSError) as exc:
                self.breaker.failure()
                log.warning("redis limiter unavailable, using PostgreSQL: %s", exc)
            else:
                self.breaker.success()
                return decision
        return self.fallback.acquire(tenant, key, limit, cost)


def enforce(
    limiter: RateLimiter, limits: RateLimits, tenant: str, session: str, user: str | None
) -> None:
    """Raise RateLimited when an append would pass any of the limits."""
    scopes = [
        ("tenant", "tenant", limits.per_tenant),
        ("session", f"session:{session}", limits.per_session),
    ]
    if user is not None:
        scopes.insert(1, ("user", f"user:{user}", limits.per_user))
    for scope, key, limit in scopes:
        if limit is None:
            continue
        decision = limiter.acquire(tenant, key, limit)
        if not decision.allowed:
            raise RateLimited(
                f"memory: {scope} rate limit of {limit.count} per "
                f"{limit.period.total_seconds():g}s reached for {tenant}/{key}",
                retry_after=decision.retry_after,
            )
