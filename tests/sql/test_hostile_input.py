"""Hostile input through every public SQL function and the Python entry points.

Oracles: a call either works or raises a pymem error (SQLSTATE class ME) or
a data exception (class 22); never a syntax, undefined-object or internal
error (a value must never become code), never a dropped connection, never a
change to another tenant's canary data.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pymem import Memory, PymemError

SQL_SHAPES = [
    "'",
    "''",
    "';",
    "'; drop table memory.messages; --",
    "' or '1'='1",
    "' or 1=1 --",
    '" or ""="',
    "'); delete from memory.sessions; --",
    "1; select pg_sleep(5)",
    "$$; drop schema memory cascade; $$",
    "$fn$ select 1 $fn$",
    "E'\\x27'",
    "U&'\\0027'",
    "x'41'",
    "1::int",
    "null::text",
    "'::regclass",
    '"memory"."messages"',
    "memory.messages",
    "/* comment */",
    "*/ select 1 /*",
    "-- trailing",
    "\\",
    "\\\\",
    "\\'",
    "%s",
    "%(tenant)s",
    "{0}",
    "{tenant}",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "../../etc/passwd",
    "%00",
    "\\u0000",
    "; vacuum full;",
    "|| pg_read_file('/etc/passwd')",
    "' union select * from memory.messages --",
    "admin'--",
    "1 or pg_sleep(3)",
    "$1",
    "?",
    ":name",
    "@var",
    "#",
    "``",
    "\r\n\r\n",
    "\t",
    "\x7f",
]
UNICODE_SHAPES = [
    "é",
    "ü" * 300,
    "日本語のテキスト",
    "🙂🚀🔥" * 20,
    "\u202eevil\u202c",
    "\u200b" * 10,
    "a\u0301\u0302\u0303",
    "\ufeffbom",
    "\U0001f9d1\u200d\U0001f680",
    "ﷺ",
    "ǅ",
    "ß" * 50,
    "\u2028line\u2029para",
    "Ω≈ç√∫",
    "\U0001d573\U0001d58a\U0001d591\U0001d591\U0001d594",
    "\u00a0nbsp",
    "\u3000ideographic",
]


def corpus() -> list[str]:
    """At least 200 hostile or malformed strings."""
    out = list(SQL_SHAPES) + list(UNICODE_SHAPES)
    for shape in SQL_SHAPES:
        out.append(f"acme{shape}")
        out.append(f"{shape}{shape}")
        out.append(f"{shape} \u202e{shape.upper()}")
    out += ["", " ", "x" * 255, "x" * 256, "x" * 10_000, "y" * 300_000]
    out += [json.dumps({"a": [1] * 50}), "{" * 500 + "}" * 500, "[" * 1000, "null", "true"]
    out += [str(n) for n in (-1, 0, 2**31, 2**63, -(2**63), 1e308)] + ["NaN", "Infinity"]
    return out


def test_corpus_is_large_enough() -> None:
    assert len(corpus()) >= 200


ALLOWED_CLASSES = {"ME", "22"}
FORBIDDEN = {"42601", "42P01", "42703", "42883", "XX000", "42501"}

SAMPLE: dict[str, Any] = {
    "text": "ok",
    "integer": 10,
    "bigint": 1,
    "boolean": False,
    "jsonb": "{}",
    "interval": "1 day",
    "timestamp with time zone": "2026-01-01T00:00:00Z",
    "double precision": None,
    "vector": None,
    "text[]": "{summarize}",
    "bigint[]": "{}",
    "vector[]": "{}",
    "memory.message_input[]": None,
}


def _functions(conn: psycopg.Connection[Any]) -> list[tuple[str, list[str], list[str]]]:
    rows = conn.execute(
        """
        select p.proname, p.proargnames,
               array(select format_type(t, null) from unnest(p.proargtypes::oid[]) as t)
          from pg_proc as p
         where p.pronamespace = 'memory'::regnamespace and left(p.proname, 1) <> '_'
           and p.prokind = 'f'
         order by p.proname
        """
    ).fetchall()
    return [(name, list(names or []), list(types)) for name, names, types in rows]


def _canary(conn: psycopg.Connection[Any]) -> str:
    rows = conn.execute(
        "select seq, role, content, tokens from memory.messages "
        "where tenant_id = 'canary' order by seq"
    ).fetchall()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


def test_every_sql_function_survives_the_corpus(dsn: str) -> None:
    outcomes: Counter[str] = Counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(3):
            conn.execute("select memory.append('canary', 'c', 'user', %s, 2)", (f"secret {i}",))
        before = _canary(conn)
        payloads = [p for p in corpus() if "\x00" not in p]
        for name, _names, types in _functions(conn):
            if name in ("maintain", "purge_expired", "purge_rate_limits", "ensure_partitions"):
                continue  # no text arguments worth attacking; maintenance is tested elsewhere
            for position, type_name in enumerate(types):
                if type_name != "text":
                    continue
                for payload in payloads:
                    args = [SAMPLE.get(t) for t in types]
                    args[position] = payload
                    query = sql.SQL("select * from memory.{}({})").format(
                        sql.Identifier(name),
                        sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for t in types),
                    )
                    try:
                        conn.execute(query, args)
                        outcomes["ok"] += 1
                    except psycopg.Error as exc:
                        state = exc.sqlstate or ""
                        assert state not in FORBIDDEN, (name, position, payload[:60], state)
                        assert state[:2] in ALLOWED_CLASSES, (name, payload[:60], state, exc)
                        outcomes[state] += 1
        assert not conn.closed
        assert _canary(conn) == before, "another tenant's data changed"
    total = sum(outcomes.values())
    print(
        f"\nhostile input: {total} SQL calls, {len(payloads)} payloads, "
        f"outcomes {dict(outcomes.most_common(6))}"
    )
    assert total > 5000


@pytest.mark.parametrize(
    "field", ["tenant", "session", "user", "content", "role", "key", "query", "metadata"]
)
def test_python_entry_points_raise_only_typed_errors(dsn: str, field: str) -> None:
    outcomes: Counter[str] = Counter()
    with Memory.connect(dsn, max_size=2) as mem:
        mem.session("c", tenant="canary").append("user", "secret canary")
        for payload in corpus():
            tenant = payload if field == "tenant" else "acme"
            session = payload if field == "session" else "s"
            user = payload if field == "user" else None
            try:
                chat = mem.session(session, tenant=tenant, user=user)
                chat.append(
                    payload if field == "role" else "user",
                    payload if field == "content" else "hello",
                    idempotency_key=payload if field == "key" else None,
                    metadata={"v": payload} if field == "metadata" else None,
                )
                window = chat.context(
                    budget=100, query=payload if field == "query" else None, strategy="hybrid"
                )
                assert window.tokens <= 100
                outcomes["ok"] += 1
            except PymemError as exc:
                outcomes[type(exc).__name__] += 1
        canary = mem.session("c", tenant="canary").messages()
        assert [m.content for m in canary] == ["secret canary"]
    assert sum(outcomes.values()) == len(corpus())
