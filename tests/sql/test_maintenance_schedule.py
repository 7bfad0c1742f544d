"""Maintenance that schedules itself: memory.maintain_if_due, the worker, and doctor."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest

from pymem import Memory
from pymem.ops.doctor import _checks
from pymem.ops.worker import Worker


def _due(conn: psycopg.Connection[object], every: str = "1 hour") -> tuple[object, ...]:
    row = conn.execute(
        "select ran, sessions_expired from memory.maintain_if_due(%s::interval)", (every,)
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_maintenance_runs_once_per_period(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert _due(conn)[0] is True
        assert _due(conn)[0] is False  # it ran less than an hour ago
        conn.execute("update memory.task_runs set finished_at = now() - interval '2 hours'")
        assert _due(conn)[0] is True
        with pytest.raises(psycopg.Error) as caught:
            _due(conn, "10 seconds")
        assert caught.value.sqlstate == "ME002"


def test_a_run_in_progress_elsewhere_is_left_alone_and_maintain_waits_for_it(dsn: str) -> None:
    with psycopg.connect(dsn) as holder:
        holder.execute("select pg_advisory_xact_lock(memory._maintenance_lock())")
        with psycopg.connect(dsn, autocommit=True) as other:
            assert _due(other)[0] is False  # another session is maintaining
        finished = threading.Event()

        def maintain() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("select * from memory.maintain()")
            finished.set()

        thread = threading.Thread(target=maintain)
        thread.start()
        time.sleep(0.5)
        assert not finished.is_set()  # a second run waits for the first
        holder.rollback()
        thread.join(timeout=30)
    assert finished.is_set()


def test_workers_maintain_once_between_them(dsn: str) -> None:
    with Memory.connect(dsn, max_size=2) as mem:
        expired = mem.session("old", tenant="acme")
        expired.append("user", "hi", tokens=1)
        expired.extend(timedelta(seconds=1))
        time.sleep(1.2)
        first = Worker(mem, maintain_every=timedelta(hours=1))
        run = first.maintain_if_due()
        assert run is not None and run.ran and run.sessions_expired == 1
        assert first.maintain_if_due() is None  # this process asks at most every 5 minutes
        second = Worker(mem, maintain_every=timedelta(hours=1))
        again = second.maintain_if_due()
        assert again is not None and not again.ran  # the database says it is not due
        assert Worker(mem, maintain_every=None).maintain_if_due() is None


def test_doctor_warns_after_a_day_without_maintenance(dsn: str) -> None:
    def maintenance() -> tuple[bool, str]:
        (check,) = [c for c in _checks(dsn) if c.name == "maintenance"]
        return check.ok, check.detail

    ok, detail = maintenance()
    assert ok and "never run" in detail  # installed minutes ago
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select * from memory.maintain()")
        assert maintenance()[0]
        conn.execute("update memory.task_runs set finished_at = now() - interval '30 hours'")
    ok, detail = maintenance()
    assert not ok and "30.0 h ago" in detail


def test_doctor_checks_pg_partman_and_the_default_partition(dsn: str) -> None:
    def check(name: str) -> tuple[bool, str]:
        (found,) = [c for c in _checks(dsn) if c.name == name]
        return found.ok, found.detail

    assert check("pg_partman") == (True, "manages memory.messages")
    assert check("extension pg_partman")[0]
    assert check("default partition") == (True, "empty")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "insert into memory.messages (tenant_id, session_id, seq, role, content, tokens, "
            "created_at) values ('t', 's', 1, 'user', 'stray', 1, '2099-01-01')"
        )
        assert check("default partition") == (False, "1 rows")
        conn.execute("select * from memory.maintain()")
    assert check("default partition") == (True, "empty")
