"""``pymem migrate`` while the application serves traffic: no lock when nothing is new,
polite waits when something is, one run at a time."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg

from pymem.db.migrate import migrate
from pymem.db.paths import migrations_dir

TABLES = "memory.messages, memory.sessions, memory.tenants, memory.jobs, memory.audit_log"


def test_a_migrate_with_nothing_new_takes_no_table_lock(dsn: str) -> None:
    with psycopg.connect(dsn) as holder:
        # Another transaction holds every main table exclusively: a run that
        # needed any lock on them could not finish.
        holder.execute(f"lock table {TABLES} in access exclusive mode")
        report = migrate(dsn, lock_timeout=0.2, deadline=5)
        holder.rollback()
    assert report.applied == () and report.sql_files == ()
    assert report.lock_waits == 0


def test_a_changed_file_is_reapplied_alone_with_the_grants(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("update memory.applied_sql set digest = 'old' where file = '078_metrics.sql'")
    report = migrate(dsn)
    assert report.sql_files == ("078_metrics.sql", "900_security.sql")
    assert migrate(dsn).sql_files == ()


def test_a_migrate_that_must_lock_gives_way_to_traffic(dsn: str) -> None:
    """A long read holds memory.messages; migrate must re-create its policies.

    Without lock_timeout the migrate would queue for the lock and every append
    behind it until the read ends (about 3 s here). With it, each attempt
    gives way after 0.3 s, the appends go on, and migrate finishes once the
    read is over.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('acme', 's-1', 'user', 'first', 1)")
        conn.execute("update memory.applied_sql set digest = 'old' where file = '910_policies.sql'")
    read_open = threading.Event()
    stop = threading.Event()

    def long_read() -> None:
        with psycopg.connect(dsn) as reader:
            reader.execute("select count(*) from memory.messages")
            read_open.set()
            time.sleep(3)
            reader.rollback()

    latencies: list[float] = []

    def appender() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            i = 0
            while not stop.is_set():
                started = time.perf_counter()
                conn.execute("select memory.append('acme', 's-1', 'user', %s, 1)", (f"turn {i}",))
                latencies.append(time.perf_counter() - started)
                i += 1

    with ThreadPoolExecutor(2) as pool:
        reading = pool.submit(long_read)
        read_open.wait(10)
        appending = pool.submit(appender)
        report = migrate(dsn, lock_timeout=0.3, deadline=60)
        stop.set()
        reading.result()
        appending.result()
    assert "910_policies.sql" in report.sql_files
    assert report.lock_waits >= 1
    worst = max(latencies)
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 100 else worst
    print(
        f"\nappends during a policy-changing migrate behind a 3 s read: {len(latencies)} "
        f"appends, p99 {p99 * 1000:.1f} ms, worst {worst * 1000:.0f} ms, "
        f"migrate gave way {report.lock_waits} times"
    )
    assert len(latencies) > 20
    assert worst < 2.0  # never queued behind the migrate for the whole read
    with psycopg.connect(dsn) as conn:
        stored = conn.execute(
            "select count(*), max(seq) from memory.messages where session_id = 's-1'"
        ).fetchone()
    assert stored == (len(latencies) + 1, len(latencies) + 1)


def test_two_migrates_at_once_take_turns(empty_dsn: str) -> None:
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda _: migrate(empty_dsn), range(2)))
    every = sorted(p.name.removesuffix(".sql") for p in migrations_dir().glob("*.sql"))
    expected = tuple(m for m in every if not m.endswith(".rollback"))
    applied = sorted((r.applied for r in reports), key=len)
    assert applied == [(), expected]
    assert sorted(len(r.sql_files) for r in reports)[0] == 0
