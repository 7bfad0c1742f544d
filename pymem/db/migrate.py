"""Install and upgrade the database: yoyo migrations, then the ``sql/`` files.

``pymem migrate`` is the one installer: the CLI, the embedded cluster, the test
fixtures and the benchmarks all call :func:`migrate`.

It is safe to run while the application serves traffic:

- one run at a time: the whole run holds a PostgreSQL advisory lock, so two
  instances starting with ``migrate=True`` at once take turns (a crashed run
  releases it with its connection);
- a run with nothing new takes no lock on any table: each ``sql/`` file is
  re-applied only when its text changed (``memory.applied_sql`` keeps the
  digests) or a migration was applied in the same run;
- every statement that needs a table lock waits at most ``lock_timeout``
  seconds, then gives way (its transaction rolls back, so writers queued
  behind it go on) and is retried with backoff until ``deadline``:
  :class:`~pymem.errors.MigrationLockTimeout` after that.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from yoyo import get_backend, read_migrations

from ..errors import InvalidArgument, MigrationLockTimeout, translate_errors
from . import citus as citus_cluster
from .conninfo import with_settings
from .paths import migrations_dir, sql_files
from .routines import schema_routines
from .statements import split_sql


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What a migrate or rollback run did (``lock_waits``: steps retried after a lock timeout)."""

    applied: tuple[str, ...]
    rolled_back: tuple[str, ...]
    sql_files: tuple[str, ...]
    partitions_created: tuple[str, ...]
    lock_waits: int = 0


# The advisory lock every migrate and rollback holds ("pymem" in ASCII).
MIGRATE_LOCK: Final = 0x70796D656D
T = TypeVar("T")


def _politely(step: Callable[[], T], *, deadline: float, what: str) -> tuple[T, int]:
    """Run ``step``; on a lock timeout wait with jittered backoff and retry until ``deadline``."""
    started = time.monotonic()
    delay, waits = 0.1, 0
    while True:
        try:
            return step(), waits
        except psycopg.errors.LockNotAvailable as exc:
            waits += 1
            if time.monotonic() - started + delay > deadline:
                raise MigrationLockTimeout(
                    f"pymem: {what} could not take its locks within {deadline:g} s "
                    f"({waits} attempts)"
                ) from exc
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, 5.0)


def _with_lock_timeout(dsn: str, seconds: float) -> str:
    return with_settings(dsn, {"lock_timeout": int(seconds * 1000)})


@contextmanager
def _exclusive_run(dsn: str, deadline: float) -> Iterator[psycopg.Connection[Any]]:
    """A connection holding the migrate advisory lock (waits for another run up to ``deadline``)."""
    with psycopg.connect(dsn, autocommit=True, application_name="pymem-migrate") as conn:
        # Polled, not waited for: a statement waiting on the lock would hold a
        # snapshot, which a concurrent index build of the running migrate
        # would wait for in turn.
        until = time.monotonic() + deadline
        while not _try_lock(conn):
            if time.monotonic() > until:
                raise MigrationLockTimeout(
                    f"pymem: another migrate or rollback ran for over {deadline:g} s",
                    hint="see pg_stat_activity where application_name = 'pymem-migrate'",
                )
            time.sleep(0.1)
        try:
            yield conn
        finally:
            conn.execute("select pg_advisory_unlock(%s)", (MIGRATE_LOCK,))


