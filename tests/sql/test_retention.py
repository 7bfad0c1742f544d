"""Retention by age: memory.configure_tenant(retention) and memory.maintain(as_of)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest

from pymem import Memory
from pymem.errors import InvalidArgument

from .writers import append_until, stopping


def _counters(conn: psycopg.Connection[object], session: str) -> tuple[object, ...]:
    row = conn.execute(
        "select s.first_seq, s.message_count, s.token_count, "
        "(select count(*) from memory.messages as m where m.tenant_id = s.tenant_id "
        " and m.session_id = s.session_id), "
        "(select coalesce(sum(m.tokens), 0) from memory.messages as m "
        " where m.tenant_id = s.tenant_id and m.session_id = s.session_id), "
        "(select min(m.seq) from memory.messages as m where m.tenant_id = s.tenant_id "
        " and m.session_id = s.session_id) "
        "from memory.sessions as s where s.tenant_id = 'acme' and s.session_id = %s",
        (session,),
    ).fetchone()
    assert row is not None
    return tuple(row)


def test_turns_past_retention_go_with_their_digests_and_keys(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.configure_tenant('acme', retention => '30 days')")
        for i in range(1, 6):
            conn.execute(
                "select memory.append('acme', 's-1', 'user', %s, 10, idempotency_key => %s)",
                (f"old turn {i}", f"k{i}"),
            )
        conn.execute("select memory.append('acme', 's-1', 'user', 'recent turn', 7)")
        conn.execute("select memory.add_summary('acme', 's-1', 1, 1, 3, 'digest of 1-3', 5)")
        conn.execute("select memory.add_summary('acme', 's-1', 1, 4, 6, 'digest of 4-6', 5)")
        # The first five turns "40 days ago": move their time back, as a clock would.
        conn.execute(
            "update memory.messages set created_at = created_at - interval '40 days' "
            "where tenant_id = 'acme' and seq <= 5"
        )
        conn.execute("select memory.append('beta', 's-1', 'user', 'other tenant', 1)")
        conn.execute(
            "update memory.messages set created_at = created_at - interval '40 days' "
            "where tenant_id = 'beta'"
        )
        removed = conn.execute("select messages_removed from memory.maintain()").fetchone()
        assert removed == (5,)
        # first_seq, message_count, token_count agree with the rows left.
        assert _counters(conn, "s-1") == (6, 1, 7, 1, 7, 6)
        digests = conn.execute(
            "select seq_from, seq_to from memory.summaries where tenant_id = 'acme'"
        ).fetchall()
        assert digests == [(4, 6)]  # it also covers a kept turn
        keys = conn.execute(
            "select count(*) from memory.idempotency_keys where tenant_id = 'acme'"
        ).fetchone()
        assert keys == (0,)
        # A tenant without retention keeps everything.
        assert conn.execute(
            "select count(*) from memory.messages where tenant_id = 'beta'"
        ).fetchone() == (1,)
        # The audit log says what went: counts and seq range, never content.
        audit = conn.execute(
            "select details from memory.audit_log where tenant_id = 'acme' "
            "and action = 'messages.delete'"
        ).fetchall()
        assert audit == [({"count": 5, "seq_from": 1, "seq_to": 5},)]
        # The session goes on: next seq, context, history.
        assert conn.execute(
            "select seq from memory.append('acme', 's-1', 'user', 'next', 1)"
        ).fetchone() == (7,)
        seqs = [r[0] for r in conn.execute("select seq from memory.history('acme', 's-1')")]
        assert seqs == [6, 7]
        assert conn.execute("select messages_removed from memory.maintain()").fetchone() == (0,)


def test_maintain_as_of_moves_the_clock(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.configure_tenant('acme', retention => '1 day')")
        conn.execute("select memory.append('acme', 's-1', 'user', 'today', 1)")
        assert conn.execute("select messages_removed from memory.maintain()").fetchone() == (0,)
        later = conn.execute(
            "select messages_removed from memory.maintain(as_of => now() + interval '2 days')"
        ).fetchone()
        assert later == (1,)
        assert _counters(conn, "s-1") == (2, 0, 0, 0, 0, None)
        # An emptied session takes its next turn at the next seq.
        assert conn.execute(
            "select seq from memory.append('acme', 's-1', 'user', 'again', 1)"
        ).fetchone() == (2,)


@pytest.mark.parametrize("bad", ["0 seconds", "-1 day", "10 minutes", "200 years"])
def test_absurd_retention_is_refused_and_changes_nothing(dsn: str, bad: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.configure_tenant('acme', retention => '30 days')")
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(
                "select memory.configure_tenant('acme', retention => %s::interval)", (bad,)
            )
        assert caught.value.sqlstate == "ME002"
        kept = conn.execute("select retention from memory.tenants where tenant_id = 'acme'")
        assert kept.fetchone() == (timedelta(days=30),)


def test_retention_through_python_and_only_where_maintenance_runs(dsn: str) -> None:
    with Memory.connect(dsn, max_size=1) as mem:
        mem.configure_tenant(tenant="acme", retention=timedelta(days=7))
    with psycopg.connect(dsn) as conn:
        kept = conn.execute("select retention from memory.tenants where tenant_id = 'acme'")
        assert kept.fetchone() == (timedelta(days=7),)
    with pytest.raises(InvalidArgument, match="PostgreSQL"):
        Memory.in_memory().configure_tenant(tenant="acme", retention=timedelta(days=7))


def test_retention_while_eight_writers_append(dsn: str) -> None:
    """RELIABILITY T12 (row deletes): nothing inside the window lost, counters right."""
    stop = threading.Event()
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("select memory.configure_tenant('acme', retention => '1 hour')")
        with ThreadPoolExecutor(8) as pool:
            futures = {f"s-{i}": pool.submit(append_until, dsn, f"s-{i}", stop) for i in range(8)}
            with stopping(stop):
                removed = 0
                for _ in range(5):
                    # Everything written so far is "old" two hours from now.
                    row = admin.execute(
                        "select messages_removed from memory.maintain("
                        "as_of => clock_timestamp() + interval '2 hours')"
                    ).fetchone()
                    assert row is not None
                    removed += int(row[0])
            acked = {session: future.result()[0] for session, future in futures.items()}
        assert removed > 0
        for session, seqs in acked.items():
            assert seqs == list(range(1, len(seqs) + 1))
            first, count, tokens, rows, row_tokens, min_seq = _counters(admin, session)
            assert (count, tokens) == (rows, row_tokens)
            kept = [
                r[0]
                for r in admin.execute(
                    "select seq from memory.messages where tenant_id = 'acme' "
                    "and session_id = %s order by seq",
                    (session,),
                )
            ]
            # What is left is the newest turns, contiguous up to the last acknowledged.
            assert kept == list(range(int(first), seqs[-1] + 1))  # type: ignore[call-overload]
            assert min_seq in (None, first)


def _old_partition(conn: psycopg.Connection[object], tenants: tuple[str, ...]) -> None:
    """Turns 1-2 of each tenant written in January 2020, turn 3 now."""
    for tenant in tenants:
        for i in (1, 2):
            conn.execute(
                "select memory.append(%s, 's-1', 'user', %s, 4, idempotency_key => %s)",
                (tenant, f"old {i}", f"k{i}"),
            )
    conn.execute(
        "update memory.messages set created_at = '2020-01-10' where session_id = 's-1'"
    )  # into the default partition: no partition covers 2020
    assert conn.execute("select * from memory.maintain_partitions()").fetchall() == [
        ("messages_p2020_01",)
    ]
    for tenant in tenants:
        conn.execute("select memory.append(%s, 's-1', 'user', 'now', 3)", (tenant,))


def _has_2020(conn: psycopg.Connection[object]) -> bool:
    found = conn.execute("select to_regclass('memory.messages_p2020_01')").fetchone()
    return found is not None and found[0] is not None


def test_whole_partitions_go_when_every_tenant_has_let_them_pass(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _old_partition(conn, ("acme", "beta"))
        conn.execute("select memory.configure_tenant('acme', retention => '30 days')")
        conn.execute("select memory.configure_tenant('beta', retention => '90 days')")
        removed = conn.execute("select messages_removed from memory.maintain()").fetchone()
        assert removed == (4,)
        assert not _has_2020(conn)  # dropped, not emptied row by row
        assert _counters(conn, "s-1") == (3, 1, 3, 1, 3, 3)
        audit = conn.execute(
            "select tenant_id, details from memory.audit_log where action = 'messages.delete' "
            "order by tenant_id"
        ).fetchall()
        assert audit == [
            ("acme", {"count": 2, "seq_from": 1, "seq_to": 2, "partition": "messages_p2020_01"}),
            ("beta", {"count": 2, "seq_from": 1, "seq_to": 2, "partition": "messages_p2020_01"}),
        ]
        assert conn.execute("select count(*) from memory.idempotency_keys").fetchone() == (0,)
        assert conn.execute(
            "select seq from memory.append('acme', 's-1', 'user', 'next', 1)"
        ).fetchone() == (4,)
        assert conn.execute("select count(*) from memory.verify_audit()").fetchone() == (0,)


def test_a_tenant_that_keeps_everything_keeps_the_partition(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _old_partition(conn, ("acme", "gamma"))
        conn.execute("select memory.configure_tenant('acme', retention => '30 days')")
        removed = conn.execute("select messages_removed from memory.maintain()").fetchone()
        assert removed == (2,)  # acme's, row by row
        assert _has_2020(conn)
        left = conn.execute(
            "select tenant_id, count(*) from memory.messages_p2020_01 group by 1"
        ).fetchall()
        assert left == [("gamma", 2)]
        assert _counters(conn, "s-1") == (3, 1, 3, 1, 3, 3)


def test_a_partition_dropped_while_eight_writers_append_to_its_sessions(dsn: str) -> None:
    """RELIABILITY T12 (partition drop): nothing inside the window lost, counters right."""
    sessions = [f"s-{i}" for i in range(8)]
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("select memory.configure_tenant('acme', retention => '30 days')")
        for session in sessions:
            for i in range(3):
                admin.execute(
                    "select memory.append('acme', %s, 'user', %s, 2)", (session, f"old {i}")
                )
        # Two old partitions, each with its own sessions: dropping the first
        # must not leave the second's sessions waiting on it (a deadlock once).
        admin.execute(
            "update memory.messages set created_at = case when session_id < 's-4' "
            "then '2020-01-10'::timestamptz else '2020-03-10'::timestamptz end"
        )
        admin.execute("select * from memory.maintain_partitions()")
    stop = threading.Event()
    with ThreadPoolExecutor(8) as pool, psycopg.connect(dsn, autocommit=True) as admin:
        futures = {s: pool.submit(append_until, dsn, s, stop) for s in sessions}
        with stopping(stop):
            time.sleep(0.3)
            removed = admin.execute("select messages_removed from memory.maintain()").fetchone()
            time.sleep(0.3)
        results = {session: future.result() for session, future in futures.items()}
        acked = {session: seqs for session, (seqs, _) in results.items()}
        assert removed == (24,)
        assert not _has_2020(admin)
        assert admin.execute("select to_regclass('memory.messages_p2020_03')").fetchone() == (None,)
        for session in sessions:
            assert acked[session] == list(range(4, 4 + len(acked[session])))
            first, count, tokens, rows, row_tokens, min_seq = _counters(admin, session)
            assert (first, min_seq) == (4, 4) and (count, tokens) == (rows, row_tokens)
            assert rows == len(acked[session])
    print(
        f"\nappends while a partition was dropped: {sum(map(len, acked.values()))}, "
        f"worst {max(w for _, w in results.values()) * 1000:.0f} ms"
    )


def test_a_session_in_two_expired_partitions_is_counted_once(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.configure_tenant('acme', retention => '30 days')")
        for i in range(1, 5):
            conn.execute("select memory.append('acme', 's-1', 'user', %s, 4)", (f"old {i}",))
        conn.execute(
            "update memory.messages set created_at = case when seq <= 2 "
            "then '2020-01-10'::timestamptz else '2020-03-10'::timestamptz end"
        )
        conn.execute("select * from memory.maintain_partitions()")
        conn.execute("select memory.append('acme', 's-1', 'user', 'now', 3)")
        removed = conn.execute("select messages_removed from memory.maintain()").fetchone()
        assert removed == (4,)
        assert _counters(conn, "s-1") == (5, 1, 3, 1, 3, 5)
        gone = conn.execute(
            "select details ->> 'partition', (details ->> 'count')::int from memory.audit_log "
            "where action = 'messages.delete' order by audit_id"
        ).fetchall()
        assert gone == [("messages_p2020_01", 2), ("messages_p2020_03", 2)]
