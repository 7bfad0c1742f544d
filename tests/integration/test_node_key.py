"""The master key read by the server from a file on each node (``pymem keys
node-file``), the key path of Citus workers: clients without a key are served,
the file's path cannot be redirected, only pymem's functions read it, and the
key reaches no setting, statement or log line. Each check has its control: the
same call without the file fails, a key sent on purpose is found in the log.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from pymem import InvalidArgument, KeyUnavailable, Memory
from pymem.db.embedded import EmbeddedPostgres
from pymem.security.encryption import configure, rewrap_all
from pymem.security.keys import generate_master_key
from pymem.security.node_key import install_node_key, node_key_installed

from .test_cli_embedded import _run
from .test_encryption import MASTER, OTHER, StaticKeys, keyed


@pytest.fixture
def key_dir(pg_server: EmbeddedPostgres) -> Iterator[Path]:
    """A directory the server's OS user reads, outside its data directory."""
    path = pg_server.home / f"keys-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    yield path
    for child in path.iterdir():
        child.unlink()
    path.rmdir()


def _write_key(pg_server: EmbeddedPostgres, path: Path, key: str) -> Path:
    path.write_text(key + "\n")
    path.chmod(0o400)
    if pg_server.user is not None:
        import pwd

        entry = pwd.getpwnam(pg_server.user)
        os.chown(path.parent, entry.pw_uid, entry.pw_gid)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _sealed_rows(dsn: str, tenant: str) -> list[tuple[bool, bool]]:
    with psycopg.connect(dsn, autocommit=True) as conn:  # a superuser sees every row
        rows = conn.execute(
            "select content is null, sealed is not null from memory.messages where tenant_id = %s",
            (tenant,),
        ).fetchall()
    return [(bool(a), bool(b)) for a, b in rows]


def test_a_client_without_the_key_is_served_from_the_nodes_file(
    dsn: str, pg_server: EmbeddedPostgres, key_dir: Path
) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "sec", "content")
    # Control: without the file a client that brings no key is refused.
    with Memory.connect(dsn) as mem, pytest.raises(KeyUnavailable):
        mem.session("s1", tenant="sec").append("user", "before the file")
    path = _write_key(pg_server, key_dir / "master_key", MASTER)
    with psycopg.connect(dsn, autocommit=True) as conn:
        installed = install_node_key(conn, str(path))
        assert node_key_installed(conn)
    assert installed.previous_fingerprint is None and installed.workers == {}
    with Memory.connect(dsn) as mem:
        chat = mem.session("s1", tenant="sec", user="u1")
        chat.append("user", "a sealed turn about the orchard")
        chat.append("assistant", "noted")
        assert [m.content for m in chat.messages()] == ["a sealed turn about the orchard", "noted"]
    assert _sealed_rows(dsn, "sec") == [(True, True), (True, True)]
    # The same rows open for a client that brings the same key itself ...
    with Memory.connect(dsn, keys=StaticKeys(MASTER)) as mem:
        assert len(mem.session("s1", tenant="sec").messages()) == 2
    # ... and a client's own key wins: another key is named, never used.
    with Memory.connect(dsn, keys=StaticKeys(OTHER)) as mem, pytest.raises(KeyUnavailable) as exc:
        mem.session("s1", tenant="sec").messages()
    assert "wrapped by master key" in str(exc.value)
    # A second install keeps the function's owner and its grants.
    with psycopg.connect(dsn, autocommit=True) as conn:
        install_node_key(conn, str(path))
        owner, public = conn.execute(
            "select p.proowner::regrole::text, has_function_privilege('public', p.oid, 'execute')"
            "  from pg_proc as p where p.oid = 'memory._node_key(text)'::regprocedure"
        ).fetchone() or (None, None)
        assert owner == conn.info.user and public is False


def test_only_pymem_functions_read_it_and_it_reaches_no_log(
    dsn: str, pg_server: EmbeddedPostgres, key_dir: Path
) -> None:
    key = generate_master_key()
    path = _write_key(pg_server, key_dir / "master_key", key)
    with psycopg.connect(dsn, autocommit=True) as conn:
        install_node_key(conn, str(path))
        configure(conn, "acme", "content")  # no key in this connection: the file's
        conn.execute("select set_config('pymem.tenant', 'acme', false)")
        conn.execute("select memory.append('acme', 's', 'user', 'sealed hello', 2)")
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute("create role nodekey_app login in role pymem_app")
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute("create role nodekey_reader login in role pymem_reader")
        conn.execute("select memory.grant_tenant('acme', 'nodekey_reader')")
        # This test's own database logs every statement from now on.
        conn.execute(
            psycopg.sql.SQL("alter database {} set log_statement = 'all'").format(
                psycopg.sql.Identifier(conn.info.dbname)
            )
        )
    start = pg_server.log_file.stat().st_size
    logging = psycopg.conninfo.make_conninfo(dsn, user="nodekey_app")
    with psycopg.connect(logging, autocommit=True) as app:
        app.execute("begin")
        app.execute("select set_config('pymem.tenant', 'acme', true)")
        app.execute("select memory.append('acme', 's', 'user', 'second sealed turn', 3)")
        rows = app.execute("select content from memory.history('acme', 's')").fetchall()
        assert rows == [("sealed hello",), ("second sealed turn",)]
        app.execute("commit")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("select memory._node_key('pymem.master_key')")
        shown = app.execute("select string_agg(setting, ' ') from pg_settings").fetchone()
        assert shown is not None and key not in shown[0]
    # A reader granted the tenant reads its text through memory.reveal (run as
    # pymem_owner), as the application does; another tenant shows it nothing.
    reader = psycopg.conninfo.make_conninfo(dsn, user="nodekey_reader")
    query = "select content from memory.message_log where session_id = 's' order by seq"
    with psycopg.connect(reader, autocommit=True) as conn:
        with conn.transaction():
            conn.execute("select set_config('pymem.tenant', 'acme', true)")
            assert conn.execute(query).fetchall() == [("sealed hello",), ("second sealed turn",)]
        with conn.transaction():
            conn.execute("select set_config('pymem.tenant', 'other', true)")
            assert conn.execute(query).fetchall() == []
    log = pg_server.log_file.read_bytes()[start:].decode(errors="replace").lower()
    assert "memory.append" in log  # the statements were logged
    assert key not in log
    # Control: a key sent as a parameter on purpose is found by the same scan.
    with psycopg.connect(logging, autocommit=True) as app:
        app.execute("select %s::text", (key,))
    assert key in pg_server.log_file.read_bytes()[start:].decode(errors="replace").lower()


