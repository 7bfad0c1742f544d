"""``pymem migrate`` while the application serves traffic: no lock when nothing is new,
polite waits when something is, one run at a time."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
from yoyo import read_migrations

from pymem.db.migrate import _backend, apply_sql, migrate, rollback
from pymem.db.paths import migrations_dir

TABLES = "memory.messages, memory.sessions, memory.tenants, memory.jobs, memory.audit_log"


def _append_until(dsn: str, session: str, stop: threading.Event, latencies: list[float]) -> None:
    """Append to `session` of tenant acme until `stop`, recording each call's latency."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        i = 0
        while not stop.is_set():
            started = time.perf_counter()
            conn.execute("select memory.append('acme', %s, 'user', %s, 1)", (session, f"turn {i}"))
            latencies.append(time.perf_counter() - started)
            i += 1


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
        _append_until(dsn, "s-1", stop, latencies)

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
    folder = migrations_dir()
    every = sorted(p.stem for p in [*folder.glob("pymem_*.sql"), *folder.glob("pymem_*.py")])
    expected = tuple(m for m in every if not m.endswith(".rollback"))
    applied = sorted((r.applied for r in reports), key=len)
    assert applied == [(), expected]
    assert sorted(len(r.sql_files) for r in reports)[0] == 0


INDEX_MIGRATION = "pymem_0016_recall_index_pending_list"


def _undo_the_index_migration(dsn: str) -> None:
    """Roll the newest recall index migration back; any after it, which do not
    touch the recall index, are rolled back and applied again, so that
    today's sql/ applies."""
    every = read_migrations(str(migrations_dir()))
    later = [m for m in every if m.id > INDEX_MIGRATION]
    rollback(dsn, steps=len(later) + 1)
    with _backend(dsn) as backend, backend.lock():
        for migration in later:
            backend.apply_one(migration)


def _recall_indexes(dsn: str) -> dict[str, bool]:
    """Partitioned indexes of memory.messages on `search`: name -> valid."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            select c.relname, x.indisvalid
              from pg_index as x
              join pg_class as c on c.oid = x.indexrelid
             where x.indrelid = 'memory.messages'::regclass
               and pg_get_indexdef(x.indexrelid) like '%search%'
            """
        ).fetchall()
    return dict(rows)


def _pending_lists(dsn: str) -> set[str]:
    """The options of every partition's recall index (and the parent's)."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            """
            select distinct coalesce(c.reloptions::text, '')
              from pg_class as c
             where c.relname like 'messages%recall_idx'
            """
        ).fetchall()
    return {r[0] for r in rows}


def test_the_recall_index_is_rebuilt_while_appends_go_on(dsn: str) -> None:
    """The recall index migrations build their GIN index partition by partition,
    concurrently (pymem_0014 and pymem_0016 alike; this runs the newest).

    A plain CREATE INDEX on memory.messages would hold every writer for the
    whole build. Here appends go on at their usual pace while it runs, also
    while a long read makes the old index's drop wait (and give way) for it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(100):
            conn.execute(
                "select memory.append('acme', %s, 'user', %s, 3)", (f"s-{i % 20}", f"tent pole {i}")
            )
        # Enough turns that building the index takes seconds: a build that
        # blocked writers would show in their latency.
        conn.execute(
            """
            insert into memory.sessions (tenant_id, session_id, last_seq, message_count)
            values ('acme', 'bulk', 300000, 300000);
            insert into memory.messages (tenant_id, session_id, seq, role, content, tokens, search)
            select 'acme', 'bulk', g, 'user', 'filler ' || g,
                   2, to_tsvector('english', format('alpha%s beta%s gamma%s delta%s topic%s',
                                                    g % 5003, g % 4999, g % 4993, g % 4987, g % 97))
              from generate_series(1, 300000) as g
            """
        )
    _undo_the_index_migration(dsn)  # back to the index of 0014
    migrate(dsn)
    _undo_the_index_migration(dsn)
    assert _recall_indexes(dsn) == {"messages_session_recall_idx": True}
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_sql(conn, force=True)  # the functions, for the appends during the migrate
    stop = threading.Event()
    latencies: list[float] = []

    def appender() -> None:
        _append_until(dsn, "w", stop, latencies)

    def long_read() -> None:
        with psycopg.connect(dsn) as reader:
            reader.execute("select count(*) from memory.messages")
            time.sleep(4)  # longer than the build: dropping the old index waits for it
            reader.rollback()

    with ThreadPoolExecutor(2) as pool:
        appending = pool.submit(appender)
        time.sleep(0.2)
        reading = pool.submit(long_read)
        time.sleep(0.2)
        report = migrate(dsn, lock_timeout=0.1, deadline=60)
        stop.set()
        appending.result()
        reading.result()
    assert report.applied == (INDEX_MIGRATION,)
    assert report.lock_waits >= 1, "the old index's drop waited for the long read, politely"
    assert _recall_indexes(dsn) == {"messages_recall_idx": True}
    assert _pending_lists(dsn) == {"{fastupdate=on,gin_pending_list_limit=64}"}
    print(f"\nappends during the concurrent index build: worst {max(latencies) * 1000:.0f} ms")
    assert len(latencies) > 20 and max(latencies) < 0.5, max(latencies)
    with psycopg.connect(dsn) as conn:
        found = conn.execute("select count(*) from memory.recall('acme', 's-3', 'tent')").fetchone()
    assert found == (5,)


