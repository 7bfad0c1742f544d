"""memory.append_many stores a batch in one insert under one session lock
(memory._append_batch): the same rows (parts, estimates, the personal data
policy applied, idempotency keys remembered), counters, user binding, TTL,
trimming and background jobs as memory.append called message by message, and
message by message whenever the batch repeats a stored key, is a retry or
holds a bad message, so that each retry finds its stored seq and the first
error in batch order is raised."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from pymem.security.keys import generate_master_key

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
    """memory.append_many of (role, content, tokens, metadata, embedding,
    idempotency_key[, parts, name]) messages, as memory.turn_input."""
    full = [(*m, None, None)[:8] for m in batch]
    return conn.execute(
        "select seq, duplicate from memory.append_many('acme', %(session)s, array("
        "  select row(m.role, m.content, m.tokens, m.metadata::jsonb, m.embedding::public.vector,"
        "             m.key, m.parts::jsonb, m.name)::memory.turn_input"
        "    from unnest(%(roles)s::text[], %(contents)s::text[], %(tokens)s::integer[],"
        "                %(metas)s::text[], %(embeddings)s::text[], %(keys)s::text[],"
        "                %(parts)s::text[], %(names)s::text[])"
        "         with ordinality as m (role, content, tokens, metadata, embedding, key, parts,"
        "                               name, i)"
        "   order by m.i),"
        " user_id => %(user_id)s, call_keys => %(call_keys)s)",
        {
            "session": session,
            **{
                name: [m[i] for m in full]
                for i, name in enumerate(
                    ("roles", "contents", "tokens", "metas", "embeddings", "keys", "parts", "names")
                )
            },
            "user_id": extra.pop("user_id", None),
            "call_keys": extra.pop("call_keys", None),
        },
    ).fetchall()


def _append_each(
    conn: Conn, session: str, batch: list[tuple[Any, ...]], user_id: str | None = None,
    call_keys: list[str] | None = None,
) -> list[tuple[Any, ...]]:  # fmt: skip
    return [
        conn.execute(
            "select seq, duplicate from memory.append('acme', %s, %s, %s, %s, %s::jsonb,"
            " %s::public.vector, %s, %s, call_key => %s, parts => %s::jsonb, name => %s)",
            (session, *m[:6], user_id, call_keys[i] if call_keys else None,
             *(*m, None, None)[6:8]),
        ).fetchone()
        for i, m in enumerate(batch)
    ]  # fmt: skip


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
        (("user", "x", 1, None, None, "turn-1"), "message by message"),  # a key given twice
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
    if second[5]:
        batch[3] = second  # the same message twice: the second is its retry
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


def _keys(conn: Conn, session: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        "select idempotency_key, seq, request_hash, created_at from memory.idempotency_keys"
        " where tenant_id = 'acme' and session_id = %s order by seq",
        (session,),
    ).fetchall()


def _keyed(batch: list[tuple[Any, ...]], prefix: str = "lc:") -> list[tuple[Any, ...]]:
    """The batch with an idempotency key for every message but every third."""
    return [(*m[:5], None if i % 3 == 2 else f"{prefix}{i}", *m[6:]) for i, m in enumerate(batch)]


# An agent's step: a named user turn, a tool call, its result, the answer
# as one text part (stored as plain text), and plain text.
STEP = [
    ("user", "Weather in Oslo? Mail ana@example.com", None, None, None, None, None, "ana"),
    ("assistant", None, None, '{"step": 1}', None, None,
     '[{"type": "tool_call", "id": "call_1", "name": "get_weather",'
     ' "arguments": {"city": "Oslo", "notify": "ana@example.com"}}]', None),
    ("tool", None, 4, None, None, None,
     '[{"type": "tool_result", "call_id": "call_1", "content": "12 C, call +47 22 33 44 55"}]',
     None),
    ("assistant", None, 9, None, None, None, '[{"type": "text", "text": "It is 12 C."}]', None),
    ("assistant", "Anything else? Write to ana@example.com", None, None, None, None, None, None),
]  # fmt: skip


def _at_once_and_each(
    conn: Conn, batch: list[tuple[Any, ...]], user_id: str | None = None, rows: Any = None
) -> tuple[Any, ...]:
    """The batch through memory.append_many into s-batch (asserted to be
    stored at once) and through memory.append into s-each, in one
    transaction (one now()): both results, both sessions' rows (`rows`, by
    default _stored: rows, counters, jobs) and both sessions' stored keys."""
    read = rows or _stored
    with conn.transaction():
        conn.execute("set local track_functions = 'pl'")
        before = _appends_called(conn)
        batched = _append_many(conn, "s-batch", batch, user_id=user_id)
        assert _appends_called(conn) == before, "stored at once"
        each = _append_each(conn, "s-each", batch, user_id)
        return (batched, each, read(conn, "s-batch"), read(conn, "s-each"),
                _keys(conn, "s-batch"), _keys(conn, "s-each"))  # fmt: skip