def test_the_path_is_fixed_checked_and_taken_as_a_literal(
    dsn: str, pg_server: EmbeddedPostgres, key_dir: Path
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(InvalidArgument):
            install_node_key(conn, "keys/master_key")
        with pytest.raises(KeyUnavailable, match="cannot read"):
            install_node_key(conn, str(key_dir / "missing"))
        assert not node_key_installed(conn)  # nothing half-installed
        bad = _write_key(pg_server, key_dir / "bad", "not a key")
        with pytest.raises(KeyUnavailable, match="does not hold a master key"):
            install_node_key(conn, str(bad))
        assert not node_key_installed(conn)
        # A quote in the path is part of the file name, never SQL.
        odd = _write_key(pg_server, key_dir / "it's'); drop table memory.tenants; --", MASTER)
        assert install_node_key(conn, str(odd)).fingerprint
        assert conn.execute("select to_regclass('memory.tenants') is not null").fetchone() == (
            True,
        )
        # The argument chooses between the two fixed files, nothing else.
        assert conn.execute("select memory._node_key('/etc/passwd')").fetchone() == (None,)
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute("create role nodekey_plain login")
    plain = psycopg.conninfo.make_conninfo(dsn, user="nodekey_plain")
    with psycopg.connect(plain, autocommit=True) as conn, pytest.raises(KeyUnavailable):
        install_node_key(conn, str(odd))


def test_rewrap_reads_the_previous_key_from_its_file(
    dsn: str, pg_server: EmbeddedPostgres, key_dir: Path
) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        configure(conn, "acme", "content")
        conn.execute("select set_config('pymem.tenant', 'acme', false)")
        conn.execute("select memory.append('acme', 's', 'user', 'kept across keys', 3)")
    new = generate_master_key()
    path = _write_key(pg_server, key_dir / "master_key", new)
    _write_key(pg_server, key_dir / "master_key.previous", MASTER)
    with psycopg.connect(dsn, autocommit=True) as conn:
        installed = install_node_key(conn, str(path))
        assert installed.previous_fingerprint is not None
        assert rewrap_all(conn) == {"acme": 1}
    with Memory.connect(dsn, keys=StaticKeys(new)) as mem:
        assert [m.content for m in mem.session("s", tenant="acme").messages()] == [
            "kept across keys"
        ]
    with Memory.connect(dsn, keys=StaticKeys(MASTER)) as mem, pytest.raises(KeyUnavailable):
        mem.session("s", tenant="acme").messages()


def test_the_cli_installs_it_and_keys_commands_use_it(
    dsn: str, pg_server: EmbeddedPostgres, key_dir: Path
) -> None:
    path = _write_key(pg_server, key_dir / "master_key", MASTER)
    env = {"PYMEM_DSN": dsn, "PYMEM_MASTER_KEY": ""}
    before = _run("keys", "configure", "--tenant", "acme", "--mode", "content", env=env)
    assert before.returncode == 1 and "PYMEM_MASTER_KEY is not set" in before.stderr
    done = _run("keys", "node-file", str(path), env=env)
    assert done.returncode == 0, done.stderr
    assert "master key" in done.stdout and MASTER not in done.stdout
    after = _run("keys", "configure", "--tenant", "acme", "--mode", "content", env=env)
    assert after.returncode == 0, after.stderr
    doctor = _run("doctor", env=env)
    assert "key file" in doctor.stdout


# Citus is not installed here: its two functions are stood in for, a second
# worker answering with the fingerprint written in public.worker2.
CITUS_STAND_INS = """
create table public.distributed (signature text);
create function public.create_distributed_function(sig text) returns void
language sql as $$ insert into public.distributed values (sig) $$;
create table public.worker2 (fingerprint text);
create function public.run_command_on_workers(command text)
returns table (nodename text, success boolean, result text) language plpgsql as $$
declare
    v_here text;
begin
    execute command into v_here;
    return query select 'worker1'::text, true, v_here
                 union all
                 select 'worker2', true, coalesce((select fingerprint from public.worker2), v_here);
end $$;
"""


def test_on_citus_it_reaches_every_worker_and_each_must_read_the_same_key(
    dsn: str, pg_server: EmbeddedPostgres, key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pymem.security import node_key

    monkeypatch.setattr(node_key, "citus_version", lambda conn: "13.2")
    path = _write_key(pg_server, key_dir / "master_key", MASTER)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(CITUS_STAND_INS)
        found = install_node_key(conn, str(path))
        assert found.workers == {"worker1": found.fingerprint, "worker2": found.fingerprint}
        assert conn.execute("select signature from public.distributed").fetchall() == [
            ("memory._node_key(text)",)
        ]
        # Control: a worker holding another key (or none) is named.
        conn.execute("insert into public.worker2 values ('0123456789abcdef')")
        with pytest.raises(KeyUnavailable, match="worker2") as exc:
            install_node_key(conn, str(path))
        assert "worker1" not in str(exc.value)
