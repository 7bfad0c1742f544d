"""Partition maintenance (pg_partman) while writers append: nothing lost, nobody stalls long."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest

from pymem.backends.postgres import PostgresBackend
from pymem.errors import LockTimeout

from .writers import append_until, stopping

WRITERS = 8


def test_partitions_made_and_rows_moved_while_eight_writers_append(dsn: str) -> None:
    stop = threading.Event()
    with ThreadPoolExecutor(WRITERS) as pool:
        futures = [pool.submit(append_until, dsn, f"s-{i}", stop) for i in range(WRITERS)]
        created: list[str] = []
        with stopping(stop), psycopg.connect(dsn, autocommit=True) as admin:
            for round_ in range(5):
                time.sleep(0.3)
                # A row no partition covers: a partition is made for it and
                # attached while the writers go on.
                admin.execute(
                    "insert into memory.messages (tenant_id, session_id, seq, role, content, "
                    "tokens, created_at) values ('stray', 'x', %s, 'user', 'later', 1, %s)",
                    (round_ + 1, f"{2060 + round_}-06-01"),
                )
                created += [
                    r[0] for r in admin.execute("select * from memory.maintain_partitions()")
                ]
        time.sleep(0.3)
        stop.set()
        results = [f.result() for f in futures]
    assert created == [f"messages_p{2060 + r}_06" for r in range(5)]
    with psycopg.connect(dsn) as conn:
        for i, (acked, _) in enumerate(results):
            stored = [
                r[0]
                for r in conn.execute(
                    "select seq from memory.messages where tenant_id = 'acme' "
                    "and session_id = %s order by seq",
                    (f"s-{i}",),
                )
            ]
            assert stored == acked == list(range(1, len(acked) + 1))
            count = conn.execute(
                "select message_count from memory.sessions where tenant_id = 'acme' "
                "and session_id = %s",
                (f"s-{i}",),
            ).fetchone()
            assert count == (len(acked),)
        assert conn.execute("select count(*) from memory.messages_default").fetchone() == (0,)
        assert conn.execute(
            "select count(*) from memory.messages where tenant_id = 'stray'"
        ).fetchone() == (5,)
        unsecured = conn.execute(
            "select count(*) from pg_inherits as i join pg_class as c on c.oid = i.inhrelid "
            "where i.inhparent = 'memory.messages'::regclass "
            "and not (c.relrowsecurity and c.relforcerowsecurity)"
        ).fetchone()
        assert unsecured == (0,)
    appends = sum(len(a) for a, _ in results)
    worst = max(w for _, w in results)
    print(
        f"\n{WRITERS} writers, {appends} appends during {len(created)} partitions made: "
        f"worst append {worst * 1000:.0f} ms"
    )


def test_maintenance_behind_a_long_read_gives_up_instead_of_stalling_writers(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(
            "update partman.part_config set premake = premake + 2 "
            "where parent_table = 'memory.messages'"
        )
    with psycopg.connect(dsn) as reader:
        reader.execute("select count(*) from memory.messages")  # holds its lock until rollback
        stop = threading.Event()
        with ThreadPoolExecutor(1) as pool, stopping(stop):
            writing = pool.submit(append_until, dsn, "s-w", stop)
            time.sleep(0.2)
            with (
                psycopg.connect(dsn, autocommit=True) as admin,
                pytest.raises(psycopg.errors.LockNotAvailable),
            ):
                admin.execute("select * from memory.maintain_partitions()")
            # Through the worker's path: a typed error, the run changes nothing.
            backend = PostgresBackend(dsn, min_size=1, max_size=1).open()
            try:
                with pytest.raises(LockTimeout) as caught:
                    backend.maintain_if_due(timedelta(hours=1))
            finally:
                backend.close()
            assert "gave way" in caught.value.message and caught.value.hint
            time.sleep(0.2)
            stop.set()
            acked, worst = writing.result()
        reader.rollback()
    print(f"\nappends behind a maintenance that gave up: worst {worst * 1000:.0f} ms")
    assert acked and worst < 5.0  # bounded by lock_timeout (2 s), not by the read
    with psycopg.connect(dsn, autocommit=True) as admin:
        assert admin.execute("select * from memory.maintain_partitions()").fetchall()
