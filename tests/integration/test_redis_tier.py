"""The Redis tier against real servers: hits, read-your-writes, faults, limits, cluster."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest
import redis

from pymem import Memory, NewMessage
from pymem.backends.postgres import PostgresBackend
from pymem.models import ContextRequest, TenantSettings
from pymem.resilience.breaker import CircuitBreaker
from pymem.tier.cache import CachedBackend, connect_redis, session_key
from pymem.tier.ratelimit import (
    FailoverRateLimiter,
    Limit,
    PostgresRateLimiter,
    RateLimited,
    RateLimits,
    RedisRateLimiter,
)

from ..redis_servers import RedisCluster, RedisServer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def tier(dsn: str, redis_url: str) -> Iterator[CachedBackend]:
    cached = CachedBackend(PostgresBackend(dsn, max_size=4).open(), connect_redis(redis_url))
    yield cached
    cached.close()


def _fill(backend: CachedBackend | PostgresBackend, n: int, session: str = "s") -> None:
    backend.append_many(
        "acme",
        session,
        [NewMessage("user", f"message number {i} " * 10, tokens=30) for i in range(n)],
    )


def test_second_read_is_a_hit_and_equal(tier: CachedBackend) -> None:
    _fill(tier, 50)
    first = tier.context("acme", "s", ContextRequest(budget=600))
    second = tier.context("acme", "s", ContextRequest(budget=600))
    assert second == first
    assert (tier.cache_stats.misses, tier.cache_stats.hits) == (1, 1)
    assert tier.history("acme", "s", page_size=10) == tier.history("acme", "s", page_size=10)
    assert tier.cache_stats.hits == 2
    assert tier.cache_stats.compression_ratio > 2, "windows of repetitive text compress"


def test_reads_see_their_own_writes(tier: CachedBackend) -> None:
    _fill(tier, 5)
    before = tier.context("acme", "s", ContextRequest(budget=1000))
    tier.append("acme", "s", NewMessage("assistant", "fresh", tokens=1))
    after = tier.context("acme", "s", ContextRequest(budget=1000))
    assert after.items[-1].content == "fresh" and len(after) == len(before) + 1
    tier.delete_session("acme", "s")
    with pytest.raises(Exception, match="deleted"):
        tier.context("acme", "s", ContextRequest(budget=1000))


def test_keys_are_hash_tagged_per_session_and_expire(tier: CachedBackend, redis_url: str) -> None:
    _fill(tier, 3, session="we{ird}:id")
    tier.context("acme", "we{ird}:id", ContextRequest(budget=100))
    client = redis.Redis.from_url(redis_url)
    (key,) = client.keys("memory:*")
    assert (
        key.decode() == session_key("acme", "we{ird}:id") == "memory:{acme:we%7Bird%7D%3Aid}:cache"
    )
    assert 0 < client.pttl(key) <= 3_600_000


def test_a_fill_racing_a_write_is_dropped(tier: CachedBackend, redis_url: str) -> None:
    """A window computed before a write must not be stored after it."""
    _fill(tier, 3)
    key = session_key("acme", "s")
    client = redis.Redis.from_url(redis_url)
    gen_seen = client.hget(key, "gen") or b""
    tier.append("acme", "s", NewMessage("user", "the write in between", tokens=1))  # bumps gen
    stored = tier._fill(keys=[key], args=[gen_seen.decode(), "stale", "jold", 60000, 64])
    assert stored == 0 and client.hget(key, "stale") is None


def test_redis_killed_mid_run_loses_nothing(
    dsn: str, redis_server: RedisServer, redis_url: str
) -> None:
    clock = Clock()
    events: list[str] = []
    breaker = CircuitBreaker(failure_threshold=1, reset_after=timedelta(seconds=5), clock=clock)
    tier = CachedBackend(
        PostgresBackend(dsn, max_size=4).open(),
        connect_redis(redis_url, timeout=0.2),
        breaker=breaker,
    )
    tier.events.subscribers.append(lambda name, _: events.append(name))
    try:
        for i in range(20):
            tier.append("acme", "s", NewMessage("user", f"before {i}", tokens=1))
        assert len(tier.context("acme", "s", ContextRequest(budget=1000))) == 20
        redis_server.kill()
        for i in range(20):  # writes keep landing in PostgreSQL
            tier.append("acme", "s", NewMessage("user", f"during {i}", tokens=1))
        window = tier.context("acme", "s", ContextRequest(budget=1000))
        assert len(window) == 40 and window.items[-1].content == "during 19"
        assert events == ["degraded"] and breaker.state == "open"
        redis_server.start()  # back, empty
        clock.now += 6
        for i in range(5):
            tier.append("acme", "s", NewMessage("user", f"after {i}", tokens=1))
        assert len(tier.context("acme", "s", ContextRequest(budget=1000))) == 45
        assert len(tier.context("acme", "s", ContextRequest(budget=1000))) == 45
        assert events == ["degraded", "recovered"] and tier.cache_stats.hits >= 1
    finally:
        tier.close()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select count(*) from memory.messages").fetchone() == (45,)


def test_stale_window_is_never_served_after_a_missed_invalidation(dsn: str, redis_url: str) -> None:
    """Redis stalls (CLIENT PAUSE) during a write: the old window must not come back."""
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=timedelta(seconds=1), clock=clock)
    tier = CachedBackend(
        PostgresBackend(dsn, max_size=4).open(),
        connect_redis(redis_url, timeout=0.2),
        breaker=breaker,
    )
    admin = redis.Redis.from_url(redis_url)
    try:
        tier.append("acme", "s", NewMessage("user", "old", tokens=1))
        assert [i.content for i in tier.context("acme", "s", ContextRequest(budget=100))] == ["old"]
        admin.execute_command("CLIENT", "PAUSE", "600", "WRITE")
        tier.append("acme", "s", NewMessage("user", "new", tokens=1))  # invalidation times out
        assert breaker.state == "open"
        time.sleep(0.7)  # the pause ends; the cached ["old"] window is still in Redis
        clock.now += 2
        assert [i.content for i in tier.context("acme", "s", ContextRequest(budget=100))] == [
            "old",
            "new",
        ]
    finally:
        tier.close()


def _admitted(limiter: object, threads: int, attempts: int, limit: Limit) -> int:
    start = threading.Barrier(threads)

    def hammer(_: int) -> int:
        start.wait()
        return sum(
            limiter.acquire("acme", "k", limit).allowed  # type: ignore[attr-defined]
            for _ in range(attempts)
        )

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(hammer, range(threads)))


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_limits_are_exact_under_concurrency(kind: str, dsn: str, redis_url: str) -> None:
    limit = Limit(37, timedelta(hours=1))  # no refill during the test
    if kind == "redis":
        limiter: object = RedisRateLimiter(connect_redis(redis_url))
    else:
        limiter = PostgresRateLimiter(PostgresBackend(dsn, max_size=8).open())
    assert _admitted(limiter, 16, 10, limit) == 37
    decision = limiter.acquire("acme", "k", limit)  # type: ignore[attr-defined]
    assert not decision.allowed and decision.retry_after > timedelta(seconds=90)
    assert limiter.acquire("acme", "other", limit).allowed  # type: ignore[attr-defined]


def test_limits_refill_over_time(redis_url: str) -> None:
    limiter = RedisRateLimiter(connect_redis(redis_url))
    limit = Limit(5, timedelta(milliseconds=500))
    assert [limiter.acquire("acme", "k", limit).allowed for _ in range(6)] == [True] * 5 + [False]
    time.sleep(0.15)  # one unit back every 100 ms
    assert limiter.acquire("acme", "k", limit).allowed


def test_failover_limiter_counts_in_postgres_while_redis_is_down(
    dsn: str, redis_server: RedisServer, redis_url: str
) -> None:
    pg = PostgresBackend(dsn, max_size=2).open()
    limiter = FailoverRateLimiter(
        RedisRateLimiter(connect_redis(redis_url, timeout=0.2)), PostgresRateLimiter(pg)
    )
    limit = Limit(3, timedelta(hours=1))
    redis_server.kill()
    try:
        assert [limiter.acquire("acme", "k", limit).allowed for _ in range(4)] == [
            True,
            True,
            True,
            False,
        ], "fails over to PostgreSQL, never open"
    finally:
        redis_server.start()
        pg.close()


def test_memory_enforces_tenant_user_and_session_limits(dsn: str, redis_url: str) -> None:
    limits = RateLimits(
        per_user=Limit(3, timedelta(hours=1)), per_session=Limit(100, timedelta(hours=1))
    )
    with Memory.connect(dsn, redis=redis_url, rate_limits={"acme": limits}) as mem:
        chat = mem.session("s", tenant="acme", user="u")
        for i in range(3):
            chat.append("user", f"hi {i}")
        with pytest.raises(RateLimited) as caught:
            chat.append("user", "one too many")
        assert caught.value.retry_after > timedelta(0)
        assert len(chat.messages()) == 3, "a refused append writes nothing"
        mem.session("s2", tenant="other", user="u").append("user", "other tenants: no limit")


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    nodes = RedisCluster().start()
    yield nodes
    nodes.stop()


def test_tier_and_limits_on_a_three_master_cluster(dsn: str, cluster: RedisCluster) -> None:
    client = connect_redis(cluster.url)
    assert isinstance(client, redis.cluster.RedisCluster)
    tier = CachedBackend(PostgresBackend(dsn, max_size=4).open(), client)
    try:
        sessions = [f"s{i}" for i in range(30)]  # spread over the cluster's slots
        slots = {client.keyslot(session_key("acme", s)) for s in sessions}
        owners = {client.get_node_from_key(session_key("acme", s)).port for s in sessions}
        assert len(slots) == 30 and len(owners) == 3
        for s in sessions:
            tier.append("acme", s, NewMessage("user", f"hello {s}", tokens=2))
            assert (
                tier.context("acme", s, ContextRequest(budget=10)).items[0].content == f"hello {s}"
            )
            assert (
                tier.context("acme", s, ContextRequest(budget=10)).items[0].content == f"hello {s}"
            )
            tier.append("acme", s, NewMessage("assistant", "reply", tokens=1))
            assert [i.content for i in tier.context("acme", s, ContextRequest(budget=10))] == [
                f"hello {s}",
                "reply",
            ]
        assert tier.cache_stats.hits == 30 and tier.cache_stats.errors == 0
        limiter = RedisRateLimiter(client)
        assert _admitted(limiter, 8, 10, Limit(25, timedelta(hours=1))) == 25
    finally:
        tier.close()


def test_standalone_backend_expires_sessions_and_orders_writers(redis_url: str) -> None:
    from pymem.backends.redis import RedisBackend

    backend = RedisBackend.from_url(redis_url)
    try:
        backend.configure_tenant("acme", TenantSettings(default_ttl=timedelta(minutes=5)))
        backend.append("acme", "short", NewMessage("user", "soon gone", tokens=2))
        client = redis.Redis.from_url(redis_url)
        ttls = [client.pttl(k) for k in client.keys("memory:{acme:short}:*")]
        assert ttls and all(0 < t <= 300_000 for t in ttls)

        def writer(w: int) -> list[int]:
            return [
                backend.append("acme", "hot", NewMessage("user", f"w{w}-{i}", tokens=1)).seq
                for i in range(100)
            ]

        with ThreadPoolExecutor(8) as pool:
            seqs = sorted(s for chunk in pool.map(writer, range(8)) for s in chunk)
        assert seqs == list(range(1, 801))
        assert [m.seq for m in backend.history("acme", "hot", after_seq=790)] == list(
            range(791, 801)
        )
    finally:
        backend.close()
