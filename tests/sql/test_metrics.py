"""memory.metrics(): the database's figures, as a monitoring login reads them."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

Series = dict[tuple[str, str], float]


def _series(conn: psycopg.Connection[Any], per_tenant: bool = False) -> Series:
    rows = conn.execute("select metric, labels, value from memory.metrics(%s)", (per_tenant,))
    return {(m, json.dumps(labels, sort_keys=True)): v for m, labels, v in rows}


def _get(series: Series, metric: str, **labels: str) -> float:
    return series[(metric, json.dumps(labels, sort_keys=True))]


def test_an_empty_database_reports_every_series(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        series = _series(conn)
        described = conn.execute(
            "select count(*) from memory.metrics() where description = ''"
        ).fetchone()
    names = {m for m, _ in series}
    assert names == {
        "pymem_db_sessions",
        "pymem_db_messages",
        "pymem_db_tokens",
        "pymem_db_tenants",
        "pymem_db_jobs",
        "pymem_db_job_oldest_ready_age_seconds",
        "pymem_db_default_partition_rows",
        "pymem_db_partitions_ahead",
        "pymem_db_partition_horizon_seconds",
        "pymem_db_task_last_success_timestamp_seconds",
        "pymem_db_audit_chains_broken",
        "pymem_db_audit_chains",
        "pymem_db_key_rotations_in_progress",
        "pymem_db_sessions_to_reencrypt",
    }
    assert described == (0,)
    # Every job kind and status, and both tasks, have a series before any run.
    for kind in ("summarize", "embed"):
        for status in ("queued", "running", "done", "parked"):
            assert _get(series, "pymem_db_jobs", kind=kind, status=status) == 0
    assert _get(series, "pymem_db_task_last_success_timestamp_seconds", task="maintain") == 0
    assert _get(series, "pymem_db_partitions_ahead") >= 1  # migrate made months ahead
    assert _get(series, "pymem_db_partition_horizon_seconds") > 30 * 86400


def test_figures_follow_appends_jobs_tasks_and_partitions(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.configure_recall('acme', summary_every_tokens => 50)")
        for i in range(3):
            conn.execute("select memory.append('acme', 's-1', 'user', %s, 20)", (f"turn {i}",))
        conn.execute("select memory.append('beta', 's-9', 'user', 'hello', 2)")
        series = _series(conn)
        assert _get(series, "pymem_db_sessions") == 2
        assert _get(series, "pymem_db_messages") == 4
        assert _get(series, "pymem_db_tokens") == 62
        assert _get(series, "pymem_db_jobs", kind="summarize", status="queued") == 1
        assert _get(series, "pymem_db_job_oldest_ready_age_seconds", kind="summarize") >= 0

        per_tenant = _series(conn, per_tenant=True)
        assert _get(per_tenant, "pymem_db_messages", tenant="acme") == 3
        assert _get(per_tenant, "pymem_db_messages", tenant="beta") == 1

        before = time.time()
        conn.execute("select * from memory.maintain()")
        conn.execute("select * from memory.verify_audit()")
        series = _series(conn)
        for task in ("maintain", "verify_audit"):
            stamp = _get(series, "pymem_db_task_last_success_timestamp_seconds", task=task)
            assert stamp >= before - 5
        assert _get(series, "pymem_db_audit_chains_broken") == 0

        # A row no partition covers lands in the default partition.
        conn.execute(
            "insert into memory.messages (tenant_id, session_id, seq, role, content, tokens, "
            "created_at) values ('acme', 's-1', 99, 'user', 'stray', 1, '2099-01-01')"
        )
        assert _get(_series(conn), "pymem_db_default_partition_rows") == 1


def test_a_broken_chain_is_counted_by_the_next_full_verification(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('acme', 's-1', 'user', 'hi', 1)")
        conn.execute("select memory.delete_session('acme', 's-1')")
        conn.execute("select memory.restore_session('acme', 's-1')")
        conn.execute("set session_replication_role = replica")
        conn.execute("update memory.audit_log set actor = actor || 'x' where audit_id = 1")
        conn.execute("set session_replication_role = origin")
        # A check of one tenant answers but is not the database-wide figure.
        assert conn.execute("select count(*) from memory.verify_audit('acme')").fetchone() == (1,)
        assert _get(_series(conn), "pymem_db_audit_chains_broken") == 0
        assert conn.execute("select count(*) from memory.verify_audit()").fetchone() == (1,)
        series = _series(conn)
        assert _get(series, "pymem_db_audit_chains_broken") == 1
        assert _get(series, "pymem_db_audit_chains") >= 1


def test_a_key_rotation_shows_until_reencrypt_finishes(dsn: str) -> None:
    master = "ab" * 32
    keyed = make_conninfo(dsn, options=f"-c pymem.master_key={master}")
    with psycopg.connect(keyed, autocommit=True) as conn:
        conn.execute("select memory.configure_encryption('acme', 'content')")
        conn.execute("select memory.append('acme', 's-1', 'user', 'secret', 1)")
        assert _get(_series(conn), "pymem_db_key_rotations_in_progress") == 0
        conn.execute("select memory.rotate_key('acme')")
        series = _series(conn)
        assert _get(series, "pymem_db_key_rotations_in_progress") == 1
        assert _get(series, "pymem_db_sessions_to_reencrypt") == 1
        remaining = conn.execute("select sessions_remaining from memory.reencrypt('acme')")
        assert remaining.fetchone() == (0,)
        assert _get(_series(conn), "pymem_db_key_rotations_in_progress") == 0


def test_only_monitoring_and_owner_logins_read_metrics(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('acme', 's-1', 'user', 'hi', 1)")
        for login, role in (("mon_login", "pymem_monitor"), ("mon_app", "pymem_app")):
            with contextlib.suppress(psycopg.errors.DuplicateObject):
                conn.execute(f"create role {login} login")
            conn.execute(f"grant {role} to {login}")
    with psycopg.connect(make_conninfo(dsn, user="mon_login"), autocommit=True) as monitor:
        assert _get(_series(monitor, per_tenant=True), "pymem_db_messages", tenant="acme") == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            monitor.execute("select count(*) from memory.messages")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            monitor.execute("select * from memory.history('acme', 's-1')")
    with (
        psycopg.connect(make_conninfo(dsn, user="mon_app"), autocommit=True) as app,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        app.execute("select * from memory.metrics()")


def test_jobs_keep_the_trace_context_of_the_append_that_queued_them(dsn: str) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.configure_recall('acme', summary_every_tokens => 50)")
        conn.execute(
            "select memory.append('acme', 's-1', 'user', 'a long enough turn', 60, "
            "trace_context => %s)",
            (parent,),
        )
        # A later append finds the job queued and leaves it (and its trace) alone.
        conn.execute(
            "select memory.append('acme', 's-1', 'user', 'more', 60, trace_context => %s)",
            ("00-" + "1" * 32 + "-" + "2" * 16 + "-01",),
        )
        claimed = conn.execute("select kind, trace_context from memory.claim_jobs('w1')").fetchall()
    assert claimed == [("summarize", parent)]
