"""The SQL API as a DBA or a SQL client uses it: psql, partitions, maintenance."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from datetime import UTC, datetime

import psycopg
import pytest

from pymem.validation import estimate_tokens


def _psql(dsn: str, sql: str) -> str:
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    done = subprocess.run(
        [psql, dsn, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PGOPTIONS": ""},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_psql_client_appends_and_reads_context(dsn: str) -> None:
    out = _psql(
        dsn, "select seq from memory.append('acme', 's-1', 'user', 'My order arrived broken', 6)"
    )
    assert out == "1"
    _psql(dsn, "select memory.append('acme', 's-1', 'assistant', 'Sorry! Which order?')")
    rows = _psql(
        dsn,
        "select part || '|' || seq || '|' || role || '|' || content "
        "from memory.context('acme', 's-1', 2000)",
    ).splitlines()
    assert rows == [
        "recent|1|user|My order arrived broken",
        "recent|2|assistant|Sorry! Which order?",
    ]
    # A SQL client passing no count gets an estimate, marked as such.
    assert (
        _psql(dsn, "select tokens_estimated from memory.history('acme', 's-1') where seq = 2")
        == "t"
    )


def test_the_sql_estimate_is_the_python_clients(dsn: str) -> None:
    # A row written without a count is counted alike from SQL and Python:
    # whitespace of every kind the estimate splits on, and of kinds it does not.
    rng = random.Random(11)
    alphabet = [" ", "\t", "\n", "\r", "\f", "\v", "\u00a0", "\u2003", "a", "é", "字", ".", "😀"]
    texts = ["", " ", " \t\n", "a", " a ", "a  b", "hello there, world", "x\n", "\u00a0"]
    texts += ["".join(rng.choices(alphabet, k=rng.randint(0, 40))) for _ in range(400)]
    texts += [" ".join(["word"] * n) for n in range(1, 30)]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "select array_agg(memory.estimate_tokens(u.t) order by u.i) "
            "from unnest(%s::text[]) with ordinality as u (t, i)",
            (texts,),
        ).fetchone()
    assert row is not None
    assert row[0] == [estimate_tokens(t) for t in texts]


def test_psql_client_sees_typed_errors(dsn: str) -> None:
    psql = shutil.which("psql") or "/usr/lib/postgresql/15/bin/psql"
    done = subprocess.run(
        [
            psql,
            dsn,
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-c",
            "\\set VERBOSITY verbose",
            "-c",
            "select * from memory.context('acme', 'nope', 100)",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0
    assert "ME001" in done.stderr and "memory: session acme/nope not found" in done.stderr


def test_default_partition_rows_move_into_new_partition(dsn: str) -> None:
    far = datetime(2040, 3, 15, tzinfo=UTC)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'now', 1)")
        conn.execute(
            "insert into memory.messages (tenant_id, session_id, seq, role, content, search, "
            "tokens, created_at) values ('t', 's', 2, 'user', 'from the future', "
            "to_tsvector('english', 'from the future'), 3, %s)",
            (far,),
        )
        assert conn.execute("select count(*) from memory.messages_default").fetchone() == (1,)
        created = conn.execute("select * from memory.maintain_partitions()").fetchall()
        assert created == [("messages_p2040_03",)]
        assert conn.execute("select count(*) from memory.messages_default").fetchone() == (0,)
        assert conn.execute("select count(*) from memory.messages_p2040_03").fetchone() == (1,)
        # Closed like every pymem table.
        assert conn.execute(
            "select relrowsecurity and relforcerowsecurity from pg_class "
            "where oid = 'memory.messages_p2040_03'::regclass"
        ).fetchone() == (True,)
        # The moved row keeps its full-text vector and is still read in order.
        rows = conn.execute("select seq, content from memory.history('t', 's')").fetchall()
        assert rows == [(1, "now"), (2, "from the future")]
        assert conn.execute(
            "select search is not null from memory.messages where seq = 2"
        ).fetchone() == (True,)
        again = conn.execute("select * from memory.maintain_partitions()").fetchall()
        assert again == []
        # The deprecated name still answers, for one release.
        assert conn.execute("select * from memory.ensure_partitions(3)").fetchall() == []


def test_maintain_purges_expired_sessions(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 'old', 'user', 'bye', 1)")
        conn.execute("select memory.append('t', 'new', 'user', 'hi', 1)")
        conn.execute("select memory.extend_session('t', 'old', '1 minute')")
        conn.execute("select memory.extend_session('t', 'new', '30 days')")
        row = conn.execute("select * from memory.maintain(3, now() + interval '1 hour')").fetchone()
        assert row is not None and row[1] == 1
        left = conn.execute("select session_id from memory.sessions").fetchall()
        assert left == [("new",)]
        assert conn.execute(
            "select count(*) from memory.messages where session_id = 'old'"
        ).fetchone() == (0,)


def test_append_many_from_sql(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "select seq from memory.append_many('t', 's', array["
            "row('user', 'Hi', 1, '{}', null, null)::memory.message_input, "
            "row('assistant', 'Hello!', 2, '{}', null, null)::memory.message_input])"
        ).fetchall()
    assert rows == [(1,), (2,)]


@pytest.mark.parametrize(
    ("call", "code"),
    [
        ("select memory.append('t', 's', 'user', 'x', metadata => '[1]')", "ME009"),
        ("select memory.append('t', 's', 'user', 'x', metadata => 'not json')", "22P02"),
        ("select memory.append('t', 's', 'user', null)", "ME002"),
        ("select memory.append(null, 's', 'user', 'x')", "ME006"),
        ("select memory.append('t', 's', 'user', 'x', embedding => '[1,2]')", "ME007"),
        ("select memory.append_many('t', 's', array[]::memory.message_input[])", "ME002"),
        ("select memory.ensure_partitions(-1)", "ME002"),
        ("select memory.purge_expired(now(), 0)", "ME002"),
        ("select memory.restore_session('t', 'missing')", "ME001"),
        ("select memory.delete_session('t', 'missing')", "ME001"),
        ("select memory.extend_session('t', 'missing', '1 day')", "ME001"),
    ],
)
def test_sql_errors_have_stable_codes(dsn: str, call: str, code: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(call)  # type: ignore[arg-type]
        assert caught.value.sqlstate == code
        assert conn.execute("select count(*) from memory.messages").fetchone() == (0,)
        assert conn.execute("select count(*) from memory.sessions").fetchone() == (0,)


def test_call_keys_let_a_retried_call_find_its_first_attempt(dsn: str) -> None:
    """memory.append's call_key: kept on the turn, not remembered as an
    idempotency key; a retried call finds the turn its first attempt stored."""
    with psycopg.connect(dsn, autocommit=True) as conn:

        def append(content: str, key: str, retried: bool) -> tuple[object, ...]:
            row = conn.execute(
                "select seq, duplicate from memory.append('acme', 's', 'user', %s, 3, "
                "call_key => %s, call_retried => %s)",
                (content, key, retried),
            ).fetchone()
            assert row is not None
            return tuple(row)

        assert append("first", "pymem:a", False) == (1, False)
        assert append("first", "pymem:a", True) == (1, True)  # the retry finds it
        assert append("second", "pymem:b", True) == (2, False)  # nothing to find: stored
        counters = conn.execute(
            "select last_seq, message_count, token_count from memory.sessions "
            "where session_id = 's'"
        ).fetchone()
        assert counters == (2, 2, 6)  # the found retry gave back what it counted
        assert conn.execute("select count(*) from memory.idempotency_keys").fetchone() == (0,)
        batch = conn.execute(
            "select seq, duplicate from memory.append_many('acme', 's', array["
            "row('user', 'x', 1, '{}', null, null)::memory.message_input,"
            "row('user', 'y', 1, '{}', null, null)::memory.message_input],"
            "call_keys => array['pymem:x', 'pymem:y'])"
        ).fetchall()
        assert batch == [(3, False), (4, False)]
        again = conn.execute(
            "select seq, duplicate from memory.append_many('acme', 's', array["
            "row('user', 'x', 1, '{}', null, null)::memory.message_input,"
            "row('user', 'y', 1, '{}', null, null)::memory.message_input],"
            "call_keys => array['pymem:x', 'pymem:y'], call_retried => true)"
        ).fetchall()
        assert again == [(3, True), (4, True)]
        for bad in (
            "select memory.append('acme', 's', 'user', 'z', 1, idempotency_key => 'k', "
            "call_key => 'pymem:z')",
            "select * from memory.append_many('acme', 's', array["
            "row('user', 'z', 1, '{}', null, null)::memory.message_input], "
            "call_keys => array['pymem:1', 'pymem:2'])",
        ):
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(bad)
            assert caught.value.sqlstate == "ME002"
        assert conn.execute("select max(seq) from memory.messages").fetchone() == (4,)
