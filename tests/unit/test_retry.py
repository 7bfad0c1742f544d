"""Retry policy, failure kinds, deadlines and the breaker, on a fake clock (RELIABILITY T13)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from pymem.backends.resilient import call_keys, own_retries, with_session_timeouts
from pymem.models import AppendResult, NewMessage
from pymem.resilience import CircuitBreaker, Failure, RetryPolicy, classify, deadline
from pymem.resilience.retry import CallClock, scoped_deadline


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _error(sqlstate: str | None, kind: type[psycopg.Error] = psycopg.OperationalError) -> Exception:
    """A driver error with this SQLSTATE, as psycopg builds them."""
    cls = psycopg.errors.lookup(sqlstate) if sqlstate else kind
    return cls("boom")


@pytest.mark.parametrize(
    ("error", "sent", "kind"),
    [
        (PoolTimeout("no connection"), False, Failure.NOT_RUN),
        (_error(None), False, Failure.NOT_RUN),  # a dead pooled connection, before sending
        (_error(None), True, Failure.UNKNOWN),  # the link broke while the statement ran
        (_error("57P01"), True, Failure.UNKNOWN),  # admin shutdown
        (_error("57P01"), False, Failure.NOT_RUN),
        (_error("08006"), True, Failure.UNKNOWN),
        (_error("57P03"), True, Failure.NOT_RUN),  # the server is starting up
        (_error("40001"), True, Failure.ROLLED_BACK),  # serialization failure
        (_error("40P01"), True, Failure.ROLLED_BACK),  # deadlock
        (_error("57014"), True, Failure.TIMEOUT),  # statement_timeout
        (_error("55P03"), True, Failure.TIMEOUT),  # lock_timeout
        (_error("22023"), True, Failure.FINAL),  # an answer: a bad value
        (_error("23505"), True, Failure.FINAL),
        (ValueError("not a driver error"), True, Failure.FINAL),
    ],
)
def test_failures_are_classified(error: Exception, sent: bool, kind: Failure) -> None:
    assert classify(error, sent=sent) is kind


def test_only_safe_failures_are_retried() -> None:
    may = RetryPolicy.may_retry
    for idempotent in (True, False):
        assert may(Failure.NOT_RUN, idempotent) and may(Failure.ROLLED_BACK, idempotent)
        assert not may(Failure.TIMEOUT, idempotent) and not may(Failure.FINAL, idempotent)
    assert may(Failure.UNKNOWN, True) and not may(Failure.UNKNOWN, False)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(first_delay=0.1, max_delay=1.0)
    top = [policy.delay(n, rand=lambda: 1.0) for n in range(1, 7)]
    assert top == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.delay(3, rand=lambda: 0.0) == 0.0
    assert policy.delay(3, rand=lambda: 0.5) == pytest.approx(0.2)  # uniform in [0, cap]
    with pytest.raises(ValueError):
        RetryPolicy(deadline=0)
    with pytest.raises(ValueError):
        RetryPolicy(first_delay=2.0, max_delay=1.0)


def test_a_call_stops_at_its_deadline_and_its_attempt_bound() -> None:
    clock = FakeClock()
    call = CallClock(RetryPolicy(deadline=1.0, first_delay=0.2, max_delay=0.2), 1.0, clock)
    waits = []
    while True:
        call.attempts += 1
        wait = call.next_delay(Failure.NOT_RUN, idempotent=False, rand=lambda: 1.0)
        if wait is None:
            break
        waits.append(wait)
        clock.now += wait + 0.05  # the attempt itself took 50 ms
    assert waits == [0.2, 0.2, 0.2, 0.2]  # the fifth wait would pass the deadline
    assert call.remaining() == pytest.approx(0.0, abs=0.06)
    bounded = CallClock(RetryPolicy(deadline=None, max_attempts=3), None, clock)
    bounded.attempts = 3
    assert bounded.next_delay(Failure.ROLLED_BACK, idempotent=True) is None
    assert bounded.remaining() is None
    at_once = CallClock(RetryPolicy(), 10.0, clock)
    at_once.attempts = 1
    assert at_once.next_delay(Failure.UNKNOWN, idempotent=True, at_once=True) == 0.0
    assert at_once.next_delay(Failure.UNKNOWN, idempotent=False, at_once=True) is None


def test_deadline_blocks_nest_and_reach_tasks() -> None:
    assert scoped_deadline(10.0) == 10.0
    with deadline(2.0):
        assert scoped_deadline(10.0) == 2.0
        with deadline(None):
            assert scoped_deadline(10.0) is None
        assert scoped_deadline(10.0) == 2.0

        async def inside() -> float | None:
            return scoped_deadline(10.0)

        assert asyncio.run(inside()) == 2.0  # tasks copy the context
    assert scoped_deadline(10.0) == 10.0
    with pytest.raises(ValueError), deadline(-1):
        pass


def test_the_breaker_rides_out_a_restart_and_opens_in_an_outage() -> None:
    clock = FakeClock()
    moves = []
    breaker = CircuitBreaker(
        failure_threshold=3,
        reset_after=timedelta(seconds=2),
        min_outage=timedelta(seconds=5),
        clock=clock,
        on_change=lambda old, new: moves.append((old, new)),
    )
    for _ in range(10):  # ten failures within a second: a restart
        breaker.failure()
        clock.now += 0.1
    assert breaker.state == "closed" and breaker.allow()
    breaker.success()
    for _ in range(2):  # failures spanning six seconds: an outage
        breaker.failure()
        clock.now += 3
    breaker.failure()
    assert breaker.state == "open" and moves == [("closed", "open")]
    clock.now += 1
    assert not breaker.allow()  # fail fast while open
    clock.now += 1.5
    assert breaker.allow()  # one probe after reset_after
    assert not breaker.allow()  # and only one
    breaker.failure()
    assert breaker.state == "open"
    clock.now += 2.5
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert moves[-2:] == [("open", "half_open"), ("half_open", "closed")]


def test_every_append_gets_a_key_and_own_retries_are_not_duplicates() -> None:
    given = NewMessage("user", "a", idempotency_key="k-1")
    keys = call_keys([NewMessage("user", "b"), given, NewMessage("user", "c")])
    assert keys[1] is None  # the caller's own key is used as it is
    made = [k for k in keys if k is not None]
    assert len(made) == 2 and len(set(made)) == 2 and all(k.startswith("pymem:") for k in made)
    when = __import__("datetime").datetime(2026, 1, 1)
    stored = [AppendResult(1, when, True), AppendResult(2, when, True), AppendResult(3, when)]
    assert [r.duplicate for r in own_retries(stored, keys)] == [False, True, False]


def test_session_timeouts_join_the_options_already_there() -> None:
    dsn = with_session_timeouts("host=db dbname=app options='-c pymem.master_key=x'", 2.5)
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    assert info["options"] == (
        "-c pymem.master_key=x -c statement_timeout=2500 -c lock_timeout=2500"
    )
    assert info["connect_timeout"] == "3"
    unbounded = psycopg.conninfo.conninfo_to_dict(with_session_timeouts("dbname=app", None))
    assert unbounded["options"] == "-c statement_timeout=0 -c lock_timeout=0"
    assert "connect_timeout" not in unbounded


def test_the_database_breaker_moves_are_events() -> None:
    from pymem.backends.postgres import PostgresBackend

    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=timedelta(seconds=1), clock=clock)
    backend = PostgresBackend("dbname=nowhere", breaker=breaker)  # no I/O until open()
    heard: list[tuple[str, dict[str, object]]] = []
    backend.events.subscribers.append(lambda name, details: heard.append((name, dict(details))))
    backend.events.subscribers.append(lambda name, details: 1 / 0)  # a broken one is logged
    breaker.failure()
    clock.now += 2
    assert breaker.allow()
    breaker.success()
    assert heard == [
        ("degraded", {"previous": "closed"}),
        ("recovered", {"previous": "half_open"}),
    ]


def test_an_inconclusive_probe_lets_the_next_caller_probe() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=timedelta(seconds=1), clock=clock)
    breaker.failure()
    clock.now += 2
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # others wait for it
    breaker.inconclusive()  # it was cancelled, or met a connection already dead
    assert breaker.allow()  # so the next caller probes instead of everyone waiting forever
    breaker.inconclusive()
    breaker.success()
    assert breaker.state == "closed"
    breaker.inconclusive()  # closed: nothing to let go
    assert breaker.state == "closed" and breaker.allow()


def test_a_cancelled_probe_does_not_leave_the_database_breaker_stuck() -> None:
    from pymem.backends.postgres_async import AsyncPostgresBackend
    from pymem.models import NewMessage

    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=timedelta(seconds=1), clock=clock)
    backend = AsyncPostgresBackend("host=127.0.0.1 port=9 dbname=nowhere", breaker=breaker)
    breaker.failure()
    clock.now += 2

    async def cancelled_probe() -> None:
        await backend._pool.open(wait=False)
        task = asyncio.create_task(backend.append("t", "s", NewMessage("user", "x", tokens=1)))
        await asyncio.sleep(0.05)  # the probe is waiting for a connection
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await backend._pool.close()

    asyncio.run(cancelled_probe())
    assert breaker.allow()  # a new probe may go