@pytest.mark.parametrize("keyed", [False, True])
@pytest.mark.parametrize("policy", [None, '{"email": "redact", "phone": "tag"}'])
def test_an_agent_step_is_stored_at_once_as_message_by_message(
    conn: Conn, policy: str | None, keyed: bool
) -> None:
    """With `keyed`, behind six plain turns, with idempotency keys (as the
    LangGraph node sends them) and a user."""
    if policy:
        conn.execute("select memory.configure_pii('acme', %s::jsonb)", (policy,))
    batch = _keyed([*_batch(conn, 0, 6), *STEP]) if keyed else STEP
    batched, each, got, want, keys, keys_each = _at_once_and_each(
        conn, batch, "ana" if keyed else None
    )
    assert batched == each == [(seq, False) for seq in range(1, len(batch) + 1)]
    assert got == want, "documents, counts, estimates, tool parts, policy applied, jobs"
    structured = [row[12] for row in got[0]][-5:]
    assert structured == [True, True, True, False, False]
    if policy:
        assert "ana@example.com" not in str(got[0]), "redacted in text and tool arguments"
    # Each key with its seq, its request hash (of the text as stored), its time.
    assert keys == keys_each and len(keys) == (8 if keyed else 0)


def test_blocked_personal_data_fails_the_batch_as_it_fails_alone(conn: Conn) -> None:
    conn.execute("select memory.configure_pii('acme', '{\"card\": \"block\"}'::jsonb)")
    batch = _batch(conn, 0, 4)
    batch[2] = ("user", "my card is 4111 1111 1111 1111", None, None, None, None)
    with pytest.raises(psycopg.Error) as alone:
        _append_each(conn, "s-each", batch)
    with pytest.raises(psycopg.Error) as batched:
        _append_many(conn, "s-batch", batch)
    assert batched.value.sqlstate == alone.value.sqlstate == "ME019"
    assert batched.value.diag.message_primary == alone.value.diag.message_primary
    assert _stored(conn, "s-batch")[1] is None, "nothing written"


def test_the_first_error_in_batch_order_is_raised(conn: Conn) -> None:
    """A bad part in the second message of a deleted session's batch: message
    by message the first message already fails on the session (ME003)."""
    for session in ("s-batch", "s-each"):
        _append_each(conn, session, _batch(conn, 0, 1))
        conn.execute("select memory.delete_session('acme', %s)", (session,))
    batch = [*_batch(conn, 1, 1), ("user", None, 1, None, None, None, '[{"type": "nope"}]', None)]
    errors = []
    for append in (_append_each, _append_many):
        with pytest.raises(psycopg.Error) as caught:
            append(conn, "s-each" if append is _append_each else "s-batch", batch)
        errors.append((caught.value.sqlstate, caught.value.diag.message_primary))
    assert errors[0][0] == "ME003"
    assert errors[1] == (errors[0][0], errors[0][1].replace("s-each", "s-batch"))


def test_a_deleted_session_refuses_the_batch(conn: Conn) -> None:
    _append_many(conn, "s-1", _batch(conn, 0, 2))
    conn.execute("select memory.delete_session('acme', 's-1')")
    with pytest.raises(psycopg.Error) as caught:
        _append_many(conn, "s-1", _batch(conn, 2, 2))
    assert caught.value.sqlstate == "ME003"


