"""memory.append_many stores a batch of plain messages in one insert under one
session lock (memory._append_plain_batch): the same rows, counters, user
binding, TTL, trimming and background jobs as memory.append called message by
message, and message by message whenever a message asks for more
(idempotency keys, parts, a retry) or is bad."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[Any]

MESSAGE_COLUMNS = (
    "seq, role, content, sealed, key_version, search, tokens, tokens_estimated, metadata,"
    " embedding::text, idempotency_key, created_at, structured, tool_parts"
)
SESSION_COLUMNS = (
    "first_seq, last_seq, message_count, token_count, unsummarized_tokens, user_id,"
    " key_version, expires_at, max_messages, max_tokens"
)


def _dimension(conn: Conn) -> int:
    row = conn.execute("select embedding_dim from memory.settings").fetchone()
    assert row is not None
    return int(row[0])


def _batch(conn: Conn, start: int, count: int) -> list[tuple[Any, ...]]:
    """(role, content, tokens, metadata, embedding, idempotency_key): every
    third message with an embedding, every fourth without a token count,
    every fifth without metadata."""
    one = "[" + ",".join(["0.5"] * _dimension(conn)) + "]"
    return [
        (
            "user" if i % 2 else "assistant",
            f"turn {i} about the tent pole and the refund",
            None if i % 4 == 0 else 7,
            None if i % 5 == 0 else f'{{"n": {i}}}',
            one if i % 3 == 0 else None,
            None,
        )
        for i in range(start, start + count)
    ]


def _append_many(
    conn: Conn, session: str, batch: list[tuple[Any, ...]], **extra: Any
) -> list[tuple[Any, ...]]:
    keys = extra.pop("call_keys", None)
    return conn.execute(
        "select seq, duplicate from memory.append_many('acme', %(session)s, array("
        "  select row(m.role, m.content, m.tokens, m.metadata::jsonb, m.embedding::public.vector,"
        "             m.key)::memory.message_input"
        "    from unnest(%(roles)s::text[], %(contents)s::text[], %(tokens)s::integer[],"
        "                %(metas)s::text[], %(embeddings)s::text[], %(keys)s::text[])"
        "         with ordinality as m (role, content, tokens, metadata, embedding, key, i)"
        "   order by m.i),"
        " user_id => %(user_id)s, call_keys => %(call_keys)s)",
        {
            "session": session,
            "roles": [m[0] for m in batch],
            "contents": [m[1] for m in batch],
            "tokens": [m[2] for m in batch],
            "metas": [m[3] for m in batch],
            "embeddings": [m[4] for m in batch],
            "keys": [m[5] for m in batch],
            "user_id": extra.pop("user_id", None),
            "call_keys": keys,
        },
    ).fetchall()


def _append_each(
    conn: Conn, session: str, batch: list[tuple[Any, ...]], user_id: str | None = None,
    call_keys: list[str] | None = None,
) -> list[tuple[Any, ...]]:  # fmt: skip
    return [
        conn.execute(
            "select seq, duplicate from memory.append('acme', %s, %s, %s, %s, %s::jsonb,"
            " %s::public.vector, %s, %s, call_key => %s)",
            (session, *m[:5], m[5], user_id, call_keys[i] if call_keys else None),
        ).fetchone()
        for i, m in enumerate(batch)
    ]


def _stored(conn: Conn, session: str) -> tuple[list[Any], Any, list[Any]]:
    rows = conn.execute(
        f"select {MESSAGE_COLUMNS} from memory.messages"
        " where tenant_id = 'acme' and session_id = %s order by seq",
        (session,),
    ).fetchall()
    counters = conn.execute(
        f"select {SESSION_COLUMNS} from memory.sessions"
        " where tenant_id = 'acme' and session_id = %s",
        (session,),
    ).fetchone()
    jobs = conn.execute(
        "select kind, status, trace_context from memory.jobs"
        " where tenant_id = 'acme' and session_id = %s order by kind",
        (session,),
    ).fetchall()
    return rows, counters, jobs


def _appends_called(conn: Conn) -> int:
    """memory.append calls counted by this backend and not yet reported
    (track_functions is on): compare two readings in one transaction."""
    row = conn.execute(
        "select coalesce(sum(calls), 0) from pg_stat_xact_user_functions"
        " where schemaname = 'memory' and funcname = 'append'"
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def conn(dsn: str) -> Any:
    with psycopg.connect(dsn, autocommit=True) as conn:
        # The tenant exists (its first append creates it) and asks for every
        # kind of background work: digests every 200 tokens, embeddings.
        conn.execute("select memory.append('acme', 'first', 'user', 'hello', 1)")
        conn.execute(
            "update memory.tenants set summary_every_tokens = 200, embed_messages = true"
            " where tenant_id = 'acme'"
        )
        conn.execute("select memory.configure_tenant('acme', default_ttl => '30 days')")
        conn.execute("delete from memory.jobs")
        yield conn


def test_a_batch_stores_what_the_same_appends_store(conn: Conn) -> None:
    with conn.transaction():  # one now(): the same created_at and expires_at
        conn.execute("set local track_functions = 'pl'")
        before = _appends_called(conn)
        keys = [f"pymem:k{i}" for i in range(40)]
        batched = _append_many(conn, "s-batch", _batch(conn, 0, 40), user_id="u-1",
                               call_keys=keys)  # fmt: skip
        assert _appends_called(conn) == before, "stored at once, not message by message"
        each = _append_each(conn, "s-each", _batch(conn, 0, 40), "u-1", keys)
        assert _appends_called(conn) == before + 40
        assert batched == each == [(seq, False) for seq in range(1, 41)]
        # A second batch into the existing session, past seq 750 and 1,000:
        # term statistics are due (as at every 250th turn from the 750th).
        batched += _append_many(conn, "s-batch", _batch(conn, 40, 990), user_id="u-1")
        each += _append_each(conn, "s-each", _batch(conn, 40, 990), "u-1")
        assert _appends_called(conn) == before + 40 + 990
        assert batched == each
        got, want = _stored(conn, "s-batch"), _stored(conn, "s-each")
    assert got[0] == want[0], "every column of every row"
    assert got[1] == want[1], "counters, user, TTL"
    assert got[2] == want[2] and {k for k, _, _ in got[2]} == {"count_terms", "embed", "summarize"}


def test_a_session_without_a_user_takes_the_batch_s_and_another_user_is_refused(
    conn: Conn,
) -> None:
    _append_many(conn, "s-1", _batch(conn, 0, 2))
    _append_many(conn, "s-1", _batch(conn, 2, 2), user_id="u-1")
    assert _stored(conn, "s-1")[1][5] == "u-1"
    with pytest.raises(psycopg.Error) as caught:
        _append_many(conn, "s-1", _batch(conn, 4, 2), user_id="u-2")
    assert caught.value.sqlstate == "ME012"
    assert _stored(conn, "s-1")[1][1] == 4, "nothing of the refused batch counted"


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (("user", "x", 1, None, None, "idem-1"), "message by message"),
        (("robot", "x", 1, None, None, None), "ME010"),
        (("user", None, 1, None, None, None), "ME002"),
        (("user", "x", -1, None, None, None), "ME002"),
        (("user", "x", 1, "[1]", None, None), "ME009"),
        (("user", "x", 1, None, "[1,2]", None), "ME007"),
    ],
)
def test_a_batch_asking_for_more_or_holding_a_bad_message_goes_message_by_message(
    conn: Conn, second: tuple[Any, ...], expected: str
) -> None:
    batch = _batch(conn, 1, 4)
    batch[1] = second
    with conn.transaction():
        conn.execute("set local track_functions = 'pl'")
        before = _appends_called(conn)
        if expected.startswith("ME"):
            with pytest.raises(psycopg.Error) as caught, conn.transaction():
                _append_many(conn, "s-1", batch)
            assert caught.value.sqlstate == expected, "memory.append's own error"
            assert _stored(conn, "s-1")[0] == [], "nothing written"
        else:
            _append_many(conn, "s-1", batch)
            assert _appends_called(conn) == before + 4


def _deleted(conn: Conn, session: str) -> tuple[int, int, int]:
    """Turns the audit log says were deleted: how many, the first and the last."""
    row = conn.execute(
        "select coalesce(sum((details ->> 'count')::int), 0),"
        " min((details ->> 'seq_from')::int), max((details ->> 'seq_to')::int)"
        " from memory.audit_log where action = 'messages.delete' and object_key = %s",
        (session,),
    ).fetchone()
    assert row is not None
    return row


@pytest.mark.parametrize(
    "caps",
    ["max_messages => 7", "max_tokens => 60", "max_messages => 9, max_tokens => 80"],
)
def test_a_capped_session_is_trimmed_once_to_what_trimming_each_time_leaves(
    conn: Conn, caps: str
) -> None:
    with conn.transaction():  # one now(): the same expires_at
        for session in ("s-batch", "s-each"):
            _append_each(conn, session, _batch(conn, 0, 3))
            conn.execute(f"select memory.configure_session('acme', %s, {caps})", (session,))
        conn.execute("set local track_functions = 'pl'")
        before = _appends_called(conn)
        batched = _append_many(conn, "s-batch", _batch(conn, 3, 12))
        assert _appends_called(conn) == before, "stored and trimmed at once"
        each = _append_each(conn, "s-each", _batch(conn, 3, 12))
        got, want = _stored(conn, "s-batch"), _stored(conn, "s-each")
    assert batched == each
    assert got[0] == want[0] and got[1] == want[1], "the same turns kept, the same counters"
    assert len(got[0]) < 15, "trimmed"
    gone, gone_each = _deleted(conn, "s-batch"), _deleted(conn, "s-each")
    assert gone == gone_each, "the same turns deleted (in one audited statement, not many)"


def test_a_message_over_the_token_cap_fails_the_batch_as_it_fails_alone(conn: Conn) -> None:
    conn.execute("select memory.configure_tenant('acme', max_tokens => 50)")
    batch = _batch(conn, 0, 4)
    batch[1] = ("user", "x", 70, None, None, None)
    batch[2] = ("user", "y", 90, None, None, None)
    with pytest.raises(psycopg.Error) as alone:
        _append_each(conn, "s-each", batch)
    with pytest.raises(psycopg.Error) as batched:
        _append_many(conn, "s-batch", batch)
    assert batched.value.sqlstate == alone.value.sqlstate == "ME008"
    assert batched.value.diag.message_primary == alone.value.diag.message_primary, (
        "the first message over the cap"
    )
    assert _stored(conn, "s-batch")[1] is None, "nothing written"


def test_a_retry_goes_message_by_message(conn: Conn) -> None:
    with conn.transaction():
        conn.execute("set local track_functions = 'pl'")
        before = _appends_called(conn)
        conn.execute(
            "select memory.append_many('acme', 's-2', array[row('user', 'hi', 1, '{}', null,"
            " null)::memory.message_input], call_keys => array['pymem:c1'],"
            " call_retried => true)"
        )
        assert _appends_called(conn) == before + 1, (
            "a retry looks for its first attempt per message"
        )


def test_a_deleted_session_refuses_the_batch(conn: Conn) -> None:
    _append_many(conn, "s-1", _batch(conn, 0, 2))
    conn.execute("select memory.delete_session('acme', 's-1')")
    with pytest.raises(psycopg.Error) as caught:
        _append_many(conn, "s-1", _batch(conn, 2, 2))
    assert caught.value.sqlstate == "ME003"
