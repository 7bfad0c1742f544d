"""Test servers: one private PostgreSQL cluster for the whole run.

The cluster is started with pymem's own EmbeddedPostgres (which drops root
privileges the way PostgreSQL requires), on a free loopback port. The
pytest-postgresql noproc fixture builds a template database with
``pymem.db.migrate`` (the installer users run) and every test that asks for
``postgresql`` gets a fresh clone of it.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql import factories

from pymem.db.embedded import SUPERUSER, EmbeddedPostgres
from pymem.db.migrate import migrate

from .redis_servers import RedisServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PG_HOME = Path(os.environ.get("PYMEM_TEST_PG_HOME", f"/tmp/pymem-test-{os.getpid()}"))
PG_PORT = _free_port()
PG_HOST = "127.0.0.1"
CRON_DATABASE = "pymem_cron"  # cron.database_name: where pg_cron's schema lives


def load_schema(host: str, port: int, user: str, dbname: str, **_: object) -> None:
    """Template loader for pytest-postgresql: install pymem the way users do."""
    migrate(f"host={host} port={port} user={user} dbname={dbname}")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(
        PG_HOME,
        port=PG_PORT,
        tcp=True,
        settings={
            "max_connections": "200",
            "log_min_messages": "warning",
            # The encryption tests scan its statistics for key material;
            # pg_cron schedules maintenance (tests/sql/test_cron.py).
            "shared_preload_libraries": "'pg_stat_statements,pg_cron'",
            "cron.database_name": f"'{CRON_DATABASE}'",
        },
    )
    shutil.rmtree(PG_HOME, ignore_errors=True)
    server.start()
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(CRON_DATABASE))
        )
    yield server
    server.destroy()


_noproc = factories.postgresql_noproc(
    host=PG_HOST, port=PG_PORT, user=SUPERUSER, dbname="pymem_test", load=[load_schema]
)


@pytest.fixture(scope="session")
def postgresql_proc(pg_server: EmbeddedPostgres, _pymem_noproc):  # type: ignore[no-untyped-def]
    return _pymem_noproc


_pymem_noproc = _noproc  # registered as a fixture under this name
postgresql = factories.postgresql("postgresql_proc")


@pytest.fixture
def dsn(postgresql: psycopg.Connection[object]) -> str:
    """DSN of a fresh, fully migrated database for this test."""
    info = postgresql.info
    return f"host={info.host} port={info.port} user={info.user} dbname={info.dbname}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server on loopback for the whole run (no persistence)."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared Redis, emptied for this test."""
    import redis as redis_py

    if redis_server.process is None:  # a test killed it: bring it back
        redis_server.start()
    redis_py.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture
def empty_dsn(pg_server: EmbeddedPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """DSN of a brand-new empty database (for migration tests)."""
    name = f"empty_{abs(hash(request.node.nodeid)) % 10**8}"
    admin = pg_server.dsn("postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("drop database if exists {}").format(psycopg.sql.Identifier(name))
        )
        conn.execute(psycopg.sql.SQL("create database {}").format(psycopg.sql.Identifier(name)))
    yield pg_server.dsn(name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("drop database if exists {} with (force)").format(
                psycopg.sql.Identifier(name)
            )
        )