def _busy(dsn: str, column: str) -> tuple[list[tuple[Any, ...]], Any]:
    """(seq, `column`) of every turn of session busy, and its counters."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            f"select seq, {column} from memory.messages"
            " where tenant_id = 'acme' and session_id = 'busy' order by seq"
        ).fetchall()
        return rows, _stored(conn, "busy")[1]


def test_concurrent_batches_and_appends_on_one_session_interleave_whole(dsn: str) -> None:
    """Eight writers on one session, batches of five and single appends mixed:
    every seq once, gap-free, and each batch's messages contiguous in order."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('acme', 'busy', 'user', 'start', 1)")

    def write(writer: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for round_ in range(15):
                if (writer + round_) % 3:
                    batch = [
                        ("user", f"w{writer} r{round_} m{m}", 2, None, None, None) for m in range(5)
                    ]
                    got = _append_many(conn, "busy", batch)
                    assert [seq for seq, _ in got] == list(range(got[0][0], got[0][0] + 5))
                else:
                    conn.execute(
                        "select memory.append('acme', 'busy', 'user', %s, 2)",
                        (f"w{writer} r{round_} single",),
                    )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, range(8)))
    rows, counters = _busy(dsn, "content")
    batches = sum(1 for w in range(8) for r in range(15) if (w + r) % 3)
    total = 1 + batches * 5 + (8 * 15 - batches)
    assert [seq for seq, _ in rows] == list(range(1, total + 1)), "every seq once, gap-free"
    assert counters[1:3] == (total, total)
    by_content = {content: seq for seq, content in rows}
    for w in range(8):
        for r in range(15):
            if (w + r) % 3:
                seqs = [by_content[f"w{w} r{r} m{m}"] for m in range(5)]
                assert seqs == list(range(seqs[0], seqs[0] + 5)), "a batch stays whole"


def test_a_retried_batch_finds_its_stored_seqs_message_by_message(conn: Conn) -> None:
    """A batch sent again with one more message: the stored ones answer with
    their seqs (duplicate), only the new one is stored, nothing counted twice."""
    first, again = _keyed(_batch(conn, 0, 4)), _keyed(_batch(conn, 0, 4) + _batch(conn, 9, 1))
    with conn.transaction():
        conn.execute("set local track_functions = 'pl'")
        results = []
        for append, session in ((_append_many, "s-batch"), (_append_each, "s-each")):
            append(conn, session, first)
            before = _appends_called(conn)
            results.append(append(conn, session, again))
            if append is _append_many:
                assert _appends_called(conn) == before + 5, "message by message"
        got, want = _stored(conn, "s-batch"), _stored(conn, "s-each")
        keys, keys_each = _keys(conn, "s-batch"), _keys(conn, "s-each")
    assert results[0] == results[1]
    # The third message has no key: message by message it is stored again.
    assert results[0] == [(1, True), (2, True), (5, False), (4, True), (6, False)]
    assert got == want and keys == keys_each
    assert got[1][1:3] == (6, 6), "last_seq, message_count"


def test_a_key_reused_for_another_message_fails_the_batch(conn: Conn) -> None:
    _append_many(conn, "s-1", _keyed(_batch(conn, 0, 2)))
    batch = _keyed(_batch(conn, 2, 3))
    batch[1] = ("user", "something else", 3, None, None, "lc:0")  # the first message's
    with pytest.raises(psycopg.Error) as caught:
        _append_many(conn, "s-1", batch)
    assert caught.value.sqlstate == "ME011"
    assert _stored(conn, "s-1")[1][1] == 2 and len(_keys(conn, "s-1")) == 2, "nothing written"


def test_an_idempotency_key_with_a_call_key_is_refused(conn: Conn) -> None:
    batch = _keyed(_batch(conn, 0, 2))
    with pytest.raises(psycopg.Error) as caught:
        _append_many(conn, "s-1", batch, call_keys=["pymem:c1", "pymem:c2"])
    assert caught.value.sqlstate == "ME002"
    assert _stored(conn, "s-1")[1] is None, "nothing written"


