"""Transport security: PostgreSQL and Redis over TLS, and the master key kept off
plain-text networks (a CA and certificates made by the test run itself)."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import trustme

from pymem import DatabaseUnavailable, InsecureTransport, Memory
from pymem.db.embedded import EmbeddedPostgres
from pymem.db.migrate import migrate
from pymem.security.keys import EnvKeyProvider, check_key_transport, generate_master_key, keyed_dsn

from ..redis_servers import RedisServer


@pytest.fixture(scope="module")
def certs() -> Iterator[tuple[Path, Path, Path, trustme.CA]]:
    """(certificate, key, CA file) for localhost and 127.0.0.1, and the CA."""
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    folder = Path(tempfile.mkdtemp(prefix="pymem-tls-"))
    cert, key, ca_file = folder / "server.crt", folder / "server.key", folder / "ca.crt"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    key.chmod(0o600)
    folder.chmod(0o755)
    yield cert, key, ca_file, ca
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def tls_postgres(certs: tuple[Path, Path, Path, trustme.CA]) -> Iterator[EmbeddedPostgres]:
    cert, key, _, _ = certs
    home = Path(tempfile.mkdtemp(prefix="pymem-tls-pg-"))
    shutil.rmtree(home)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    settings = {"ssl": "on", "ssl_cert_file": f"'{cert}'", "ssl_key_file": f"'{key}'"}
    server = EmbeddedPostgres(home, port=port, tcp=True, settings=settings)
    if server.user is not None:  # the server runs unprivileged and must own its key
        shutil.chown(key, server.user)
    server.start()
    migrate(server.dsn())
    yield server
    server.destroy()


def _tls_dsn(server: EmbeddedPostgres, ca_file: Path) -> str:
    info = psycopg.conninfo.conninfo_to_dict(server.dsn())
    info.update(host="localhost", sslmode="verify-full", sslrootcert=str(ca_file))
    return psycopg.conninfo.make_conninfo("", **info)


def test_postgres_over_verified_tls_carries_the_master_key(
    tls_postgres: EmbeddedPostgres,
    certs: tuple[Path, Path, Path, trustme.CA],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYMEM_MASTER_KEY", generate_master_key())
    dsn = _tls_dsn(tls_postgres, certs[2])
    with Memory.connect(dsn, keys=EnvKeyProvider()) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "over TLS", tokens=2)
        with mem.backend.connection() as conn:  # type: ignore[attr-defined]
            row = conn.execute(
                "select s.ssl, s.version, current_setting('pymem.master_key', true) is not null "
                "from pg_stat_ssl as s where s.pid = pg_backend_pid()"
            ).fetchone()
        assert row is not None and row[0] is True and row[2] is True, row
        assert [m.content for m in chat.messages()] == ["over TLS"]


def test_a_server_certificate_from_another_ca_is_refused(
    tls_postgres: EmbeddedPostgres, tmp_path: Path
) -> None:
    stranger = tmp_path / "other-ca.crt"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    with pytest.raises(DatabaseUnavailable) as caught:
        Memory.connect(_tls_dsn(tls_postgres, stranger))
    assert "certificate" in str(caught.value)


def test_redis_over_tls(dsn: str, certs: tuple[Path, Path, Path, trustme.CA]) -> None:
    cert, key, ca_file, _ = certs
    server = RedisServer(tls=(cert, key, ca_file)).start()
    try:
        assert server.url.startswith("rediss://")
        with Memory.connect(dsn, redis=server.url) as mem:
            chat = mem.session("s", tenant="acme")
            chat.append("user", "cached over TLS", tokens=3)
            first = chat.context(budget=100)
            second = chat.context(budget=100)
            assert first == second
            assert mem.backend.cache_stats.hits == 1  # type: ignore[attr-defined]
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("dsn", "allowed"),
    [
        ("host=db.example.com dbname=app", False),
        ("host=db.example.com dbname=app sslmode=prefer", False),
        ("host=10.0.0.5 dbname=app sslmode=disable", False),
        ("host=db.example.com,127.0.0.1 dbname=app", False),
        ("host=db.example.com dbname=app sslmode=require", True),
        ("host=db.example.com dbname=app sslmode=verify-full sslrootcert=ca.crt", True),
        ("host=127.0.0.1 dbname=app", True),
        ("host=::1 dbname=app", True),
        ("host=localhost dbname=app", True),
        ("host=/var/run/postgresql dbname=app", True),
        ("dbname=app", True),  # the default Unix socket
        ("postgresql://app@db.example.com/app", False),
    ],
)
def test_the_master_key_never_crosses_a_network_in_plain_text(
    dsn: str, allowed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("PGHOST", "PGSSLMODE", "PYMEM_ALLOW_PLAINTEXT_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("PYMEM_MASTER_KEY", generate_master_key())
    if allowed:
        check_key_transport(dsn)
        keyed, _ = keyed_dsn(dsn, EnvKeyProvider())
        assert "pymem.master_key" in keyed
    else:
        with pytest.raises(InsecureTransport) as caught:
            keyed_dsn(dsn, EnvKeyProvider())
        assert "sslmode=verify-full" in (caught.value.hint or "")
        monkeypatch.setenv("PYMEM_ALLOW_PLAINTEXT_KEY", "1")  # the explicit opt-in
        keyed_dsn(dsn, EnvKeyProvider())


def test_the_async_api_over_verified_tls(
    tls_postgres: EmbeddedPostgres,
    certs: tuple[Path, Path, Path, trustme.CA],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from pymem import AsyncMemory

    monkeypatch.setenv("PYMEM_MASTER_KEY", generate_master_key())

    async def scenario() -> tuple[object, list[str]]:
        dsn = _tls_dsn(tls_postgres, certs[2])
        async with await AsyncMemory.connect(dsn, keys=EnvKeyProvider()) as mem:
            chat = mem.session("async-tls", tenant="acme")
            await chat.append("user", "async over TLS", tokens=3)
            async with mem.backend.connection() as conn:  # type: ignore[attr-defined]
                cur = await conn.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()")
                row = await cur.fetchone()
            return row, [m.content for m in await chat.messages()]

    row, contents = asyncio.run(scenario())
    assert row == (True,) and contents == ["async over TLS"]
