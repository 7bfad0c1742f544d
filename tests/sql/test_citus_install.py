"""``pymem migrate --citus``: what it asks of the Citus coordinator.

CI has no Citus, so the Citus functions it calls are stood in for by
functions that record their arguments (and a pg_dist_partition of the
tables recorded), on a real migrated database. What is checked is pymem's
side: which tables and functions are placed, how, in which order, and that a
second run places nothing twice. docs/scale-out.md shows the same steps on a
real cluster (docker/citus/).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pymem import errors
from pymem.db import citus
from pymem.db.migrate import apply_sql, migrate
from pymem.db.routines import schema_routines
from pymem.ops.doctor_citus import citus_checks

STAND_INS = """
create table public.pg_dist_partition (
    logicalrelid regclass primary key, partmethod "char", partkey text, colocationid integer,
    repmodel "char"
);
create function public.column_to_column_name(rel regclass, key text) returns text
language sql as $$ select key $$;
create table public.pg_dist_object (
    classid oid, objid oid, distribution_argument_index integer, primary key (classid, objid)
);
create table public.pg_dist_node (groupid integer, noderole text, isactive boolean);
insert into public.pg_dist_node values (0, 'primary', true), (1, 'primary', true);
create table public.citus_calls (n serial, call text, args text[]);
create function public.create_distributed_table(rel text, col text, colocate_with text)
returns void language sql as $$
    insert into public.citus_calls (call, args)
    values ('distributed', array[rel, col, colocate_with]);
    insert into public.pg_dist_partition values (rel::regclass, 'h', col, 1, 's');
$$;
create function public.create_reference_table(rel text) returns void language sql as $$
    insert into public.citus_calls (call, args) values ('reference', array[rel]);
    insert into public.pg_dist_partition values (rel::regclass, 'n', null, 2, 't');
$$;
create function public.create_distributed_function(sig text, arg text default null,
                                                   colocate_with text default null)
returns void language sql as $$
    insert into public.citus_calls (call, args) values ('function', array[sig, arg, colocate_with]);
    insert into public.pg_dist_object
    values ('pg_catalog.pg_proc'::regclass, sig::regprocedure, case when arg is not null then 0 end)
    on conflict (classid, objid) do update
       set distribution_argument_index = excluded.distribution_argument_index;
$$;
create function public.run_command_on_workers(command text)
returns table (nodename text, success boolean, result text) language plpgsql as $$
declare
    v_answer boolean;
begin
    execute command into v_answer;
    return query select 'worker1'::text, true, case when v_answer then 't' else 'f' end;
