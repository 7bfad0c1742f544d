"""Encryption at rest: round trips, raw scans of tables, data files, WAL and
server logs, wrong and missing keys, rotation while appends run, mode
changes and master key re-wrapping. Each scan has a control that the scanner
does find (a plaintext tenant's canary, a key sent as a parameter on purpose).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pymem import DecryptionFailed, KeyUnavailable, Memory
from pymem.db.embedded import EmbeddedPostgres
from pymem.models import NewSummary, RecallRequest
from pymem.security.encryption import configure, reencrypt_all, rotate, status
from pymem.security.keys import generate_master_key, with_master_key


@dataclass(frozen=True)
class StaticKeys:
    current: str
    previous: str | None = None

    def master_key(self) -> bytes:
        return bytes.fromhex(self.current)

    def previous_master_key(self) -> bytes | None:
        return bytes.fromhex(self.previous) if self.previous else None


MASTER = generate_master_key()
OTHER = generate_master_key()


def keyed(dsn: str, key: str = MASTER, previous: str | None = None) -> str:
    return with_master_key(dsn, StaticKeys(key, previous), previous=previous is not None)


def _canary() -> str:
    return f"zqx{secrets.token_hex(10)}"


def _rows_as_text(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """Every row of every table in schema memory, as text (a superuser sees all)."""
    tables = conn.execute(
        "select relname from pg_class where relnamespace = 'memory'::regnamespace "
        "and relkind in ('r', 'p') and not relispartition"
    ).fetchall()
    return {
        name: "\n".join(
            r[0]
            for r in conn.execute(
                sql.SQL("select t::text from memory.{} as t").format(sql.Identifier(name))
            )
        )
        for (name,) in tables
    }


def test_sealed_tenant_round_trips_and_tables_hold_no_plaintext(dsn: str) -> None:
    secret = _canary()
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        assert configure(conn, "sec", "content") == 1
    mem = Memory.connect(dsn, keys=StaticKeys(MASTER))
    try:
        chat = mem.session("s1", tenant="sec", user="u1")
        chat.append("user", f"my card story {secret} is long", idempotency_key="k1")
        assert chat.append(
            "user", f"my card story {secret} is long", idempotency_key="k1"
        ).duplicate
        chat.append("assistant", "noted")
        mem.backend.add_summary(
            "sec",
            "s1",
            NewSummary(level=1, seq_from=1, seq_to=2, content=f"digest {secret}", tokens=4),
        )
        assert chat.messages()[0].content == f"my card story {secret} is long"
        window = chat.context(budget=500, strategy="summary", summary_share=0.5, recent_share=0.5)
        assert any(secret in item.content for item in window.items)
        assert secret in str(mem.export_subject("u1", tenant="sec"))
    finally:
        mem.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = _rows_as_text(conn)
        assert [name for name, text in rows.items() if secret in text] == []
        assert conn.execute(
            "select count(*) from memory.messages where tenant_id = 'sec' "
            "and (content is not null or search is not null or sealed is null)"
        ).fetchone() == (0,)


def test_searchable_mode_keeps_lexemes_in_clear_and_nothing_else(dsn: str) -> None:
    secret = _canary()
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "find", "content_with_search")
    mem = Memory.connect(dsn, keys=StaticKeys(MASTER))
    try:
        chat = mem.session("s1", tenant="find")
        for i in range(30):
            chat.append("user", f"filler turn {i} about the weather")
        chat.append("user", f"the tent pole {secret} snapped")
        for i in range(30):
            chat.append("user", f"more filler {i}")
        recalled = mem.backend.recall("find", "s1", RecallRequest("tent pole snapped"))  # type: ignore[attr-defined]
        assert recalled and secret in recalled[0].content
    finally:
        mem.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        hits = [name for name, text in _rows_as_text(conn).items() if secret in text]
        assert hits == ["messages"]  # the lexeme, in the search column only
        assert conn.execute(
            "select count(*) from memory.messages where tenant_id = 'find' "
            "and (content is not null or sealed::text like %s)",
            (f"%{secret}%",),
        ).fetchone() == (0,)


def _scan(root: Path, needle: bytes) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:
                continue
    return found


def test_data_files_and_wal_hold_no_plaintext(dsn: str, pg_server: EmbeddedPostgres) -> None:
    secret, control = _canary(), _canary()
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "sec", "content")
    mem = Memory.connect(dsn, keys=StaticKeys(MASTER))
    try:
        for i in range(20):
            mem.session("s1", tenant="sec").append("user", f"turn {i} carries {secret}")
            mem.session("s1", tenant="plain").append("user", f"turn {i} carries {control}")
    finally:
        mem.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("checkpoint")
        dboid = conn.execute(
            "select oid from pg_database where datname = current_database()"
        ).fetchone()
    assert dboid is not None
    data = pg_server.data_dir / "base" / str(dboid[0])
    wal = pg_server.data_dir / "pg_wal"
    # Controls: the scanner finds the plaintext tenant's canary in both.
    assert _scan(data, control.encode()) and _scan(wal, control.encode())
    assert _scan(data, secret.encode()) == []
    assert _scan(wal, secret.encode()) == []


def test_keys_never_reach_server_logs_or_activity(dsn: str, pg_server: EmbeddedPostgres) -> None:
    start = pg_server.log_file.stat().st_size
    logging = psycopg.conninfo.make_conninfo(
        keyed(dsn, OTHER, previous=MASTER),
        options=f"-c pymem.master_key={OTHER} -c pymem.previous_master_key={MASTER} "
        "-c log_statement=all -c log_min_messages=info",
    )
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "sec", "content")
        conn.execute("select set_config('pymem.tenant', 'sec', true)")
        conn.execute("select memory.append('sec', 's1', 'user', 'hello there', 3)")
    with psycopg.connect(logging, autocommit=True) as conn:
        conn.execute("begin")
        conn.execute("select set_config('pymem.tenant', 'sec', true)")
        assert conn.execute("select memory.rewrap_keys('sec')").fetchone() == (1,)
        conn.execute("commit")
        rotate(conn, "sec")
        reencrypt_all(conn, "sec", batch_rows=10)
        conn.execute("begin")
        conn.execute("select set_config('pymem.tenant', 'sec', true)")
        conn.execute("select memory.append('sec', 's1', 'user', 'second turn', 3)")
        assert len(conn.execute("select * from memory.history('sec', 's1')").fetchall()) == 2
        conn.execute("commit")
        with psycopg.connect(dsn, autocommit=True) as other:
            activity = other.execute(
                "select coalesce(string_agg(query, ' '), '') from pg_stat_activity"
            ).fetchone()
            visible = other.execute(
                "select count(*) from pg_settings where name like 'pymem.%%key%%'"
            ).fetchone()
        with psycopg.connect(keyed(dsn, OTHER), autocommit=True) as admin:
            admin.execute("select set_config('pymem.tenant', 'sec', false)")
            deks = [
                r[0]
                for r in admin.execute(
                    "select encode(k, 'hex') from unnest(memory._data_keys('sec')) as k "
                    "where k is not null"
                )
            ]
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("create extension if not exists pg_stat_statements")
            statements = other.execute(
                "select coalesce(string_agg(query, ' '), '') from pg_stat_statements"
            ).fetchone()
        log = pg_server.log_file.read_bytes()[start:].decode(errors="replace").lower()
        material = {
            "master": OTHER,
            "previous": MASTER,
            **{f"dek{i}": d for i, d in enumerate(deks)},
        }
        assert "memory.rewrap_keys" in log  # the statements were logged
        assert [name for name, value in material.items() if value.lower() in log] == []
        assert activity is not None
        assert [n for n, v in material.items() if v.lower() in activity[0].lower()] == []
        assert visible == (0,)
        assert statements is not None and "memory.rewrap_keys" in statements[0]
        assert [n for n, v in material.items() if v.lower() in statements[0].lower()] == []
        # Controls: a key sent as a parameter on purpose is found in the log, and
        # one in a SET statement (utility statements are kept verbatim) in
        # pg_stat_statements, by the same scans.
        conn.execute("select %s::text", (OTHER,))
        conn.execute(sql.SQL("set pymem.probe = {}").format(sql.Literal(OTHER)))
    log = pg_server.log_file.read_bytes()[start:].decode(errors="replace").lower()
    assert OTHER.lower() in log
    with psycopg.connect(dsn, autocommit=True) as other:
        found = other.execute(
            "select count(*) from pg_stat_statements where query like %s", (f"%{OTHER}%",)
        ).fetchone()
    assert found is not None and found[0] >= 1


def test_wrong_missing_or_altered_keys_are_typed_errors(dsn: str) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "sec", "content")
    with Memory.connect(dsn, keys=StaticKeys(MASTER)) as mem:
        mem.session("s1", tenant="sec").append("user", "sealed words")
        mem.session("s1", tenant="plain").append("user", "open words")
    with Memory.connect(dsn) as keyless:
        with pytest.raises(KeyUnavailable) as missing:
            keyless.session("s1", tenant="sec").messages()
        assert "no master key" in str(missing.value) and missing.value.hint
        # Plaintext tenants need no key.
        assert keyless.session("s1", tenant="plain").messages()[0].content == "open words"
    with Memory.connect(dsn, keys=StaticKeys(OTHER)) as wrong:
        with pytest.raises(KeyUnavailable) as mismatch:
            wrong.session("s1", tenant="sec").messages()
        assert "wrapped by master key" in str(mismatch.value)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            # Flip every bit of one byte (setting it to a fixed value would
            # change nothing when the ciphertext already held that value).
            "update memory.messages set sealed = set_byte(sealed, octet_length(sealed) - 5, "
            "255 - get_byte(sealed, octet_length(sealed) - 5)) where tenant_id = 'sec'"
        )
        with pytest.raises(DecryptionFailed), Memory.connect(dsn, keys=StaticKeys(MASTER)) as mem:
            mem.session("s1", tenant="sec").messages()
        # Another tenant's ciphertext does not open under this tenant's key.
        conn.execute("select memory.append('other', 's1', 'user', 'x', 1)")
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "other", "content")
        conn.execute(
            "update memory.messages as o set sealed = s.sealed, content = null, key_version = 1 "
            "from (select sealed from memory.messages where tenant_id = 'sec') as s "
            "where o.tenant_id = 'other'"
        )
    with pytest.raises(DecryptionFailed), Memory.connect(dsn, keys=StaticKeys(MASTER)) as mem:
        mem.session("s1", tenant="other").messages()


def test_rotation_during_concurrent_appends(dsn: str) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "rot", "content_with_search")
    acked: dict[str, list[str]] = defaultdict(list)
    errors: list[BaseException] = []
    lock = threading.Lock()
    mem = Memory.connect(dsn, keys=StaticKeys(MASTER), max_size=6)

    def writer(w: int) -> None:
        try:
            for i in range(120):
                session = f"s{(w * 7 + i) % 12}"
                text = f"w{w} m{i}"
                result = mem.session(session, tenant="rot").append(
                    "user", text, idempotency_key=f"{w}-{i}"
                )
                assert not result.duplicate
                with lock:
                    acked[session].append(text)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    try:
        for t in threads:
            t.start()
        versions = []
        with psycopg.connect(keyed(dsn), autocommit=True) as conn:
            for round_ in range(3):
                # Rotate while the writers are mid-stream: after 80, 200, 320 appends.
                while sum(map(len, acked.values())) < 80 + 120 * round_ and not errors:
                    time.sleep(0.002)
                versions.append(rotate(conn, "rot"))
                reencrypt_all(conn, "rot", batch_rows=40)
            for t in threads:
                t.join()
            final = reencrypt_all(conn, "rot", batch_rows=40)
            assert final.sessions_remaining == 0
            assert next(s for s in status(conn) if s.tenant == "rot").versions == 1
        assert errors == []
        assert versions == [2, 3, 4]
        # Every acknowledged append is there once, in order, and opens.
        for session, texts in acked.items():
            stored = mem.session(session, tenant="rot").messages()
            assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
            assert sorted(m.content for m in stored) == sorted(texts)
        # A retry after the rotations is still recognised as the same request.
        assert (
            mem.session("s0", tenant="rot").append("user", "w0 m0", idempotency_key="0-0").duplicate
        )
    finally:
        mem.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(
            "select count(*) from memory.messages where tenant_id = 'rot' and key_version <> 4"
        ).fetchone() == (0,)
        assert conn.execute("select count(*) from memory.verify_audit()").fetchone() == (0,)
        actions = [
            r[0]
            for r in conn.execute(
                "select action from memory.audit_log where tenant_id = 'rot' "
                "and action like 'key.%%' order by audit_id"
            )
        ]
        assert actions.count("key.create") == 4 and actions.count("key.destroy") >= 3
        assert "key.reencrypt" in actions, actions


def test_mode_changes_and_master_key_rewrap(dsn: str) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'before any key', 2)")
        configure(conn, "t", "content")
        assert reencrypt_all(conn, "t").messages == 1
        configure(conn, "t", "none")
        assert reencrypt_all(conn, "t").messages == 1
        assert conn.execute(
            "select count(*) from memory.messages where sealed is not null"
        ).fetchone() == (0,)
        assert conn.execute("select count(*) from memory.tenant_keys").fetchone() == (0,)
        configure(conn, "t", "content_with_search")
        reencrypt_all(conn, "t")
    # New master key: re-wrap with both, then only the new one opens the data.
    with psycopg.connect(keyed(dsn, OTHER, previous=MASTER), autocommit=True) as conn:
        from pymem.security.encryption import rewrap_all

        assert rewrap_all(conn) == {"t": 1}
    with Memory.connect(dsn, keys=StaticKeys(OTHER)) as mem:
        assert mem.session("s", tenant="t").messages()[0].content == "before any key"
    with pytest.raises(KeyUnavailable), Memory.connect(dsn, keys=StaticKeys(MASTER)) as mem:
        mem.session("s", tenant="t").messages()


# (mode before, the key change, the keys rows must be under afterwards)
KEY_CHANGES = {
    "rotation": ("content", "select memory.rotate_key('st')", [2]),
    "turned on": ("none", "select memory.configure_encryption('st', 'content')", [1]),
    "turned off": ("content", "select memory.configure_encryption('st', 'none')", [None]),
}


@pytest.mark.parametrize("change", sorted(KEY_CHANGES))
def test_append_waiting_on_a_reencrypted_session_follows_the_new_key(dsn: str, change: str) -> None:
    """Staged interleaving: an append reads the key, then waits for the session
    row that a key change's re-encryption holds; when it gets the row it must
    store its message the new way, or the row would be passed over by
    re-encryption (left in clear, or under a key that is destroyed next)."""
    before, statement, after = KEY_CHANGES[change]
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "st", before)
        conn.execute("select set_config('pymem.tenant', 'st', false)")
        conn.execute("select memory.append('st', 's', 'user', 'first', 1)")
    done: list[Any] = []

    def late_append() -> None:
        with psycopg.connect(keyed(dsn), autocommit=True) as conn:
            conn.execute("select set_config('pymem.tenant', 'st', false)")
            done.append(
                conn.execute("select memory.append('st', 's', 'user', 'late', 1)").fetchone()
            )

    with psycopg.connect(keyed(dsn)) as changing, psycopg.connect(dsn, autocommit=True) as watch:
        changing.execute("select set_config('pymem.tenant', 'st', false)")
        changing.execute(statement)
        assert changing.execute("select sessions from memory.reencrypt('st')").fetchone() == (1,)
        writer = threading.Thread(target=late_append)
        writer.start()
        deadline = time.monotonic() + 10
        while watch.execute("select count(*) from pg_locks where not granted").fetchone() == (0,):
            assert time.monotonic() < deadline, "the append never waited for the session row"
            time.sleep(0.005)
        changing.commit()
        writer.join()
    assert done and done[0] is not None
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        conn.execute("select set_config('pymem.tenant', 'st', false)")
        assert conn.execute(
            "select array_agg(distinct key_version) from memory.messages where tenant_id = 'st'"
        ).fetchone() == (after,)
        conn.execute("select memory.destroy_retired_keys('st')")
        texts = [r[2] for r in conn.execute("select * from memory.history('st', 's')")]
    assert texts == ["first", "late"]


def test_the_worker_reads_and_seals_an_encrypting_tenants_digests(dsn: str) -> None:
    from pymem.ops.worker import Worker

    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "acme", "content")
    with Memory.connect(dsn, keys=StaticKeys(MASTER), max_size=4) as mem:
        mem.configure_recall(tenant="acme", summary_every_tokens=100)
        chat = mem.session("s", tenant="acme")
        for i in range(40):
            chat.append("user", f"Turn {i}: the tent pole question, part {i}. It was fine.")
        assert Worker(mem, name="w").drain() >= 1
        digests = chat.summaries()
        assert digests and all("tent" in d.content for d in digests)
        window = chat.context(budget=300, strategy="summary")
        assert window.items[0].part == "summary"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(
            "select count(*), count(*) filter (where sealed is not null and content is null) "
            "from memory.summaries where tenant_id = 'acme'"
        ).fetchone() == (len(digests), len(digests))


def test_a_reader_opens_sealed_rows_through_the_view_only_with_the_key(dsn: str) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "acme", "content")
        conn.execute("select set_config('pymem.tenant', 'acme', false)")
        conn.execute("select memory.append('acme', 's', 'user', 'sealed hello', 2)")
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute("create role enc_reader login in role pymem_reader")
        conn.execute("select memory.grant_tenant('acme', 'enc_reader')")
    reader = psycopg.conninfo.make_conninfo(dsn, user="enc_reader")
    query = "select content from memory.message_log where session_id = 's'"
    with psycopg.connect(keyed(reader), autocommit=True) as conn, conn.transaction():
        conn.execute("select set_config('pymem.tenant', 'acme', true)")
        assert conn.execute(query).fetchall() == [("sealed hello",)]
    with psycopg.connect(reader, autocommit=True) as conn, conn.transaction():
        conn.execute("select set_config('pymem.tenant', 'acme', true)")
        with pytest.raises(psycopg.Error) as exc:
            conn.execute(query)
        assert exc.value.sqlstate == "ME018"


def test_cached_windows_are_sealed_when_a_master_key_is_given(dsn: str, redis_url: str) -> None:
    import redis as redis_py

    from .test_pii_policy import _redis_text

    secret, control = _canary(), _canary()
    with Memory.connect(dsn, redis=redis_url, keys=StaticKeys(MASTER)) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", f"the {secret} arrived broken")
        first = chat.context(budget=500)
        assert chat.context(budget=500) == first
        stats: Any = mem.backend.cache_stats  # type: ignore[attr-defined]
        assert stats.hits == 1
    with Memory.connect(dsn, redis=redis_url) as plain:
        plain.session("s", tenant="other").append("user", f"the {control} arrived")
        plain.session("s", tenant="other").context(budget=500)
    cached = _redis_text(redis_url)
    assert control in cached  # control: an unsealed entry is readable by the scan
    assert secret not in cached
    # Another master key, or altered bytes: a miss served from PostgreSQL, not an error.
    client = redis_py.Redis.from_url(redis_url)
    with Memory.connect(dsn, redis=redis_url, keys=StaticKeys(OTHER)) as other:
        assert other.session("s", tenant="acme").context(budget=500) == first
    for key in client.scan_iter(match="*acme*"):
        for field, value in client.hgetall(key).items():
            if field != b"gen":
                client.hset(key, field, value[:-1] + bytes([value[-1] ^ 1]))
    with Memory.connect(dsn, redis=redis_url, keys=StaticKeys(MASTER)) as mem:
        assert mem.session("s", tenant="acme").context(budget=500) == first


def test_a_large_session_is_reencrypted_in_chunks(dsn: str) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        conn.execute("select set_config('pymem.tenant', 'big', false)")
        for i in range(25):
            conn.execute("select memory.append('big', 's', 'user', %s, 2)", (f"turn {i}",))
        configure(conn, "big", "content")
        steps = [
            conn.execute("select * from memory.reencrypt('big', 10)").fetchone() for _ in range(3)
        ]
        # (sessions finished, messages, digests, sessions remaining) per call
        assert steps == [(0, 10, 0, 1), (0, 10, 0, 1), (1, 5, 0, 0)]
        texts = [r[2] for r in conn.execute("select * from memory.history('big', 's')")]
        assert texts == [f"turn {i}" for i in range(25)]
        assert conn.execute(
            "select count(*) from memory.messages where tenant_id = 'big' and sealed is null"
        ).fetchone() == (0,)


async def test_the_async_api_opens_sealed_tenants_with_its_keys(dsn: str) -> None:
    from pymem import AsyncMemory

    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "acme", "content_with_search")
    mem = await AsyncMemory.connect(dsn, keys=StaticKeys(MASTER))
    try:
        chat = mem.session("s", tenant="acme")
        await chat.append("user", "the async tent pole")
        assert [m.content for m in await chat.messages()] == ["the async tent pole"]
    finally:
        await mem.close()
    keyless = await AsyncMemory.connect(dsn)
    try:
        with pytest.raises(KeyUnavailable):
            await keyless.session("s", tenant="acme").messages()
    finally:
        await keyless.close()


def test_destroying_retired_keys_waits_for_a_rotation_and_keeps_its_key(dsn: str) -> None:
    """Staged: destroy_retired_keys waits for a rotation holding the tenant row;
    it must then see the new key as the active one, never delete it."""
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "dk", "content")
        conn.execute("select set_config('pymem.tenant', 'dk', false)")
        conn.execute("select memory.append('dk', 's', 'user', 'sealed under 1', 1)")
    outcome: list[Any] = []

    def destroy() -> None:
        with psycopg.connect(keyed(dsn), autocommit=True) as conn:
            conn.execute("select set_config('pymem.tenant', 'dk', false)")
            try:
                outcome.append(conn.execute("select memory.destroy_retired_keys('dk')").fetchone())
            except psycopg.Error as exc:
                outcome.append(exc.sqlstate)

    with psycopg.connect(keyed(dsn)) as rotating, psycopg.connect(dsn, autocommit=True) as watch:
        rotating.execute("select set_config('pymem.tenant', 'dk', false)")
        assert rotating.execute("select memory.rotate_key('dk')").fetchone() == (2,)
        destroyer = threading.Thread(target=destroy)
        destroyer.start()
        deadline = time.monotonic() + 10
        while watch.execute("select count(*) from pg_locks where not granted").fetchone() == (0,):
            assert time.monotonic() < deadline, "destroy_retired_keys never waited"
            time.sleep(0.005)
        rotating.commit()
        destroyer.join()
    assert outcome == ["ME002"]  # the session still needs key 1: nothing destroyed
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute(
            "select array_agg(key_version order by key_version) from memory.tenant_keys "
            "where tenant_id = 'dk'"
        ).fetchone() == ([1, 2],)