def test_a_twin_that_stores_a_key_while_the_batch_waits_is_found(dsn: str, conn: Conn) -> None:
    """The batch checks its keys, then waits for the session lock a twin holds;
    the twin commits one of the keys. Under the lock the batch finds it, gives
    back what it counted and goes message by message: the twin's seq answers."""
    _append_many(conn, "s-1", _batch(conn, 0, 2))
    batch = _keyed(_batch(conn, 2, 2))  # both keyed
    with psycopg.connect(dsn) as twin:
        twin.execute(
            "select memory.append('acme', 's-1', %s, %s, %s, idempotency_key => %s)",
            (batch[0][0], batch[0][1], batch[0][2], batch[0][5]),
        )  # holds the session row lock until commit

        def send() -> tuple[list[tuple[Any, ...]], int]:
            with psycopg.connect(dsn) as other:
                other.execute("set local track_functions = 'pl'")
                got = _append_many(other, "s-1", batch)
                return got, _appends_called(other)

        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(send)
            for _ in range(100):  # until the batch waits for the lock
                row = conn.execute(
                    "select count(*) from pg_stat_activity"
                    " where wait_event_type = 'Lock' and query like '%%append_many%%'"
                ).fetchone()
                if row and row[0]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the batch never waited for the session lock")
            twin.commit()
            got, appends = waiting.result(timeout=30)
    assert got == [(3, True), (4, False)], "the twin's seq, then the next"
    assert appends == 2, "message by message after the twin was found"
    rows, counters, _ = _stored(conn, "s-1")
    assert [r[0] for r in rows] == [1, 2, 3, 4], "gap-free"
    assert counters[1:3] == (4, 4), "counted once"
    assert [(k, seq) for k, seq, _, _ in _keys(conn, "s-1")] == [
        (batch[0][5], 3), (batch[1][5], 4)
    ]  # fmt: skip


