"""The audit chain: what it records, that it is append-only, and what tampering it catches."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pymem.security.audit import CheckpointInvalid, checkpoint, verify_checkpoint

KEY = b"audit-test-key"
COLUMNS = ["at", "actor", "action", "object", "object_key", "details", "prev_hash", "hash"]


def _log(conn: psycopg.Connection[Any], tenant: str = "t") -> list[tuple[Any, ...]]:
    return conn.execute(
        "select audit_id, action, object_key, details from memory.audit_log "
        "where tenant_id = %s order by audit_id",
        (tenant,),
    ).fetchall()


def test_lifecycle_is_recorded_without_content(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "select memory.append('t', 's', 'user', 'CANARY-secret-text', 1, user_id => 'u')"
        )
        conn.execute("select memory.configure_session('t', 's', max_messages => 1)")
        conn.execute("select memory.append('t', 's', 'user', 'CANARY-two', 1)")
        conn.execute("select memory.add_summary('t', 's', 1, 2, 2, 'CANARY digest', 2)")
        conn.execute("select memory.delete_session('t', 's')")
        conn.execute("select memory.purge_session('t', 's')")
        actions = [row[1] for row in _log(conn)]
        assert actions == [
            "session.create",
            "tenant.create",
            "session.update",
            "messages.delete",
            "summary.create",
            "session.update",
            "messages.delete",
            "session.purge",
        ]
        dump = conn.execute("select string_agg(a::text, ' ') from memory.audit_log a").fetchone()
        assert dump is not None and "CANARY" not in dump[0]
        assert conn.execute("select * from memory.verify_audit()").fetchall() == []


def test_a_session_claimed_by_a_user_is_recorded_and_plain_appends_are_not(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(3):
            conn.execute("select memory.append('t', 'c', 'user', 'x', 1)")
        conn.execute("select memory.append('t', 'c', 'user', 'x', 1, user_id => 'u-9')")
        conn.execute("select memory.append('t', 'c', 'user', 'x', 1, user_id => 'u-9')")
        updates = [row[3] for row in _log(conn) if row[1] == "session.update"]
        assert len(updates) == 1
        assert "user_ref" in updates[0] and "u-9" not in str(updates[0])  # a digest, not the id
        assert conn.execute("select * from memory.verify_audit()").fetchall() == []


def test_the_log_is_append_only(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'x', 1)")
        for statement in (
            "update memory.audit_log set actor = 'me'",
            "delete from memory.audit_log",
            "truncate memory.audit_log",
        ):
            with pytest.raises(psycopg.Error) as caught:
                conn.execute(statement)  # type: ignore[arg-type]
            assert caught.value.sqlstate == "ME016"


def _build_log(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
        conn.execute(
            "select memory.append('t', 's' || g, 'user', 'x', 1) from generate_series(1, %s) as g",
            (rows - 1,),
        )


def _mutations(rng: random.Random, n: int, rows: int) -> list[str]:
    """Single-row tampering: each column, deletes, inserts, swaps."""
    out = []
    for _ in range(n):
        row = rng.randint(1, rows)
        kind = rng.choice([*COLUMNS, "delete", "insert", "swap"])
        if kind == "at":
            out.append(
                f"update memory.audit_log set at = at + interval '1 microsecond' "
                f"where audit_id = {row}"
            )
        elif kind in ("actor", "action", "object", "object_key"):
            out.append(f"update memory.audit_log set {kind} = {kind} || 'x' where audit_id = {row}")
        elif kind == "details":
            out.append(
                "update memory.audit_log set details = details || '{\"x\": 1}' "
                f"where audit_id = {row}"
            )
        elif kind in ("prev_hash", "hash"):
            out.append(
                f"update memory.audit_log set {kind} = public.digest({kind}, 'sha256') "
                f"where audit_id = {row}"
            )
        elif kind == "delete":
            out.append(f"delete from memory.audit_log where audit_id = {row}")
        elif kind == "insert":
            out.append(
                "insert into memory.audit_log select tenant_id, audit_id + 100000, at, "
                "actor, action, object, object_key, details, hash, hash "
                "from memory.audit_log where tenant_id = 't' "
                "and audit_id = (select max(audit_id) from memory.audit_log)"
            )
        else:
            other = row % rows + 1
            out.append(
                "update memory.audit_log set audit_id = 1000000 + case audit_id "
                f"when {row} then {other} else {row} end where audit_id in ({row}, {other}); "
                "update memory.audit_log set audit_id = audit_id - 1000000 "
                "where audit_id > 1000000"
            )
    return out


def test_every_single_row_tampering_is_detected(dsn: str) -> None:
    rows, n = 1000, 600
    _build_log(dsn, rows)
    rng = random.Random(20261124)
    detected = 0
    with psycopg.connect(dsn) as conn:
        assert conn.execute("select count(*) from memory.audit_log").fetchone() == (rows,)
        for statement in _mutations(rng, n, rows):
            with conn.transaction(force_rollback=True):
                # As a superuser would: triggers off, then change one row.
                conn.execute("set local session_replication_role = replica")
                conn.execute(statement)  # type: ignore[arg-type]
                detected += bool(conn.execute("select * from memory.verify_audit()").fetchall())
    print(f"\naudit: {detected}/{n} single-row mutations over a {rows}-row log detected")
    assert detected == n


def _rewrite_chain(conn: psycopg.Connection[Any]) -> None:
    """A superuser edits row 5 and recomputes every later hash and the head."""
    conn.execute("set session_replication_role = replica")
    conn.execute(
        "update memory.audit_log set details = '{\"forged\": true}' "
        "where tenant_id = 't' and audit_id = 5"
    )
    prev = conn.execute(
        "select hash from memory.audit_log where tenant_id = 't' and audit_id = 4"
    ).fetchone()[0]  # type: ignore[index]
    for (audit_id,) in conn.execute(
        "select audit_id from memory.audit_log where tenant_id = 't' "
        "and audit_id >= 5 order by audit_id"
    ).fetchall():
        row = conn.execute(
            "update memory.audit_log as a set prev_hash = %s, hash = memory._audit_hash(%s, "
            "a.tenant_id, a.audit_id, a.at, a.actor, a.action, a.object, a.object_key, "
            "a.details) where tenant_id = 't' and audit_id = %s returning hash",
            (prev, prev, audit_id),
        ).fetchone()
        prev = row[0]  # type: ignore[index]
    conn.execute("update memory.audit_heads set last_hash = %s where tenant_id = 't'", (prev,))
    conn.execute("set session_replication_role = origin")


def test_rewritten_chain_is_caught_only_against_a_checkpoint(dsn: str) -> None:
    _build_log(dsn, 50)
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = checkpoint(conn, KEY)
        _rewrite_chain(conn)
        assert conn.execute("select * from memory.verify_audit()").fetchall() == [], (
            "without a checkpoint, a consistent rewrite passes: stated, not hidden"
        )
        problems = verify_checkpoint(conn, saved, KEY)
    assert problems and "rewritten" in problems[0]


def test_truncated_tail_is_caught_only_against_a_checkpoint(dsn: str) -> None:
    _build_log(dsn, 50)
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = checkpoint(conn, KEY)
        conn.execute("set session_replication_role = replica")
        conn.execute("delete from memory.audit_log where tenant_id = 't' and audit_id > 40")
        conn.execute(
            "update memory.audit_heads as h set last_id = 40, last_hash = a.hash "
            "from memory.audit_log as a where h.tenant_id = 't' "
            "and a.tenant_id = 't' and a.audit_id = 40"
        )
        conn.execute("set session_replication_role = origin")
        assert conn.execute("select * from memory.verify_audit()").fetchall() == []
        problems = verify_checkpoint(conn, saved, KEY)
    assert problems and "truncated" in problems[0]


def test_a_forged_checkpoint_is_refused(dsn: str) -> None:
    _build_log(dsn, 3)
    with psycopg.connect(dsn, autocommit=True) as conn:
        saved = checkpoint(conn, KEY)
        saved["heads"][0]["audit_id"] -= 1
        with pytest.raises(CheckpointInvalid):
            verify_checkpoint(conn, saved, KEY)


def test_concurrent_writers_make_one_linear_chain(dsn: str) -> None:
    writers, each = 8, 40
    start = threading.Barrier(writers)

    def write(w: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            start.wait()
            for i in range(each):
                conn.execute("select memory.append('t', %s, 'user', 'x', 1)", (f"w{w}-{i}",))

    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(write, range(writers)))
    with psycopg.connect(dsn) as conn:
        ids = [
            r[0]
            for r in conn.execute(
                "select audit_id from memory.audit_log where tenant_id = 't' order by audit_id"
            ).fetchall()
        ]
        assert ids == list(range(1, writers * each + 2))  # + the tenant's creation
        assert conn.execute("select * from memory.verify_audit()").fetchall() == []


def test_cli_checkpoint_and_verify(dsn: str, tmp_path: Any) -> None:
    _build_log(dsn, 10)
    env = {**os.environ, "PYMEM_AUDIT_KEY": "k"}
    file = tmp_path / "heads.jsonl"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pymem", "audit", *args, "--dsn", dsn],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )

    assert cli("checkpoint", "--out", str(file)).returncode == 0
    assert json.loads(file.read_text().splitlines()[-1])["heads"][0]["audit_id"] == 10
    ok = cli("verify", "--checkpoint", str(file))
    assert ok.returncode == 0 and "intact" in ok.stdout
    with psycopg.connect(dsn, autocommit=True) as conn:
        _rewrite_chain(conn)
    bad = cli("verify", "--checkpoint", str(file))
    assert bad.returncode == 1 and "TAMPERED" in bad.stdout


def test_erasure_leaves_no_trace_in_any_table(dsn: str) -> None:
    canary = "CANARY-7f3a-private-words"
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(3):
            conn.execute(
                "select memory.append('t', %s, 'user', %s, 4, "
                "metadata => jsonb_build_object('note', %s::text), "
                "idempotency_key => %s, user_id => 'subject-zq9')",
                (f"s{i}", canary, canary, f"k{i}"),
            )
        conn.execute("select memory.add_summary('t', 's0', 1, 1, 1, %s, 4)", (canary,))
        conn.execute("select memory._enqueue('t', 's1', 'summarize')")
        conn.execute("select * from memory.rate_limit('t', 'user:subject-zq9', 5, '1 hour')")
        conn.execute(
            "select memory.append('t', 'keep', 'user', 'unrelated', 1, user_id => 'someone-else')"
        )
        exported = conn.execute("select memory.export_subject('t', 'subject-zq9')").fetchone()
        assert exported is not None and len(exported[0]["sessions"]) == 3
        erased = conn.execute("select * from memory.erase_subject('t', 'subject-zq9')").fetchall()
        assert erased == [("s0", 1), ("s1", 1), ("s2", 1)]
        tables = conn.execute(
            "select format('%I.%I', n.nspname, c.relname) from pg_class as c "
            "join pg_namespace as n on n.oid = c.relnamespace "
            "where n.nspname = 'memory' and c.relkind = 'r'"
        ).fetchall()
        for (table,) in tables:
            hits = conn.execute(
                sql.SQL(
                    "select count(*) from {} as x where x::text like %s or x::text like %s"
                ).format(sql.SQL(table)),
                (f"%{canary}%", "%subject-zq9%"),
            ).fetchone()
            assert hits == (0,), f"trace left in {table}"
        actions = [
            r[0]
            for r in conn.execute(
                "select action from memory.audit_log where action like 'subject.%' "
                "order by audit_id"
            ).fetchall()
        ]
        assert actions == ["subject.export", "subject.erase"]
        assert conn.execute("select * from memory.verify_audit()").fetchall() == []
        assert conn.execute(
            "select count(*) from memory.messages where session_id = 'keep'"
        ).fetchone() == (1,)
