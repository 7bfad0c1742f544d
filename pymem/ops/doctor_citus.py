"""``pymem doctor`` on a Citus coordinator: is pymem placed as ``pymem migrate
--citus`` places it (:mod:`pymem.db.citus`)?"""

from __future__ import annotations

from typing import Any

import psycopg

from ..db import citus
from ..db.routines import schema_routines
from .doctor import Check

FIX = "run `pymem migrate --citus` on the coordinator (docs/scale-out.md)"


def citus_checks(conn: psycopg.Connection[Any]) -> list[Check]:
    """Workers, tables, functions, the owner's login and the settings."""
    return [
        _workers(conn),
        *_tables(conn),
        _functions(conn),
        _owner(conn),
        _settings(conn),
    ]


def _workers(conn: psycopg.Connection[Any]) -> Check:
    row = conn.execute(
        "select count(*) from pg_dist_node where groupid <> 0 and noderole = 'primary' and isactive"
    ).fetchone()
    workers = int(row[0]) if row else 0
    return Check(
        "citus workers",
        workers > 0,
        f"{workers} active",
        "add them on the coordinator: select citus_add_node('<host>', 5432)",
    )


def _tables(conn: psycopg.Connection[Any]) -> list[Check]:
    placed = {
        str(name): (str(method), int(colocation), column, str(model))
        for name, method, colocation, column, model in conn.execute(
            "select logicalrelid::regclass::text, partmethod, colocationid,"
            " column_to_column_name(logicalrelid, partkey), repmodel from pg_dist_partition"
        )
    }
    wrong = []
    groups = set()
    for table in citus.DISTRIBUTED_TABLES:
        name = f"{citus.SCHEMA}.{table}"
        found = placed.get(name)
        if found is None or found[0] != "h" or found[2] != citus.DISTRIBUTION_COLUMN:
            wrong.append(name)
        else:
            groups.add(found[1])
    for table in citus.REFERENCE_TABLES:
        name = f"{citus.SCHEMA}.{table}"
        found = placed.get(name)
        if found is None or found[3] != "t":
            wrong.append(f"{name} (reference)")
    return [
        Check(
            "citus tables",
            not wrong,
            "distributed by tenant_id, reference tables in place"
            if not wrong
            else "not placed: " + ", ".join(wrong),
            FIX,
        ),
        Check(
            "citus co-location",
            len(groups) <= 1,
            "one group" if len(groups) <= 1 else f"{len(groups)} groups: a call spans workers",
            "undistribute the odd tables (undistribute_table) and run `pymem migrate --citus`",
        ),
    ]


def _functions(conn: psycopg.Connection[Any]) -> Check:
    rows = schema_routines(conn)
    placed = citus.distributed_routines(conn)
    local = sorted({name for signature, name in rows if signature not in placed})
    undelegated = sorted(
        {
            name
            for signature, name in rows
            if signature in placed
            and name in citus.DISTRIBUTED_FUNCTIONS
            and placed[signature] is None
        }
    )
    problems = []
    if local:
        problems.append("only on the coordinator: " + ", ".join(local[:8]))
    if undelegated:
        problems.append("not sent to their tenant's worker: " + ", ".join(undelegated[:8]))
    return Check(
        "citus functions",
        not problems,
        "; ".join(problems) or f"{len(rows)} on every node, tenant functions follow their tenant",
        FIX,
    )


def _owner(conn: psycopg.Connection[Any]) -> Check:
    here = conn.execute(
        "select rolcanlogin from pg_catalog.pg_roles where rolname = %s", (citus.OWNER_ROLE,)
    ).fetchone()
    workers = conn.execute(
        "select nodename, success, result from run_command_on_workers("
        "$$select rolcanlogin from pg_catalog.pg_roles where rolname = 'pymem_owner'$$)"
    ).fetchall()
    refusing = [str(node) for node, success, result in workers if not success or result != "t"]
    ok = bool(here and here[0]) and not refusing
    detail = (
        "may log in on every node"
        if ok
        else "may not log in on: " + (", ".join(refusing) or "the coordinator")
    )
    return Check(f"citus {citus.OWNER_ROLE}", ok, detail, FIX)


def _settings(conn: psycopg.Connection[Any]) -> Check:
    row = conn.execute(
        "select current_setting('citus.propagate_set_commands', true),"
        " current_setting('citus.enable_unsafe_triggers', true)"
    ).fetchone()
    propagate, triggers = (row[0], row[1]) if row else (None, None)
    ok = propagate == "local" and triggers == "on"
    return Check(
        "citus settings",
        ok,
        f"propagate_set_commands={propagate}, enable_unsafe_triggers={triggers}",
        FIX,
    )
