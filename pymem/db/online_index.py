"""Index changes on the partitioned ``memory.messages`` that never block writers.

``CREATE INDEX`` on a partitioned table locks every partition against writes
for the whole build. Here the parent's index is created ``ON ONLY`` the
parent (a catalog change), each partition's index is built ``CONCURRENTLY``
and attached; the parent's index turns valid when the last one is. A build
that a lock timeout or a crash interrupted leaves an invalid index behind,
which the next run drops and builds again, so running it again finishes the
job. Migrations call these functions with their own fixed index definitions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg import sql

# Partition index names: the partition's name (cut to fit) and a suffix.
_NAME_ROOM = 63


def _partitions(conn: Any, table: str) -> list[tuple[str, str]]:
    """(schema, name) of each partition of ``table``."""
    cur = conn.cursor()
    cur.execute(
        """
        select n.nspname, c.relname
          from pg_catalog.pg_inherits as i
          join pg_catalog.pg_class as c on c.oid = i.inhrelid
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
         where i.inhparent = %s::regclass
           and c.relkind = 'r'
         order by c.relname
        """,
        (table,),
    )
    return [(str(schema), str(name)) for schema, name in cur.fetchall()]


def _index_state(conn: Any, schema: str, name: str) -> tuple[bool, bool] | None:
    """(valid, attached to a parent index) of an index, or None when it does not exist."""
    cur = conn.cursor()
    cur.execute(
        """
        select x.indisvalid,
               exists (select from pg_catalog.pg_inherits as i where i.inhrelid = c.oid)
          from pg_catalog.pg_class as c
          join pg_catalog.pg_namespace as n on n.oid = c.relnamespace
          join pg_catalog.pg_index as x on x.indexrelid = c.oid
         where n.nspname = %s and c.relname = %s
        """,
        (schema, name),
    )
    row = cur.fetchone()
    return None if row is None else (bool(row[0]), bool(row[1]))


def create_partitioned_index(
    conn: Any, *, table: str, schema: str, name: str, definition: str
) -> None:
    """Create index ``schema.name`` on the partitioned ``table`` without blocking writes.

    ``definition`` is what follows ``ON table`` (``USING gin (...) WITH (...)``),
    a fixed text of the calling migration. ``conn`` must be in autocommit.
    """
    parent = sql.Identifier(schema, name)
    body = sql.SQL(definition)  # a migration's own text, never user input
    cur = conn.cursor()
    cur.execute(
        sql.SQL("create index if not exists {} on only {} {}").format(
            sql.Identifier(name), sql.SQL(table), body
        )
    )
    suffix = "_" + name.removeprefix(table.split(".")[-1] + "_")
    for part_schema, part in _partitions(conn, table):
        child = part[: _NAME_ROOM - len(suffix)] + suffix
        state = _index_state(conn, part_schema, child)
        if state is not None and not state[0] and not state[1]:
            # Left invalid by an interrupted build: build it again.
            cur.execute(
                sql.SQL("drop index concurrently if exists {}").format(
                    sql.Identifier(part_schema, child)
                )
            )
            state = None
        if state is None:
            cur.execute(
                sql.SQL("create index concurrently if not exists {} on {} {}").format(
                    sql.Identifier(child), sql.Identifier(part_schema, part), body
                )
            )
        if state is None or not state[1]:
            cur.execute(
                sql.SQL("alter index {} attach partition {}").format(
                    parent, sql.Identifier(part_schema, child)
                )
            )


def drop_partitioned_index(conn: Any, *, schema: str, name: str) -> None:
    """Drop a partitioned index and its partitions' indexes (a short exclusive lock)."""
    conn.cursor().execute(sql.SQL("drop index if exists {}").format(sql.Identifier(schema, name)))


def index_swap(
    *, table: str, schema: str, new: tuple[str, str], old: tuple[str, str]
) -> tuple[Callable[[Any], None], Callable[[Any], None]]:
    """A migration's two steps for replacing index ``old`` by ``new`` on the
    partitioned ``table``: apply builds ``new`` and drops ``old``, rollback the
    reverse, neither blocking writers. ``new`` and ``old`` are (name,
    definition), the definition as ``create_partitioned_index`` takes it."""

    def replace(conn: Any, build: tuple[str, str], drop: tuple[str, str]) -> None:
        create_partitioned_index(
            conn, table=table, schema=schema, name=build[0], definition=build[1]
        )
        drop_partitioned_index(conn, schema=schema, name=drop[0])

    return (lambda conn: replace(conn, new, old)), (lambda conn: replace(conn, old, new))
