"""Network faults between pymem and its servers (RELIABILITY T4).

A fault proxy (tests/faultproxy.py, Toxiproxy's vocabulary) sits between the
client and PostgreSQL, or Redis. The key case: the connection is reset while
the reply to an append's COMMIT is in flight; the append is retried and
stored exactly once. Every call ends within its deadline, whatever the
network does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

import pymem.backends.postgres as postgres_module
from pymem import DeadlineExceeded, Memory, deadline
from pymem.backends.postgres import PostgresBackend
from pymem.models import NewMessage
from pymem.resilience import RetryPolicy
from pymem.resilience.watchdog import GRACE
from pymem.tier.cache import CachedBackend, connect_redis

from ..faultproxy import FaultProxy
from ..redis_servers import RedisServer

SLACK = 0.3  # scheduling on a loaded two-core machine


@pytest.fixture
def proxy(dsn: str) -> Iterator[FaultProxy]:
    found = FaultProxy.in_front_of(dsn)
    yield found
    found.stop()


@contextmanager
def _backend(url: str, **kwargs: object) -> Iterator[PostgresBackend]:
    backend = PostgresBackend(url, **kwargs).open()  # type: ignore[arg-type]
    try:
        yield backend
    finally:
        backend.close()


def _stored(dsn: str, content: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from memory.messages where content = %s", (content,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_reply_lost_after_commit_is_retried_and_stored_once(dsn: str, proxy: FaultProxy) -> None:
    with _backend(proxy.route(dsn), max_size=1) as backend:
        backend.append("acme", "s", NewMessage("user", "warm up", tokens=1))
        # The next bytes from the server are the append's reply, sent after
        # its COMMIT: reset the connection instead of delivering them.
        proxy.add("lose-reply", "reset_peer", "downstream", times=1)
        result = backend.append("acme", "s", NewMessage("user", "the answer", tokens=1))
        assert not result.duplicate and result.seq == 2
        assert backend.database_stats.retries["unknown"] == 1
    assert _stored(dsn, "the answer") == 1
    with psycopg.connect(dsn) as conn:
        seqs = conn.execute("select seq from memory.messages order by seq").fetchall()
    assert seqs == [(1,), (2,)]


def test_control_without_made_keys_the_same_fault_stores_twice(
    dsn: str, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checker above can see a double write: without the key the client
    makes, the retried append is stored again."""
    monkeypatch.setattr(postgres_module, "call_keys", lambda messages: [None] * len(messages))
    with _backend(proxy.route(dsn), max_size=1) as backend:
        backend.append("acme", "s", NewMessage("user", "warm up", tokens=1))
        proxy.add("lose-reply", "reset_peer", "downstream", times=1)
        backend.append("acme", "s", NewMessage("user", "the answer", tokens=1))
    assert _stored(dsn, "the answer") == 2


def test_a_black_hole_ends_within_the_deadline_then_recovers(dsn: str, proxy: FaultProxy) -> None:
    with Memory.connect(proxy.route(dsn), max_size=2, deadline=1.0) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "before", tokens=1)
        proxy.add("black-hole", "timeout", "upstream", timeout=0)
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded) as caught:
            chat.append("user", "into the void", tokens=1)
        took = time.monotonic() - started
        assert took < 1.0 + GRACE + SLACK, took
        assert caught.value.attempts >= 1 and caught.value.__cause__ is not None
        proxy.remove("black-hole")
        chat.append("user", "after", tokens=1)
    assert _stored(dsn, "into the void") <= 1  # the server may never have seen it
    assert _stored(dsn, "after") == 1


def test_latency_past_the_deadline_ends_every_call_in_time(dsn: str, proxy: FaultProxy) -> None:
    with Memory.connect(proxy.route(dsn), max_size=2) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "fast", tokens=1)
        proxy.add("slow", "latency", "downstream", latency=400)
        for budget in (0.2, 0.6, 1.5):
            started = time.monotonic()
            try:
                with deadline(budget):
                    chat.context(budget=100)
            except DeadlineExceeded:
                pass
            took = time.monotonic() - started
            assert took < budget + GRACE + SLACK, (budget, took)
        proxy.remove("slow")
        assert [i.content for i in chat.context(budget=100).items] == ["fast"]


def test_sliced_and_cut_streams_store_each_append_once(dsn: str, proxy: FaultProxy) -> None:
    with _backend(proxy.route(dsn), max_size=1) as backend:
        proxy.add("slices", "slicer", "downstream", average_size=7, size_variation=5, delay=50)
        for i in range(5):
            backend.append("acme", "s", NewMessage("user", f"sliced {i}", tokens=1))
        proxy.remove("slices")
        # The connection is closed after a few bytes of the next reply.
        proxy.add("cut", "limit_data", "downstream", times=1, bytes=3)
        result = backend.append("acme", "s", NewMessage("user", "cut short", tokens=1))
        assert result.seq == 6 and not result.duplicate
    assert _stored(dsn, "cut short") == 1
    assert [_stored(dsn, f"sliced {i}") for i in range(5)] == [1] * 5


def test_postgres_down_then_up_through_the_proxy(dsn: str, proxy: FaultProxy) -> None:
    policy = RetryPolicy(deadline=3.0)
    with _backend(proxy.route(dsn), max_size=2, retry=policy) as backend:
        backend.append("acme", "s", NewMessage("user", "one", tokens=1))
        proxy.enabled = False
        started = time.monotonic()
        with pytest.raises(DeadlineExceeded):
            backend.append("acme", "s", NewMessage("user", "two", tokens=1))
        assert time.monotonic() - started < 3.0 + GRACE + SLACK
        proxy.enabled = True
        backend.append("acme", "s", NewMessage("user", "three", tokens=1))
    assert _stored(dsn, "two") == 0 and _stored(dsn, "three") == 1


def test_redis_behind_a_failing_proxy_falls_back_to_postgres(
    dsn: str, redis_server: RedisServer
) -> None:
    redis_proxy = FaultProxy(("127.0.0.1", redis_server.port), "redis")
    try:
        client = connect_redis(f"redis://127.0.0.1:{redis_proxy.port}/0")
        with _backend(dsn) as pg:
            tier = CachedBackend(pg, client)
            tier.append("acme", "s", NewMessage("user", "hello", tokens=1))
            from pymem.models import ContextRequest

            request = ContextRequest(budget=100)
            assert tier.context("acme", "s", request).items  # fills the cache
            redis_proxy.add("stall", "timeout", "downstream", timeout=0)
            for _ in range(5):
                started = time.monotonic()
                window = tier.context("acme", "s", request)
                assert [i.content for i in window.items] == ["hello"]
                assert time.monotonic() - started < 1.0  # Redis' own 250 ms timeout
            assert tier.breaker.state != "closed"  # PostgreSQL serves meanwhile
            redis_proxy.reset()
    finally:
        redis_proxy.stop()


def test_retries_and_the_breaker_are_exported(dsn: str, proxy: FaultProxy) -> None:
    from prometheus_client import CollectorRegistry

    from pymem.telemetry.metrics import ClientMetrics

    registry = CollectorRegistry()
    with Memory.connect(proxy.route(dsn), max_size=1, metrics=ClientMetrics(registry)) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "warm up", tokens=1)
        proxy.add("lose-reply", "reset_peer", "downstream", times=1)
        chat.append("user", "retried", tokens=1)

        def value(name: str, **labels: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        assert value("pymem_db_retries_total", failure="unknown") == 1
        assert value("pymem_db_breaker_state", state="closed") == 1
        assert value("pymem_db_fast_failed_total") == 0
