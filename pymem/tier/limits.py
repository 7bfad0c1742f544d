"""Rate limits: the values and the rule shared by every limiter (GCRA).

A limit admits a burst of ``count`` units, then one unit every
``period / count``. The limiters (:mod:`pymem.tier.ratelimit`) apply it in
Redis (one Lua script per key) or in PostgreSQL (``memory.rate_limit``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from ..backends.redis_keys import escape, tenant_tag
from ..errors import PymemError


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


GCRA = """
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


def check_limit(limit: Limit, cost: int) -> None:
    if limit.count < 1 or limit.period <= timedelta(0) or not 1 <= cost <= limit.count:
        raise PymemError(
            "pymem: a limit needs count >= 1, period > 0 and 1 <= cost <= count",
            hint="e.g. Limit(60, timedelta(minutes=1))",
        )


def limiter_key(tenant: str, key: str) -> str:
    """The Redis key of one limit: ``memory:rl:{<tenant>}:<key>``."""
    return f"memory:rl:{tenant_tag(tenant)[len('memory:') :]}:{escape(key)}"


def scopes(limits: RateLimits, session: str, user: str | None) -> list[tuple[str, str, Limit]]:
    """The (scope, key, limit) triples an append is checked against, in order."""
    found = [
        ("tenant", "tenant", limits.per_tenant),
        ("user", f"user:{user}", limits.per_user if user is not None else None),
        ("session", f"session:{session}", limits.per_session),
    ]
    return [(scope, key, limit) for scope, key, limit in found if limit is not None]


def refused(scope: str, tenant: str, key: str, limit: Limit, decision: Decision) -> RateLimited:
    return RateLimited(
        f"memory: {scope} rate limit of {limit.count} per "
        f"{limit.period.total_seconds():g}s reached for {tenant}/{key}",
        retry_after=decision.retry_after,
    )
