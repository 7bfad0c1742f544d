"""The functions and procedures that ``sql/`` defines in schema ``memory``."""

from __future__ import annotations

from typing import Any

import psycopg


def schema_routines(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    """(signature, name) of every routine of schema memory that no extension owns,
    by name: what a rollback drops and what ``pymem migrate --citus`` propagates."""
    rows = conn.execute(
        """
        select p.oid::regprocedure::text, p.proname
          from pg_catalog.pg_proc as p
         where p.pronamespace = 'memory'::regnamespace
           and not exists (select from pg_catalog.pg_depend as d
                            where d.objid = p.oid and d.deptype = 'e')
         order by p.proname, p.oid
        """
    ).fetchall()
    return [(str(signature), str(name)) for signature, name in rows]
