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


def _old_turns(conn: psycopg.Connection[object], session: str, count: int) -> None:
    """`count` turns in `session` of tenant acme, which keeps turns for an hour."""
    conn.execute("select memory.configure_tenant('acme', retention => '1 hour')")
    conn.execute(
        "select count(memory.append('acme', %s, 'user', 'turn ' || i, 1)) "
        "from generate_series(1, %s) as i",
        (session, count),
    )


def _turns(dsn: str, session: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select count(*) from memory.messages where session_id = %s", (session,)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("in_steps", [True, False], ids=["maintain_in_steps", "maintain"])
def test_maintain_in_steps_commits_each_step(dsn: str, in_steps: bool) -> None:
    """A session trimmed in an early step is released before later steps finish.

    s-a holds a step's worth of old turns; s-b is locked by a writer's open
    transaction. In steps, s-a's turns are gone for everyone while the run
    waits for s-b; memory.maintain (the negative control) shows them until
    its single commit.
    """
    with psycopg.connect(dsn, autocommit=True) as conn:
        _old_turns(conn, "s-a", 1000)
        _old_turns(conn, "s-b", 3)
    call = (
        "call memory.maintain_in_steps(as_of => now() + interval '2 hours')"
        if in_steps
        else "select * from memory.maintain(as_of => now() + interval '2 hours')"
    )
    with psycopg.connect(dsn) as writer:
        writer.execute("select from memory.sessions where session_id = 's-b' for update")

        def run() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(call)

        thread = threading.Thread(target=run)
        thread.start()
        deadline = time.monotonic() + 10
        while _turns(dsn, "s-a") and time.monotonic() < deadline:
            time.sleep(0.1)
        visible = _turns(dsn, "s-a")
        assert thread.is_alive()  # still waiting for s-b
        writer.rollback()
        thread.join(timeout=30)
    assert visible == (0 if in_steps else 1000)
    assert _turns(dsn, "s-a") == _turns(dsn, "s-b") == 0


def test_maintain_in_steps_holds_no_lock_after_it_fails(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _old_turns(conn, "s-b", 3)
        held = (
            "select count(*) from pg_locks where locktype = 'advisory' and pid = pg_backend_pid()"
        )
        # Inside a transaction block it refuses at once, holding nothing.
        with (
            pytest.raises(psycopg.errors.InvalidTransactionTermination),
            conn.transaction(),
        ):
            conn.execute("call memory.maintain_in_steps()")
        assert conn.execute(held).fetchone() == (0,)
        # A step that fails (here a statement timeout while a writer holds
        # the session) lets the session lock go; the next run does the work.
        with psycopg.connect(dsn) as writer:
            writer.execute("select from memory.sessions where session_id = 's-b' for update")
            conn.execute("set statement_timeout = '500ms'")
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("call memory.maintain_in_steps(as_of => now() + interval '2 hours')")
            assert conn.execute(held).fetchone() == (0,)
        conn.execute("set statement_timeout = 0")
        row = conn.execute(
            "call memory.maintain_in_steps('1 hour', now() + interval '2 hours')"
        ).fetchone()
        assert row == (True, [], 0, 3)
        again = conn.execute("call memory.maintain_in_steps('1 hour')").fetchone()
        assert again is not None and again[0] is False  # not due again within the hour
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("call memory.maintain_in_steps('10 seconds')")
        assert caught.value.sqlstate == "ME002"