def test_an_interrupted_index_build_is_redone(dsn: str) -> None:
    """A build cut short leaves an invalid index; the next migrate replaces it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('acme', 's', 'user', 'one', 1)")
        conn.execute("select memory.append('acme', 's', 'user', 'two', 1)")
        (partition,) = conn.execute(
            "select tableoid::regclass::text from memory.messages limit 1"
        ).fetchone() or ("",)
    _undo_the_index_migration(dsn)
    child = partition.split(".")[-1] + "_recall_idx"
    with psycopg.connect(dsn, autocommit=True) as conn:
        # A concurrent build that fails (a unique index over equal values)
        # stays behind, invalid, under the name the migration uses.
        with contextlib.suppress(psycopg.errors.UniqueViolation):
            conn.execute(f"create unique index concurrently {child} on {partition} (tenant_id)")
        assert conn.execute(
            "select indisvalid from pg_index where indexrelid = %s::regclass", (f"memory.{child}",)
        ).fetchone() == (False,)
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        definition = conn.execute(
            "select pg_get_indexdef(%s::regclass), indisvalid from pg_index "
            "where indexrelid = %s::regclass",
            (f"memory.{child}", f"memory.{child}"),
        ).fetchone()
    assert definition is not None
    assert "gin (session_id, search)" in definition[0] and definition[1] is True
    assert _recall_indexes(dsn) == {"messages_recall_idx": True}


def test_recall_finds_turns_still_in_the_pending_list(dsn: str) -> None:
    """New turns wait in the recall index's pending list until it fills;
    recall finds them there, and in the tree after the list is merged."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(30):
            conn.execute(
                "select memory.append('acme', 's', 'user', %s, 3)",
                (f"turn {i} about the {'quokka' if i % 10 == 3 else 'meeting'}",),
            )
        (partition,) = conn.execute(
            "select distinct tableoid::regclass::text from memory.messages"
        ).fetchone() or ("",)
        index = f"{partition}_recall_idx"

        def quokkas() -> list[tuple[int]]:
            return conn.execute(
                "select seq from memory.recall('acme', 's', 'quokka')"
                " where content like '%quokka%' order by seq"
            ).fetchall()

        in_the_list = quokkas()
        merged = conn.execute("select gin_clean_pending_list(%s::regclass)", (index,)).fetchone()
        assert merged is not None and merged[0] > 0, "the turns were in the pending list"
        assert in_the_list == [(4,), (14,), (24,)]
        assert quokkas() == in_the_list
        # Negative control: the list is empty now.
        assert conn.execute("select gin_clean_pending_list(%s::regclass)", (index,)).fetchone() == (
            0,
        )