end $$;
"""


@pytest.fixture(autouse=True)
def _owner_stays_nologin(dsn: str) -> Iterator[None]:
    """Roles belong to the whole test server: put the owner back as it was."""
    yield
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("alter role pymem_owner nologin")


def _install(conn: psycopg.Connection[Any]) -> None:
    citus.prepare_database(conn)
    citus.allow_owner_on_workers(conn)
    citus.distribute_tables(conn)
    citus.distribute_functions(conn)


def _calls(conn: psycopg.Connection[Any], kind: str) -> list[list[str | None]]:
    rows = conn.execute(
        "select args from public.citus_calls where call = %s order by n", (kind,)
    ).fetchall()
    return [row[0] for row in rows]


def test_tables_are_distributed_by_tenant_and_colocated(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(STAND_INS)
        _install(conn)
        distributed = _calls(conn, "distributed")
        assert distributed[0] == ["memory.tenants", "tenant_id", "none"]
        assert {row[0] for row in distributed} == {f"memory.{t}" for t in citus.DISTRIBUTED_TABLES}
        assert all(row[1:] == ["tenant_id", "memory.tenants"] for row in distributed[1:])
        assert [row[0] for row in _calls(conn, "reference")] == [
            f"memory.{t}" for t in citus.REFERENCE_TABLES
        ]
        # A second run places no table again.
        conn.execute("delete from public.citus_calls")
        _install(conn)
        assert _calls(conn, "distributed") == [] and _calls(conn, "reference") == []


def test_every_function_reaches_the_workers_and_tenant_ones_follow_their_tenant(
    dsn: str,
) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(STAND_INS)
        _install(conn)
        calls = {row[0]: row[1:] for row in _calls(conn, "function")}
        functions = conn.execute(
            "select p.oid::regprocedure::text, p.proname from pg_proc as p "
            "where p.pronamespace = 'memory'::regnamespace and p.prokind in ('f', 'p')"
        ).fetchall()
        assert set(calls) == {signature for signature, _ in functions}
        for signature, name in functions:
            if name in citus.DISTRIBUTED_FUNCTIONS:
                assert calls[signature] == ["tenant", "memory.tenants"], signature
            else:
                assert calls[signature] == [None, None], signature
        assert ("memory.verify_audit(text)", [None, None]) in calls.items()
        generic = conn.execute(
            "select proname from pg_proc where pronamespace = 'memory'::regnamespace "
            "and 'plan_cache_mode=force_generic_plan' = any (proconfig)"
        ).fetchall()
        assert generic == []
        # A second run changes nothing that is already in place.
        conn.execute("delete from public.citus_calls")
        assert citus.distribute_functions(conn) == 0
        assert _calls(conn, "function") == []
        # sql/ applied again sets the generic plans again, and the functions it
        # drops and creates are new objects: only those are acted on.
        generic_plans = (
            "select count(*), count(distinct proname) from pg_proc"
            " where pronamespace = 'memory'::regnamespace"
            " and 'plan_cache_mode=force_generic_plan' = any (proconfig)"
        )
        apply_sql(conn, force=True)
        row = conn.execute(generic_plans).fetchone()
        assert row is not None and row[1] == len(citus.GENERIC_PLAN_FUNCTIONS)
        placed = citus.distributed_routines(conn)
        new = {signature for signature, _ in schema_routines(conn) if signature not in placed}
        changed = citus.distribute_functions(conn)
        assert {call[0] for call in _calls(conn, "function")} == new
        assert row[0] <= changed <= row[0] + len(new)
        assert conn.execute(generic_plans).fetchone() == (0, 0)


def test_the_owner_may_log_in_and_the_settings_are_the_databases(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(STAND_INS)
        _install(conn)
        login = conn.execute("select rolcanlogin from pg_roles where rolname = 'pymem_owner'")
        assert login.fetchone() == (True,)
        settings = conn.execute(
            "select unnest(setconfig) from pg_db_role_setting as s "
            "join pg_database as d on d.oid = s.setdatabase where d.datname = current_database()"
        ).fetchall()
        assert {("citus.enable_unsafe_triggers=on",), ("citus.propagate_set_commands=local",)} <= (
            set(settings)
        )


def test_migrate_citus_without_citus_says_so_and_changes_nothing(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = conn.execute("select count(*) from pg_db_role_setting").fetchone()
        with pytest.raises(errors.CitusUnavailable) as caught:
            migrate(dsn, citus=True)
        assert "docs/scale-out.md" in caught.value.hint
        assert conn.execute("select count(*) from pg_db_role_setting").fetchone() == before
        login = conn.execute("select rolcanlogin from pg_roles where rolname = 'pymem_owner'")
        assert login.fetchone() == (False,)


CHECKS = {
    "citus workers",
    "citus tables",
    "citus co-location",
    "citus functions",
    "citus pymem_owner",
    "citus settings",
}


def test_doctor_finds_a_cluster_placed_as_migrate_places_it(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(STAND_INS)
        _install(conn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        checks = citus_checks(conn)
        assert [c.name for c in checks if not c.ok] == []
        assert {c.name for c in checks} == CHECKS


def test_doctor_names_what_is_not_placed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(STAND_INS)
        _install(conn)
        conn.execute(
            "delete from public.pg_dist_partition where logicalrelid = 'memory.jobs'::regclass"
        )
        conn.execute(
            "update public.pg_dist_object set distribution_argument_index = null"
            " where objid = 'memory.recall'::regproc"
        )
        conn.execute(
            "update public.pg_dist_partition set colocationid = 7"
            " where logicalrelid = 'memory.summaries'::regclass"
        )
        conn.execute("delete from public.pg_dist_node where groupid <> 0")
        conn.execute("alter role pymem_owner nologin")
        conn.execute(
            sql.SQL("alter database {} reset citus.propagate_set_commands").format(
                sql.Identifier(conn.info.dbname)
            )
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        failed = {c.name: c.detail for c in citus_checks(conn) if not c.ok}
    assert failed.keys() == CHECKS
    assert "memory.jobs" in failed["citus tables"]
    assert "recall" in failed["citus functions"]
