"""Install and upgrade the database: yoyo migrations, then every ``sql/`` file.

``pymem migrate`` is the one installer: the CLI, the embedded cluster, the test
fixtures and the benchmarks all call :func:`migrate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from yoyo import get_backend, read_migrations

from ..errors import translate_errors
from .paths import migrations_dir, sql_files


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a migrate or rollback run did."""

    applied: tuple[str, ...]
    rolled_back: tuple[str, ...]
    sql_files: tuple[str, ...]
    partitions_created: tuple[str, ...]


def yoyo_uri(dsn: str) -> str:
    """A yoyo database URI for a libpq DSN or URL (unix sockets included)."""
    params = {k: str(v) for k, v in conninfo_to_dict(dsn).items() if v is not None}
    dbname = params.pop("dbname", "")
    query = urlencode(sorted(params.items()))
    return f"postgresql+psycopg:///{quote(dbname, safe='')}" + (f"?{query}" if query else "")


@contextmanager
def _backend(dsn: str) -> Iterator[Any]:
    """A yoyo backend whose connection is closed afterwards (yoyo is untyped)."""
    backend = get_backend(yoyo_uri(dsn))
    try:
        yield backend
    finally:
        backend.connection.close()


def pending_migrations(dsn: str) -> list[str]:
    """Ids of the pymem migrations not yet applied."""
    migrations = read_migrations(str(migrations_dir()))
    with _backend(dsn) as backend:
        return [m.id for m in backend.to_apply(migrations)]


def apply_sql(conn: psycopg.Connection[Any]) -> list[str]:
    """Re-apply every ``sql/`` file in one transaction on ``conn``."""
    names = []
    with conn.transaction():
        for path in sql_files():
            # Files shipped with pymem, never user input.
            conn.execute(path.read_text(encoding="utf-8"))
            names.append(path.name)
    return names


def drop_sql_objects(conn: psycopg.Connection[Any]) -> None:
    """Drop the views and functions ``sql/`` defines, so a rollback can drop what they use."""
    views = conn.execute(
        """
        select c.oid::regclass::text
          from pg_catalog.pg_class as c
         where c.relnamespace = 'memory'::regnamespace and c.relkind = 'v'
        """
    ).fetchall()
    for (view,) in views:
        conn.execute(sql.SQL("drop view if exists {} cascade").format(sql.SQL(view)))
    rows = conn.execute(
        """
        select p.oid::regprocedure::text
          from pg_catalog.pg_proc as p
         where p.pronamespace = 'memory'::regnamespace
           and not exists (select 1 from pg_catalog.pg_depend as d
                            where d.objid = p.oid and d.deptype = 'e')
        """
    ).fetchall()
    for (signature,) in rows:
        conn.execute(sql.SQL("drop function if exists {} cascade").format(sql.SQL(signature)))


def migrate(
    dsn: str, *, months_ahead: int = 3, embedding_dim: int | None = None
) -> MigrationReport:
    """Apply pending migrations, re-apply ``sql/``, create partitions ahead.

    ``embedding_dim`` fixes the dimension of stored embeddings when the
    migration that creates their index runs (default 1536); later runs keep
    the dimension already chosen. Running it twice changes nothing.
    """
    migrations = read_migrations(str(migrations_dir()))
    yoyo_dsn = dsn
    if embedding_dim is not None:
        options = conninfo_to_dict(dsn).get("options") or ""
        yoyo_dsn = make_conninfo(
            dsn, options=f"{options} -c pymem.embedding_dim={int(embedding_dim)}".strip()
        )
    with translate_errors():
        with _backend(yoyo_dsn) as backend, backend.lock():
            pending = backend.to_apply(migrations)
            applied = tuple(m.id for m in pending)
            backend.apply_migrations(pending)
        with psycopg.connect(dsn, autocommit=True) as conn:
            files = apply_sql(conn)
            rows = conn.execute(
                "select * from memory.ensure_partitions(%s)", (months_ahead,)
            ).fetchall()
    return MigrationReport(
        applied=applied,
        rolled_back=(),
        sql_files=tuple(files),
        partitions_created=tuple(r[0] for r in rows),
    )


def rollback(dsn: str, *, steps: int | None = None) -> MigrationReport:
    """Roll back the newest ``steps`` pymem migrations (all when None).

    The functions of ``sql/`` are dropped first, since they may use what a
    rollback removes, and are not re-applied: ``sql/`` always matches the
    newest schema. Run :func:`migrate` to go forward again, or apply the
    ``sql/`` of the release that matches the schema left behind.
    """
    migrations = read_migrations(str(migrations_dir()))
    with translate_errors(), _backend(dsn) as backend, backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied if steps is None else applied[:steps]
        with psycopg.connect(dsn, autocommit=True) as conn:
            if conn.execute("select to_regnamespace('memory')").fetchone() != (None,):
                drop_sql_objects(conn)
        backend.rollback_migrations(chosen)
    return MigrationReport(
        applied=(),
        rolled_back=tuple(m.id for m in chosen),
        sql_files=(),
        partitions_created=(),
    )