def _try_lock(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("select pg_try_advisory_lock(%s)", (MIGRATE_LOCK,)).fetchone()
    return bool(row and row[0])


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


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _applied_digests(conn: psycopg.Connection[Any]) -> dict[str, str]:
    if conn.execute("select to_regclass('memory.applied_sql')").fetchone() == (None,):
        return {}
    rows = conn.execute("select file, digest from memory.applied_sql").fetchall()
    return {file: digest for file, digest in rows}


def apply_sql(conn: psycopg.Connection[Any], *, force: bool = False) -> list[str]:
    """Re-apply, in one transaction on ``conn``, the ``sql/`` files whose text changed.

    With ``force`` (a migration was just applied) every file is re-applied.
    When any file is, 900_security.sql is too: the grants follow the
    functions. Returns the names applied (none: nothing changed, no lock taken).
    """
    files = [(path.name, path.read_text(encoding="utf-8")) for path in sql_files()]
    digests = {name: _digest(text) for name, text in files}
    applied = _applied_digests(conn)
    todo = {name for name, digest in digests.items() if force or applied.get(name) != digest}
    if not todo:
        return []
    todo.add("900_security.sql")
    names = []
    with conn.transaction():
        for name, text in files:
            if name not in todo:
                continue
            # One statement at a time (Citus propagates DDL statement by
            # statement); the files ship with pymem, never user input.
            for statement in split_sql(text):
                conn.execute(statement)
            names.append(name)
        if conn.execute("select to_regclass('memory.applied_sql')").fetchone() != (None,):
            conn.execute(
                "insert into memory.applied_sql as a (file, digest) "
                "select * from unnest(%s::text[], %s::text[]) "
                "on conflict (file) do update set digest = excluded.digest, applied_at = now()",
                (list(digests), list(digests.values())),
            )
    return names


def drop_sql_objects(conn: psycopg.Connection[Any]) -> None:
    """Drop the views, functions and procedures ``sql/`` defines, so a rollback can drop
    what they use."""
    views = conn.execute(
        """
        select c.oid::regclass::text
          from pg_catalog.pg_class as c
         where c.relnamespace = 'memory'::regnamespace and c.relkind = 'v'
        """
    ).fetchall()
    for (view,) in views:
        conn.execute(sql.SQL("drop view if exists {} cascade").format(sql.SQL(view)))
    for signature, _ in schema_routines(conn):
        conn.execute(sql.SQL("drop routine if exists {} cascade").format(sql.SQL(signature)))
    if conn.execute("select to_regclass('memory.applied_sql')").fetchone() != (None,):
        conn.execute("delete from memory.applied_sql")  # the next migrate applies every file


def migrate(
    dsn: str,
    *,
    embedding_dim: int | None = None,
    partition_interval: str | None = None,
    lock_timeout: float = 2.0,
    deadline: float = 300.0,
    citus: bool = False,
) -> MigrationReport:
    """Apply pending migrations, re-apply what changed in ``sql/``, maintain partitions.

    With ``citus`` the database is a Citus coordinator: its settings are
    prepared first, the tables are distributed by tenant (or made reference
    tables) once they exist, and every function is propagated to the
    workers, the tenant functions sent to their tenant's worker (see
    :mod:`pymem.db.citus`). Repeating it is as safe as on one node.

    ``embedding_dim`` fixes the dimension of stored embeddings when the
    migration that creates their index runs (default 1536); later runs keep
    the dimension already chosen. ``partition_interval`` (monthly, weekly or
    daily) likewise fixes how pg_partman partitions ``memory.messages``.
    Running it twice changes nothing, and the second run takes no table lock.
    Each step that needs a lock waits at most ``lock_timeout`` seconds at a
    time and is retried until ``deadline``.
    """
    migrations = read_migrations(str(migrations_dir()))
    polite = _with_lock_timeout(dsn, lock_timeout)
    settings: dict[str, object] = {}
    if embedding_dim is not None:
        settings["pymem.embedding_dim"] = int(embedding_dim)
    if partition_interval is not None:
        if partition_interval not in ("monthly", "weekly", "daily"):
            raise InvalidArgument(
                f"pymem: unknown partition interval {partition_interval!r}",
                hint="use monthly (default), weekly or daily",
            )
        settings["pymem.partition_interval"] = partition_interval
    yoyo_dsn = with_settings(polite, settings)
    waits = 0
    with translate_errors(), _exclusive_run(dsn, deadline):
        applied: list[str] = []
        if citus:
            with psycopg.connect(dsn, autocommit=True) as conn:
                citus_cluster.require_citus(conn)
                citus_cluster.prepare_database(conn)

        def apply_pending() -> None:
            with _backend(yoyo_dsn) as backend, backend.lock(timeout=deadline):
                for migration in backend.to_apply(migrations):
                    backend.apply_one(migration)
                    applied.append(migration.id)

        _, waited = _politely(apply_pending, deadline=deadline, what="a migration")
        waits += waited
        with psycopg.connect(polite, autocommit=True) as conn:
            if citus:
                citus_cluster.allow_owner_on_workers(conn)
                citus_cluster.distribute_tables(conn)
            files, waited = _politely(
                lambda: apply_sql(conn, force=bool(applied)), deadline=deadline, what="sql/"
            )
            waits += waited
            if citus:
                citus_cluster.distribute_functions(conn)
            rows: list[tuple[Any, ...]] = []
            if applied or files:  # else partitions are maintenance's business (no lock here)
                rows, waited = _politely(
                    lambda: conn.execute("select * from memory.maintain_partitions()").fetchall(),
                    deadline=deadline,
                    what="partition maintenance",
                )
                waits += waited
    return MigrationReport(
        applied=tuple(applied),
        rolled_back=(),
        sql_files=tuple(files),
        partitions_created=tuple(r[0] for r in rows),
        lock_waits=waits,
    )


def rollback(dsn: str, *, steps: int | None = None) -> MigrationReport:
    """Roll back the newest ``steps`` pymem migrations (all when None).

    The functions of ``sql/`` are dropped first, since they may use what a
    rollback removes, and are not re-applied: ``sql/`` always matches the
    newest schema. Run :func:`migrate` to go forward again, or apply the
    ``sql/`` of the release that matches the schema left behind.
    """
    migrations = read_migrations(str(migrations_dir()))
    with (
        translate_errors(),
        _exclusive_run(dsn, 300.0),
        _backend(dsn) as backend,
        backend.lock(),
    ):
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
