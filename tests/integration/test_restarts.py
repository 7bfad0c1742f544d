"""PostgreSQL restarted, killed and down while writers append (RELIABILITY T3, T13).

Each test runs against a private cluster (fsync and synchronous_commit on),
restarts or kills it under four writers, and checks what the writers were
told against what is stored: every acknowledged append present exactly
once, the session's seqs gap-free, and every call returned or raised within
its deadline. The recovery times are printed (`-s`) and published in
benchmarks/README.md. A control with synchronous_commit off shows that the
checker sees lost acknowledgements when there are some.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from pymem import AsyncMemory, DatabaseCircuitOpen, Memory, PymemError
from pymem.db.embedded import EmbeddedPostgres
from pymem.resilience.watchdog import GRACE

DEADLINE = 10.0
SLACK = 0.5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres.temporary("pymem-restart-", tcp=True) as server:
        yield server


@dataclass
class Tally:
    """What the writers were told."""

    acked: list[tuple[str, int]] = field(default_factory=list)  # (content, seq)
    errors: list[tuple[str, float, int]] = field(default_factory=list)  # (type, seconds, attempts)
    slowest: float = 0.0
    first_ok_after: dict[float, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ok(self, content: str, seq: int, took: float) -> None:
        with self.lock:
            self.acked.append((content, seq))
            self.slowest = max(self.slowest, took)

    def failed(self, exc: PymemError, took: float) -> None:
        with self.lock:
            self.errors.append((type(exc).__name__, took, exc.attempts))
            self.slowest = max(self.slowest, took)


def _write(mem: Memory, tally: Tally, stop: threading.Event, writer: int, pause: float) -> None:
    chat = mem.session("shared", tenant="acme")
    i = 0
    while not stop.is_set():
        content = f"w{writer}-{i}"
        started = time.monotonic()
        try:
            result = chat.append("user", content, tokens=1)
        except PymemError as exc:
            tally.failed(exc, time.monotonic() - started)
        else:
            tally.ok(content, result.seq, time.monotonic() - started)
        i += 1
        time.sleep(pause)


def _run(
    server: EmbeddedPostgres, fault: Callable[[], None], *, pause: float = 0.002
) -> tuple[Tally, float]:
    """Four writers for a moment, then ``fault``, then a moment more; returns the
    tally and the seconds from the fault's end to the next acknowledged append."""
    tally = Tally()
    stop = threading.Event()
    with Memory.connect(server.dsn(), max_size=4, deadline=DEADLINE) as mem:
        threads = [
            threading.Thread(target=_write, args=(mem, tally, stop, w, pause)) for w in range(4)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        fault()
        back = time.monotonic()
        before = len(tally.acked)
        while len(tally.acked) == before and time.monotonic() - back < 60:
            time.sleep(0.005)
        recovery = time.monotonic() - back
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join()
    return tally, recovery


def _check(server: EmbeddedPostgres, tally: Tally) -> None:
    with psycopg.connect(server.dsn()) as conn:
        rows = conn.execute(
            "select seq, content from memory.messages where session_id = 'shared' order by seq"
        ).fetchall()
    stored = dict((content, seq) for seq, content in rows)
    lost = [c for c, _ in tally.acked if c not in stored]
    assert lost == [], f"acknowledged but lost: {lost[:5]}"
    assert all(stored[c] == seq for c, seq in tally.acked), "acknowledged at another seq"
    assert max(Counter(c for _, c in rows).values()) == 1, "stored twice"
    assert [seq for seq, _ in rows] == list(range(1, len(rows) + 1)), "gap-free"
    assert tally.slowest < DEADLINE + GRACE + SLACK, f"a call took {tally.slowest:.2f} s"


def test_immediate_restarts_lose_and_double_nothing(cluster: EmbeddedPostgres) -> None:
    def restart_twice() -> None:
        for _ in range(2):
            cluster.stop("immediate")
            cluster.start()
            time.sleep(0.5)

    tally, recovery = _run(cluster, restart_twice)
    _check(cluster, tally)
    assert tally.errors == [], tally.errors[:5]  # the restarts were ridden out
    print(
        f"\n[restart -m immediate x2] {len(tally.acked)} acked, "
        f"slowest call {tally.slowest:.3f} s, recovery {recovery:.3f} s"
    )


def test_killed_postmaster_loses_and_doubles_nothing(cluster: EmbeddedPostgres) -> None:
    def kill_nine() -> None:
        cluster.kill()  # its backends notice the postmaster's death and exit
        cluster.start()

    tally, recovery = _run(cluster, kill_nine)
    _check(cluster, tally)
    assert tally.errors == [], tally.errors[:5]
    print(
        f"\n[kill -9 postmaster] {len(tally.acked)} acked, "
        f"slowest call {tally.slowest:.3f} s, recovery {recovery:.3f} s"
    )


def test_control_asynchronous_commit_loses_acknowledged_appends(
    cluster: EmbeddedPostgres,
) -> None:
    """The checker sees a loss when there is one: with synchronous_commit off,
    a commit is acknowledged before its WAL is written. The WAL writer is
    paused, so the acknowledged WAL stays in shared memory, and the whole
    server is then killed: the appends acknowledged meanwhile are gone."""
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        conn.execute("alter system set synchronous_commit = off")
        conn.execute("select pg_reload_conf()")

    def crash_with_wal_unwritten() -> None:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            writer = conn.execute(
                "select pid from pg_stat_activity where backend_type = 'walwriter'"
            ).fetchone()
            assert writer is not None
            os.kill(int(writer[0]), signal.SIGSTOP)
            time.sleep(0.5)  # the writers keep getting acknowledgements
            pids = [int(r[0]) for r in conn.execute("select pid from pg_stat_activity")]
        cluster.kill(also=pids)  # the paused WAL writer with the rest
        cluster.start()

    tally, _ = _run(cluster, crash_with_wal_unwritten)
    with pytest.raises(AssertionError, match="acknowledged but lost"):
        _check(cluster, tally)


def test_a_thirty_second_outage_fails_fast_and_recovers(cluster: EmbeddedPostgres) -> None:
    """T13: while PostgreSQL is down, calls give up within their deadline, then
    fail at once while the breaker is open; nothing is lost or doubled."""

    def outage() -> None:
        cluster.stop("fast")
        time.sleep(30)
        cluster.start()

    tally, recovery = _run(cluster, outage, pause=0.01)
    _check(cluster, tally)
    fast = sorted(took for kind, took, _ in tally.errors if kind == DatabaseCircuitOpen.__name__)
    assert fast, "the breaker never opened"
    assert fast[len(fast) // 2] < 0.001, f"median fail-fast {fast[len(fast) // 2] * 1e3:.2f} ms"
    attempts = max(a for _, _, a in tally.errors)
    assert attempts <= 50
    p99 = fast[int(len(fast) * 0.99)]
    print(
        f"\n[30 s outage] {len(tally.acked)} acked, {len(tally.errors)} errors "
        f"({len(fast)} fast: median {fast[len(fast) // 2] * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us), "
        f"max attempts per call {attempts}, recovery {recovery:.3f} s"
    )
    assert recovery < 5.0


def test_the_async_api_rides_out_a_restart(cluster: EmbeddedPostgres) -> None:
    import asyncio

    async def scenario() -> list[int]:
        async with await AsyncMemory.connect(cluster.dsn(), max_size=2) as mem:
            chat = mem.session("async", tenant="acme")
            await chat.append("user", "before", tokens=1)
            await asyncio.to_thread(cluster.stop, "immediate")
            await asyncio.to_thread(cluster.start)
            after = await chat.append("user", "after", tokens=1)  # a stale pool first
            return [after.seq]

    assert asyncio.run(scenario()) == [2]


def test_non_idempotent_calls_after_a_restart_run_once(cluster: EmbeddedPostgres) -> None:
    with Memory.connect(cluster.dsn(), max_size=3, min_size=3) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "hi", tokens=1)
        time.sleep(0.3)  # the pool fills up with connections the restart will break
        cluster.stop("immediate")
        cluster.start()
        chat.delete()  # found dead before it was sent, then run once
        chat.restore()
        assert chat.info().message_count == 1


def test_a_killed_backend_crash_restarts_the_server_and_nothing_is_lost(
    cluster: EmbeddedPostgres,
) -> None:
    """kill -9 of one backend: PostgreSQL ends every backend and recovers."""

    def kill_a_backend() -> None:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            row = conn.execute(
                "select pid from pg_stat_activity where backend_type = 'client backend' "
                "and pid <> pg_backend_pid() and datname = current_database() limit 1"
            ).fetchone()
        assert row is not None
        os.kill(int(row[0]), signal.SIGKILL)
        time.sleep(0.5)

    tally, recovery = _run(cluster, kill_a_backend)
    _check(cluster, tally)
    assert tally.errors == [], tally.errors[:5]
    print(
        f"\n[kill -9 of a backend] {len(tally.acked)} acked, "
        f"slowest call {tally.slowest:.3f} s, recovery {recovery:.3f} s"
    )


def test_a_paused_backend_ends_the_call_at_its_deadline(cluster: EmbeddedPostgres) -> None:
    """SIGSTOP of the backend serving a call: the call ends at its deadline
    (the server's statement timeout cannot fire in a stopped process; the
    watchdog abandons the connection), and once resumed nothing is doubled."""
    with Memory.connect(cluster.dsn(), max_size=1, deadline=1.0) as mem:
        chat = mem.session("paused", tenant="acme")
        chat.append("user", "before", tokens=1)
        with mem.backend.connection() as conn:  # type: ignore[attr-defined]
            pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(PymemError) as caught:
                chat.append("user", "during", tokens=1)
            took = time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
        assert took < 1.0 + GRACE + SLACK, took
        assert caught.value.__class__.__name__ == "DeadlineExceeded"
        chat.append("user", "after", tokens=1)
    with psycopg.connect(cluster.dsn()) as conn:
        rows = conn.execute(
            "select seq, content from memory.messages where session_id = 'paused' order by seq"
        ).fetchall()
    contents = [c for _, c in rows]
    assert contents.count("during") <= 1 and contents.count("after") == 1
    assert [s for s, _ in rows] == list(range(1, len(rows) + 1))