def test_concurrent_batches_sharing_keys_store_each_key_once(dsn: str) -> None:
    """Eight writers send overlapping keyed batches (every batch is also sent
    by another writer): each message stored once, gap-free, counters exact."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('acme', 'busy', 'user', 'start', 1)")

    def write(writer: int) -> list[tuple[str, int, bool]]:
        seen = []
        with psycopg.connect(dsn, autocommit=True) as conn:
            for round_ in range(12):
                shared = (writer // 2) * 100 + round_  # writers 2k and 2k+1 send the same
                batch = [
                    ("user", f"b{shared} m{m}", 2, None, None, f"k{shared}-{m}") for m in range(4)
                ]
                got = _append_many(conn, "busy", batch)
                seen += [(m[5], seq, dup) for m, (seq, dup) in zip(batch, got, strict=True)]
        return seen

    with ThreadPoolExecutor(8) as pool:
        answers = [a for writer in pool.map(write, range(8)) for a in writer]
    rows, counters = _busy(dsn, "idempotency_key")
    total = 1 + 4 * 12 * 4
    assert [seq for seq, _ in rows] == list(range(1, total + 1)), "every seq once, gap-free"
    assert counters[1:3] == (total, total)
    stored = {key: seq for seq, key in rows}
    assert len(stored) == total, "each key once"
    assert all(stored[key] == seq for key, seq, _ in answers), "both senders told the same seq"
    assert sum(1 for _, _, dup in answers if dup) == 4 * 12 * 4, "one of each pair a duplicate"


def test_a_retried_batch_on_a_deleted_session_finds_its_seqs_as_message_by_message(
    conn: Conn,
) -> None:
    """memory.append answers a retry before the session lock, so even a deleted
    session returns the stored seqs; a batch that repeats a stored key does too."""
    batch = _keyed(_batch(conn, 0, 2))  # both keyed
    results = []
    for append, session in ((_append_many, "s-batch"), (_append_each, "s-each")):
        append(conn, session, batch)
        conn.execute("select memory.delete_session('acme', %s)", (session,))
        results.append(append(conn, session, batch))
    assert results[0] == results[1] == [(1, True), (2, True)]


MASTER = generate_master_key()


@pytest.fixture
def sealed(dsn: str, conn: Conn) -> Any:
    """A connection with a master key for tenant acme, which now seals its turns."""
    with psycopg.connect(f"{dsn} options='-c pymem.master_key={MASTER}'", autocommit=True) as c:
        c.execute("select set_config('pymem.tenant', 'acme', false)")
        yield c


def _revealed(conn: Conn, session: str) -> list[tuple[Any, ...]]:
    """Every row with its text revealed (sealed bytes differ: a fresh IV each)."""
    columns = MESSAGE_COLUMNS.replace(
        "content, sealed,",
        "memory.reveal(content, sealed, key_version), sealed is not null, content is null,",
    )
    return conn.execute(
        f"select {columns} from memory.messages"
        " where tenant_id = 'acme' and session_id = %s order by seq",
        (session,),
    ).fetchall()


@pytest.mark.parametrize("mode", ["content_with_search", "content"])
def test_a_sealed_batch_is_stored_at_once_as_message_by_message(sealed: Conn, mode: str) -> None:
    """The tenant's data keys are unwrapped once for the batch; each text is
    sealed under the active key, indexed unless the mode is `content`, and
    each idempotency key remembers an HMAC under that key."""
    sealed.execute("select memory.configure_encryption('acme', %s)", (mode,))
    batch = _keyed([*_batch(sealed, 0, 6), *STEP])
    batched, each, got, want, keys, keys_each = _at_once_and_each(sealed, batch, "ana", _revealed)
    assert batched == each
    assert got == want and _stored(sealed, "s-batch")[1] == _stored(sealed, "s-each")[1]
    assert all(row[3] and row[4] for row in got), "sealed, no text in clear"
    assert all((row[6] is None) == (mode == "content") for row in got), "search as the mode says"
    assert keys == keys_each and all(k[2].startswith("k1:") for k in keys), "HMAC under key 1"


def test_a_session_under_a_retired_key_goes_message_by_message(sealed: Conn) -> None:
    """After a rotation the session's turns are under key 1 and the active key
    is 2: memory.append reads the key again under the lock, message by message."""
    sealed.execute("select memory.configure_encryption('acme', 'content_with_search')")
    _append_many(sealed, "s-1", _batch(sealed, 0, 2))
    sealed.execute("select memory.rotate_key('acme')")
    with sealed.transaction():
        sealed.execute("set local track_functions = 'pl'")
        before = _appends_called(sealed)
        assert _append_many(sealed, "s-1", _batch(sealed, 2, 3)) == [(3, False), (4, False),
                                                                     (5, False)]  # fmt: skip
        assert _appends_called(sealed) == before + 3
    assert [row[0] for row in _revealed(sealed, "s-1")] == [1, 2, 3, 4, 5]
    assert _append_many(sealed, "s-new", _batch(sealed, 0, 2)) == [(1, False), (2, False)]
    assert {row[5] for row in _revealed(sealed, "s-new")} == {2}, "a new session: the new key"


def test_a_sealed_batch_without_the_master_key_fails_as_it_fails_alone(
    dsn: str, sealed: Conn
) -> None:
    sealed.execute("select memory.configure_encryption('acme', 'content')")
    batch = _batch(sealed, 0, 2)
    with psycopg.connect(dsn, autocommit=True) as keyless:
        errors = []
        for append in (_append_each, _append_many):
            with pytest.raises(psycopg.Error) as caught:
                append(keyless, "s-1", batch)
            errors.append((caught.value.sqlstate, caught.value.diag.message_primary))
    assert errors[0] == errors[1] and errors[0][0] == "ME018"
    assert _stored(sealed, "s-1")[1] is None, "nothing written"


def test_one_message_alone_goes_through_memory_append(conn: Conn) -> None:
    """Cheaper than setting up a batch for it (about 160 us against 250)."""
    with conn.transaction():
        conn.execute("set local track_functions = 'pl'")
        before = _appends_called(conn)
        assert _append_many(conn, "s-1", _batch(conn, 0, 1)) == [(1, False)]
        assert _appends_called(conn) == before + 1
        assert _append_many(conn, "s-1", _batch(conn, 1, 2)) == [(2, False), (3, False)]
        assert _appends_called(conn) == before + 1, "two are a batch"
