"""Many writers on one session: seq stays gap-free and nothing is duplicated."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from pymem.backends.base import MemoryBackend
from pymem.backends.postgres import PostgresBackend
from pymem.models import NewMessage

WRITERS, APPENDS = 16, 500


def _hammer(backend: MemoryBackend, writers: int, appends: int) -> list[tuple[int, str]]:
    start = threading.Barrier(writers)

    def writer(w: int) -> list[tuple[int, str]]:
        start.wait()
        out = []
        for i in range(appends):
            content = f"w{w}-{i}"
            out.append(
                (backend.append("acme", "hot", NewMessage("user", content, tokens=1)).seq, content)
            )
        return out

    with ThreadPoolExecutor(writers) as pool:
        results = list(pool.map(writer, range(writers)))
    return [pair for chunk in results for pair in chunk]


def _stored(dsn: str, session: str = "hot") -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(  # type: ignore[return-value]
            "select seq, content from memory.messages where tenant_id = 'acme' "
            "and session_id = %s order by seq",
            (session,),
        ).fetchall()


def violations(acked: list[tuple[int, str]], rows: list[tuple[int, str]]) -> list[str]:
    """Everything wrong with a stored history, given what was acknowledged."""
    problems = []
    seqs = [seq for seq, _ in rows]
    if seqs != list(range(1, len(rows) + 1)):
        dupes = sum(n - 1 for n in Counter(seqs).values())
        problems.append(f"seq not 1..n: {dupes} duplicated seq values")
    lost = set(acked) - set(rows)
    if lost:
        problems.append(f"{len(lost)} acknowledged appends lost or stored under another seq")
    copies = Counter(content for _, content in rows)
    if copies and max(copies.values()) > 1:
        problems.append("a message was stored twice")
    return problems


@pytest.mark.slow
def test_16_writers_500_appends_on_one_session(dsn: str) -> None:
    backend = PostgresBackend(dsn, min_size=WRITERS, max_size=WRITERS).open()
    try:
        acked = _hammer(backend, WRITERS, APPENDS)
    finally:
        backend.close()
    total = WRITERS * APPENDS
    rows = _stored(dsn)
    assert violations(acked, rows) == []
    assert len(rows) == total
    with psycopg.connect(dsn) as conn:
        info = conn.execute(
            "select last_seq, message_count, token_count from memory.session_info('acme', 'hot')"
        ).fetchone()
    assert info == (total, total, total)
    # Each writer's own appends keep their order.
    for w in range(WRITERS):
        mine = [seq for seq, content in rows if content.startswith(f"w{w}-")]
        assert mine == sorted(mine) and len(mine) == APPENDS


BROKEN_APPEND = """
create or replace function memory.append(
    tenant text, session text, role text, content text, tokens integer default null,
    metadata jsonb default '{}', embedding public.vector default null,
    idempotency_key text default null, user_id text default null,
    trace_context text default null, call_key text default null,
    call_retried boolean default false, parts jsonb default null, name text default null)
returns memory.append_result language plpgsql as $fn$
declare v_seq bigint;
begin
    -- Negative control: seq from max()+1 without the session row lock.
    select coalesce(max(m.seq), 0) + 1 into v_seq from memory.messages as m
     where m.tenant_id = append.tenant and m.session_id = append.session;
    perform pg_sleep(0.001);
    insert into memory.messages (tenant_id, session_id, seq, role, content, tokens, created_at)
    values (append.tenant, append.session, v_seq, append.role, append.content, 1,
            clock_timestamp() + make_interval(secs => random()));
    return row(v_seq, now(), false)::memory.append_result;
end;
$fn$;
"""


def test_negative_control_unlocked_counter_is_caught(dsn: str) -> None:
    """Without the session row lock the same checker must see duplicated seq values."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(BROKEN_APPEND)
    backend = PostgresBackend(dsn, min_size=8, max_size=8).open()
    try:
        acked = _hammer(backend, 8, 50)
    finally:
        backend.close()
    problems = violations(acked, _stored(dsn))
    assert any("seq not 1..n" in p for p in problems), problems


def test_in_memory_backend_under_the_same_load() -> None:
    from pymem.backends.memory import InMemoryBackend

    acked = _hammer(InMemoryBackend(), 8, 200)
    assert sorted(seq for seq, _ in acked) == list(range(1, 1601))


def test_concurrent_retries_with_one_key_write_once(backend: MemoryBackend) -> None:
    backend.append("acme", "s", NewMessage("user", "before", tokens=1))
    racers = 8
    start = threading.Barrier(racers)

    def retry(_: int) -> tuple[int, bool]:
        start.wait()
        r = backend.append(
            "acme", "s", NewMessage("user", "charge card", tokens=2, idempotency_key="pay-1")
        )
        return r.seq, r.duplicate

    with ThreadPoolExecutor(racers) as pool:
        outcomes = list(pool.map(retry, range(racers)))
    assert {seq for seq, _ in outcomes} == {2}
    assert sorted(dup for _, dup in outcomes) == [False] + [True] * (racers - 1)
    assert [m.content for m in backend.history("acme", "s")] == ["before", "charge card"]
    assert backend.append("acme", "s", NewMessage("user", "after", tokens=1)).seq == 3
    info = backend.session_info("acme", "s")
    assert (info.last_seq, info.message_count, info.token_count) == (3, 3, 4)


def test_rolled_back_append_leaves_no_gap(dsn: str) -> None:
    """An append whose transaction aborts releases its seq: the next one reuses it."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'one', 1)")
        with pytest.raises(psycopg.errors.RaiseException), conn.transaction():
            conn.execute("select memory.append('t', 's', 'user', 'two', 1)")
            conn.execute("do $$ begin raise exception 'client gave up'; end $$")
        row = conn.execute("select seq from memory.append('t', 's', 'user', 'three', 1)").fetchone()
    assert row == (2,)


def test_reader_never_sees_uncommitted_append(dsn: str) -> None:
    with (
        psycopg.connect(dsn, autocommit=True) as writer,
        psycopg.connect(dsn, autocommit=True) as reader,
    ):
        writer.execute("select memory.append('t', 's', 'user', 'visible', 1)")
        with writer.transaction():
            writer.execute("select memory.append('t', 's', 'user', 'pending', 1)")
            seen = reader.execute("select content from memory.context('t', 's', 100)").fetchall()
            assert seen == [("visible",)]
        seen = reader.execute("select content from memory.context('t', 's', 100)").fetchall()
        assert seen == [("visible",), ("pending",)]
