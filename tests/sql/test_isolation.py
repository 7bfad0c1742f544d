"""Tenant isolation: catalog lints, a behaviour matrix enumerated from the
catalog, a pooled-connection leak test, and negative controls that break the
isolation on purpose and must turn the checks red.

Logins: ``iso_app`` (pymem_app), ``iso_worker`` (pymem_app + pymem_worker),
``iso_reader`` (pymem_reader, granted tenant a) and ``iso_auditor``. Each
statement runs in its own transaction acting for tenant ``a``; tenant ``b``
holds canary rows that must stay unreachable.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pymem import Memory, PymemError
from pymem.backends import postgres as pg_backend
from pymem.errors import TenantAccessDenied

from .test_hostile_input import SAMPLE, _functions

LOGINS = {
    "iso_app": ["pymem_app"],
    "iso_worker": ["pymem_app", "pymem_worker"],
    "iso_reader": ["pymem_reader"],
    "iso_auditor": ["pymem_auditor"],
    "iso_monitor": ["pymem_monitor"],
}
CANARY = "B-CANARY-7f3e"
# Refusals a login may meet: no privilege / RLS (42501), a view that cannot be
# written (0A000, 55000), the tenant guard (ME017).
REFUSED = {"42501", "0A000", "55000", "ME017"}
# Cross-tenant by design, and returning identifiers or hashes only (no content):
# the worker's queue and the auditor's chain checks.
CROSS_TENANT_BY_DESIGN = {
    "claim_jobs",
    "job_stats",
    "verify_audit",
    "audit_checkpoint",
    "metrics",
}
# What pymem_auditor reads of every tenant: the chain (identifiers, hashes).
AUDITOR_SCOPE = {"audit_log", "audit_heads", "audit_hash_at", "verify_audit", "audit_checkpoint"}


def _refused(outcome: Any) -> bool:
    return isinstance(outcome, str) and outcome in REFUSED


def _as(dsn: str, login: str) -> str:
    return make_conninfo(dsn, user=login)


def _create_logins(conn: psycopg.Connection[Any]) -> None:
    for login, roles in LOGINS.items():
        # Roles are cluster-wide: an earlier test may have made it.
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute(sql.SQL("create role {} login").format(sql.Identifier(login)))
        for role in roles:
            conn.execute(
                sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(login))
            )


def _seed(conn: psycopg.Connection[Any]) -> None:
    for tenant, text in (("a", "a-text"), ("b", CANARY)):
        conn.execute("select memory.configure_tenant(%s, max_messages => 1000)", (tenant,))
        conn.execute("select memory.configure_recall(%s, summary_every_tokens => 50)", (tenant,))
        for i in range(4):
            conn.execute(
                "select memory.append(%s, %s, 'user', %s, 30, user_id => %s, "
                "idempotency_key => %s)",
                (tenant, f"{tenant}-s", f"{text} {i}", f"{tenant}-user", f"{tenant}-k{i}"),
            )
        conn.execute(
            "select memory.add_summary(%s, %s, 1, 1, 2, %s, 3)", (tenant, f"{tenant}-s", text)
        )
        conn.execute("select memory.rate_limit(%s, %s, 10, '1 minute')", (tenant, f"{tenant}-u"))
        conn.execute("select memory.count_terms(%s, %s)", (tenant, f"{tenant}-s"))
        conn.execute("select memory.export_subject(%s, %s)", (tenant, f"{tenant}-user"))
    conn.execute("select memory.grant_tenant('a', 'iso_reader')")


@pytest.fixture
def world(dsn: str) -> dict[str, str]:
    """Logins and two seeded tenants; returns login -> DSN."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        _create_logins(conn)
        _seed(conn)
    return {login: _as(dsn, login) for login in LOGINS}


def _relations(conn: psycopg.Connection[Any]) -> list[tuple[str, str]]:
    return conn.execute(
        """
        select c.relname::text, c.relkind::text
          from pg_catalog.pg_class as c
         where c.relnamespace = 'memory'::regnamespace and c.relkind in ('r', 'p', 'v')
         order by c.relname
        """
    ).fetchall()


def _b_snapshot(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """Tenant b's rows as a superuser sees them (the no-side-effect oracle)."""
    return tuple(
        conn.execute(
            sql.SQL("select count(*) from memory.{} where tenant_id = 'b'").format(t)
        ).fetchone()
        for t in map(
            sql.Identifier,
            [
                "tenants",
                "sessions",
                "messages",
                "summaries",
                "idempotency_keys",
                "jobs",
                "rate_limits",
                "audit_log",
                "term_stats",
                "session_terms",
            ],
        )
    )


def _in_tenant(conn: psycopg.Connection[Any], tenant: str, query: Any, args: Any = None) -> Any:
    """Run one statement in a transaction acting for ``tenant``; its rows, or the SQLSTATE."""
    try:
        with conn.transaction():
            conn.execute("select set_config('pymem.tenant', %s, true)", (tenant,))
            cur = conn.execute(query, args)
            rows = cur.fetchall() if cur.description else cur.rowcount
            return rows
    except psycopg.Error as exc:
        return exc.sqlstate or "?"


def relation_violations(world: dict[str, str], admin_dsn: str) -> list[str]:
    """Every login x relation x command, acting for a, reaching for b."""
    found: list[str] = []
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        relations = _relations(admin)
        before = _b_snapshot(admin)
    for login, login_dsn in world.items():
        with psycopg.connect(login_dsn, autocommit=True) as conn:
            for name, _kind in relations:
                rel = sql.Identifier("memory", name)
                # Tables without tenant rows: a column of theirs to write.
                other_col = {
                    "settings": "singleton",
                    "task_runs": "task",
                    "applied_sql": "file",
                }.get(name)
                tenant_col = other_col is None
                where_b = sql.SQL("where tenant_id <> 'a'" if tenant_col else "where false")
                checks = {
                    "select": sql.SQL("select count(*) from {} {}").format(rel, where_b),
                    "update": sql.SQL("update {} set tenant_id = tenant_id {}").format(rel, where_b)
                    if tenant_col
                    else sql.SQL("update {} set {} = {}").format(
                        rel, sql.Identifier(other_col or ""), sql.Identifier(other_col or "")
                    ),
                    "delete": sql.SQL("delete from {} {}").format(rel, where_b),
                    "insert": sql.SQL("insert into {} (tenant_id) values ('b')").format(rel)
                    if tenant_col
                    else sql.SQL("insert into {} default values").format(rel),
                }
                for command, query in checks.items():
                    outcome = _in_tenant(conn, "a", query)
                    if login == "iso_auditor" and name in AUDITOR_SCOPE and command == "select":
                        continue  # the auditor's cross-tenant read, by design
                    ok = (
                        _refused(outcome)
                        or outcome == [(0,)]
                        or outcome == 0
                        or (command == "update" and outcome == 0)
                    )
                    if not ok:
                        found.append(f"{login} {command} {name}: {outcome!r}")
            # The reader is bound to a: naming b shows nothing at all.
            for name, _kind in relations:
                if name == "settings":
                    continue
                rel = sql.Identifier("memory", name)
                outcome = _in_tenant(conn, "b", sql.SQL("select count(*) from {}").format(rel))
                if not _refused(outcome) and outcome != [(0,)] and login == "iso_reader":
                    found.append(f"{login} set b, select {name}: {outcome!r}")
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        if _b_snapshot(admin) != before:
            found.append("tenant b's rows changed")
    return found


def _call(name: str, names: list[str], types: list[str], tenant: str) -> tuple[Any, list[Any]]:
    args: list[Any] = []
    for arg_name, type_name in zip(names, types, strict=False):
        if arg_name == "tenant":
            args.append(tenant)
        elif arg_name == "session":
            args.append(f"{tenant}-s")
        elif arg_name in ("user_id", "owner"):
            args.append(f"{tenant}-user")
        elif arg_name == "role" and name in ("append",):
            args.append("user")
        elif arg_name == "strategy":
            args.append("hybrid")
        elif arg_name == "query":
            args.append("canary text")
        elif arg_name == "kind":
            args.append("summarize")
        else:
            args.append(SAMPLE.get(type_name))
    query = sql.SQL("select * from memory.{}({})").format(
        sql.Identifier(name),
        sql.SQL(", ").join(sql.SQL("%s::{}").format(sql.SQL(t)) for t in types),
    )
    return query, args


def _may_execute(conn: psycopg.Connection[Any], name: str) -> bool:
    """May this connection's login execute memory.<name> (any overload)?"""
    granted = conn.execute(
        "select bool_or(has_function_privilege(p.oid, 'execute')) from pg_proc as p "
        "where p.pronamespace = 'memory'::regnamespace and p.proname = %s",
        (name,),
    ).fetchone()
    return bool(granted and granted[0])


def function_violations(world: dict[str, str], admin_dsn: str) -> list[str]:
    """Every function a login may execute, acting for a: tenant b is never reached."""
    found: list[str] = []
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        functions = _functions(admin)
        before = _b_snapshot(admin)
    for login, login_dsn in world.items():
        with psycopg.connect(login_dsn, autocommit=True) as conn:
            for name, names, types in functions:
                if not _may_execute(conn, name):
                    continue
                if login == "iso_auditor" and name in AUDITOR_SCOPE:
                    outcome = _in_tenant(conn, "a", *_call(name, names, types, "b"))
                    if CANARY in repr(outcome):
                        found.append(f"{login} {name}(b) shows content")
                elif "tenant" in names:
                    query, args = _call(name, names, types, "b")
                    outcome = _in_tenant(conn, "a", query, args)
                    if not _refused(outcome):
                        found.append(f"{login} {name}(b) acting for a: {str(outcome)[:120]}")
                    # a's own tenant with b's identifiers reads like a missing session
                    query, args = _call(name, names, types, "a")
                    args = [
                        f"b-{a[2:]}" if isinstance(a, str) and a.startswith("a-") else a
                        for a in args
                    ]
                    outcome = _in_tenant(conn, "a", query, args)
                    if CANARY in repr(outcome):
                        found.append(f"{login} {name}(a, b's ids): {str(outcome)[:120]}")
                elif name not in CROSS_TENANT_BY_DESIGN:
                    query, args = _call(name, names, types, "a")
                    outcome = _in_tenant(conn, "a", query, args)
                    if CANARY in repr(outcome) or "'b'" in repr(outcome):
                        found.append(f"{login} {name}(): {str(outcome)[:120]}")
                elif CANARY in repr(_in_tenant(conn, "a", *_call(name, names, types, "a"))):
                    found.append(f"{login} {name}() shows content")
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        if _b_snapshot(admin) != before:
            found.append("tenant b's rows changed")
    return found


# -- catalog lints -------------------------------------------------------------


def catalog_violations(conn: psycopg.Connection[Any]) -> list[str]:
    found = [
        f"table {r[0]} without forced RLS"
        for r in conn.execute(
            "select relname from pg_class where relnamespace = 'memory'::regnamespace "
            "and relkind in ('r', 'p') and not (relrowsecurity and relforcerowsecurity)"
        )
    ]
    found += [
        f"table {r[0]} without a tenant policy for reads and writes"
        for r in conn.execute(
            """
            select c.relname from pg_class as c
             where c.relnamespace = 'memory'::regnamespace and c.relkind in ('r', 'p')
               and not c.relispartition
               and c.relname not in ('settings', 'tenant_grants', 'task_runs', 'applied_sql')
               and not exists (
                   select from pg_policies as p
                    where p.schemaname = 'memory' and p.tablename = c.relname
                      and p.cmd = 'ALL' and p.roles = '{public}'
                      and p.qual like '%tenant_id = memory.current_tenant()%'
                      and p.with_check like '%tenant_id = memory.current_tenant()%')
            """
        )
    ]
    found += [
        f"policy {r[0]} on {r[1]} reads every row for {r[2]}"
        for r in conn.execute(
            """
            select policyname, tablename, roles::text from pg_policies
             where schemaname = 'memory' and qual = 'true'
               and not ((policyname = 'functions' and roles = '{pymem_owner}')
                        or (roles = '{pymem_auditor}' and cmd = 'SELECT'
                            and tablename in ('audit_log', 'audit_heads'))
                        or (tablename = 'settings' and cmd = 'SELECT'))
            """
        )
    ]
    found += [
        f"view {r[0]} is not security_invoker"
        for r in conn.execute(
            "select relname from pg_class where relnamespace = 'memory'::regnamespace "
            "and relkind = 'v' and not coalesce('security_invoker=true' = any(reloptions), false)"
        )
    ]
    found += [
        f"security definer {r[0]} does not pin search_path"
        for r in conn.execute(
            "select oid::regprocedure::text from pg_proc "
            "where pronamespace = 'memory'::regnamespace and prosecdef "
            "and not coalesce(exists (select from unnest(proconfig) as c "
            "where c like 'search_path=%%'), false)"
        )
    ]
    found += [
        f"{r[0]} is executable by PUBLIC"
        for r in conn.execute(
            "select oid::regprocedure::text from pg_proc "
            "where pronamespace = 'memory'::regnamespace "
            "and has_function_privilege('public', oid, 'execute') is not false "
            "and (proacl is null or exists (select from aclexplode(proacl) as a "
            "where a.grantee = 0))"
        )
    ]
    for role in ("pymem_app", "pymem_worker", "pymem_reader", "pymem_auditor"):
        row = conn.execute(
            "select rolsuper or rolbypassrls or rolcreaterole or rolcreatedb from pg_roles "
            "where rolname = %s",
            (role,),
        ).fetchone()
        if row is None or row[0]:
            found.append(f"{role} is missing or can bypass")
        owned = conn.execute(
            "select count(*) from pg_class where relowner = %s::regrole "
            "and relnamespace = 'memory'::regnamespace",
            (role,),
        ).fetchone()
        if owned != (0,):
            found.append(f"{role} owns relations")
    found += [
        f"pymem_app has {r[1]} on {r[0]}"
        for r in conn.execute(
            """
            select c.relname, p.priv from pg_class as c
             cross join unnest(array['select', 'insert', 'update', 'delete', 'truncate']) as p(priv)
             where c.relnamespace = 'memory'::regnamespace and c.relkind in ('r', 'p', 'v')
               and has_table_privilege('pymem_app', c.oid, p.priv)
            """
        )
    ]
    return found


def test_catalog_lints(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert catalog_violations(conn) == []


def test_tenant_a_cannot_reach_b_through_any_table_or_view(world: dict[str, str], dsn: str) -> None:
    assert relation_violations(world, dsn) == []


def test_tenant_a_cannot_reach_b_through_any_function(world: dict[str, str], dsn: str) -> None:
    assert function_violations(world, dsn) == []


def test_reader_sees_its_granted_tenant_and_nothing_without_one(
    world: dict[str, str], dsn: str
) -> None:
    with psycopg.connect(world["iso_reader"], autocommit=True) as conn:
        rows = _in_tenant(conn, "a", "select distinct tenant_id from memory.message_log")
        assert rows == [("a",)]
        assert conn.execute("select count(*) from memory.message_log").fetchone() == (0,)
        denied = _in_tenant(conn, "b", "select * from memory.history('b', 'b-s')")
        assert denied == "ME017"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("select memory.revoke_tenant('a', 'iso_reader')")
    with psycopg.connect(world["iso_reader"], autocommit=True) as conn:
        assert _in_tenant(conn, "a", "select count(*) from memory.message_log") == [(0,)]


def test_app_must_set_the_tenant_and_gets_a_typed_error(world: dict[str, str]) -> None:
    with psycopg.connect(world["iso_app"], autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as unset:
            conn.execute("select * from memory.history('a', 'a-s')")
        assert unset.value.sqlstate == "ME017"
        assert "set_config" in (unset.value.diag.message_hint or "")
    mem = Memory.connect(world["iso_app"])
    try:
        assert [m.content for m in mem.session("a-s", tenant="a").messages()][:1] == ["a-text 0"]
        backend: Any = mem.backend
        with (
            backend.tenant_connection("a") as conn,
            pytest.raises(TenantAccessDenied),
            pg_backend.translate_errors(),
        ):
            conn.execute("select * from memory.history('b', 'b-s')").fetchall()
    finally:
        mem.close()


def test_session_ids_of_another_tenant_read_like_missing_ones(world: dict[str, str]) -> None:
    mem = Memory.connect(world["iso_app"])
    try:
        errors = []
        for session in ("b-s", "never-existed"):
            with pytest.raises(PymemError) as exc:
                mem.session(session, tenant="a").info()
            text = str(exc.value).replace(session, "<id>")
            errors.append((type(exc.value), text.replace(exc.value.correlation_id, "<call>")))
        assert errors[0] == errors[1]
    finally:
        mem.close()


# -- pooled connections ----------------------------------------------------------


def pooled_leaks(app_dsn: str, rounds: int = 250, threads: int = 8) -> list[str]:
    """Interleave tenants a and b over a 4-connection pool; report any crossing."""
    mem = Memory.connect(app_dsn, max_size=4)
    found: list[str] = []
    lock = threading.Lock()

    def run(worker: int) -> None:
        for i in range(rounds):
            tenant = "a" if (worker + i) % 2 == 0 else "b"
            chat = mem.session(f"{tenant}-pool-{worker}", tenant=tenant)
            chat.append("user", f"{tenant}-pooled {worker} {i}", tokens=3)
            seen = {m.content.split("-", 1)[0] for m in chat.messages()}
            window = chat.context(budget=200, query="pooled", strategy="hybrid")
            seen |= {item.content.split("-", 1)[0] for item in window.items}
            if seen - {tenant}:
                with lock:
                    found.append(f"{tenant} saw {sorted(seen - {tenant})}")

    try:
        workers = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        backend: Any = mem.backend
        for _ in range(8):
            with backend.connection() as conn:
                left = conn.execute("select current_setting('pymem.tenant', true)").fetchone()
                if left not in ((None,), ("",)):
                    found.append(f"a pooled connection still acts for {left[0]!r}")
    finally:
        mem.close()
    return found


def test_pooled_connections_never_carry_a_tenant_over(world: dict[str, str]) -> None:
    assert pooled_leaks(world["iso_app"]) == []


# -- negative controls: break isolation on purpose; the checks must see it ---------


@pytest.fixture
def admin(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn


def test_control_an_open_policy_is_caught(
    world: dict[str, str], dsn: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute("drop policy tenant_isolation on memory.messages")
    admin.execute("create policy tenant_isolation on memory.messages using (true)")
    assert any("policy" in v or "tenant policy" in v for v in catalog_violations(admin))
    assert any("iso_reader select messages" in v for v in relation_violations(world, dsn))


def test_control_a_missing_guard_is_caught(
    world: dict[str, str], dsn: str, admin: psycopg.Connection[Any]
) -> None:
    admin.execute(
        "create or replace function memory._tenant_guard(tenant text) returns void "
        "language sql volatile security invoker set search_path = pg_catalog, pg_temp "
        "as $$ select $$"
    )
    assert any("history(b) acting for a" in v for v in function_violations(world, dsn))


def test_control_an_open_fast_path_is_caught(
    world: dict[str, str], dsn: str, admin: psycopg.Connection[Any]
) -> None:
    # The hot paths skip the guard when memory._act_for holds: were it to
    # hold for anyone, the matrix must see b reached.
    admin.execute(
        "create or replace function memory._act_for(tenant text) returns boolean "
        "language sql volatile security invoker return true"
    )
    assert any("history(b) acting for a" in v for v in function_violations(world, dsn))


def test_an_owner_acts_for_the_tenant_it_names(
    world: dict[str, str], admin: psycopg.Connection[Any]
) -> None:
    # Privileged logins need not set pymem.tenant: a hot path (memory._act_for)
    # sets it for the transaction as the guard would, also over another one.
    with admin.transaction():
        admin.execute("select memory.append('a', 'a-own', 'user', 'mine', 1)")
        assert admin.execute("select memory.current_tenant()").fetchone() == ("a",)
        admin.execute("select * from memory.history('b', 'b-s')").fetchall()
        assert admin.execute("select memory.current_tenant()").fetchone() == ("b",)
    assert admin.execute("select memory.current_tenant()").fetchone() == (None,)
    # Any other login is refused, its setting untouched.
    with psycopg.connect(world["iso_app"]) as conn:
        conn.execute("select set_config('pymem.tenant', 'a', true)")
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("select * from memory.append('b', 'b-s', 'user', 'x', 1)")
        assert refused.value.sqlstate == "ME017"
        conn.rollback()
        conn.execute("select set_config('pymem.tenant', 'a', true)")
        conn.execute("savepoint s")
        with pytest.raises(psycopg.Error) as refused_again:
            conn.execute("select * from memory.history('b', 'b-s')")
        assert refused_again.value.sqlstate == "ME017"
        conn.execute("rollback to savepoint s")
        assert conn.execute("select memory.current_tenant()").fetchone() == ("a",)


def test_control_privilege_slips_are_caught(admin: psycopg.Connection[Any]) -> None:
    admin.execute(
        "alter function memory.append_many(text, text, memory.turn_input[], text, text, "
        "text[], boolean) "
        "reset search_path"
    )
    admin.execute(
        "grant execute on function memory._tail(text, text, bigint, integer, "
        "double precision, bigint[], integer) to public"
    )
    admin.execute("alter table memory.jobs no force row level security")
    admin.execute("grant select on memory.jobs to pymem_app")
    found = catalog_violations(admin)
    assert any("append_many" in v and "search_path" in v for v in found)
    assert any("_tail" in v and "PUBLIC" in v for v in found)
    assert any("jobs without forced RLS" in v for v in found)
    assert any("pymem_app has select on jobs" in v for v in found)


def test_control_a_session_wide_tenant_setting_is_caught(
    world: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    queries = {
        name: text.replace("%(tenant)s, true)", "%(tenant)s, false)")
        for name, text in pg_backend.QUERIES.items()
    }
    assert queries != dict(pg_backend.QUERIES)
    monkeypatch.setattr(pg_backend, "QUERIES", queries)
    assert any("still acts for" in v for v in pooled_leaks(world["iso_app"], rounds=20))


# Crafted values: near-miss tenants, wildcards and injection shapes aimed at b.
CRAFTED_TENANTS = [
    "b",
    "B",
    "b ",
    " b",
    "b\u200b",
    "\u0430",
    "a'||'b",
    "a' or tenant_id='b",
    "%",
    "_",
]
CRAFTED_VALUES = [
    "b-s",
    "%",
    "_-s",
    "b-%",
    ".*",
    "' or '1'='1",
    "b-s' or tenant_id = 'b",
    "b-s'; select * from memory.messages where tenant_id = 'b'; --",
    "b-user",
    "B-CANARY",
]


def test_crafted_inputs_acting_for_a_never_reach_b(world: dict[str, str], dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as admin:
        functions = _functions(admin)
        before = _b_snapshot(admin)
    calls = leaks = 0
    with psycopg.connect(world["iso_app"], autocommit=True) as conn:
        for name, names, types in functions:
            if not _may_execute(conn, name) or "tenant" not in names:
                continue
            query, base = _call(name, names, types, "a")
            for tenant in CRAFTED_TENANTS:
                args = [tenant if n == "tenant" else v for n, v in zip(names, base, strict=False)]
                outcome = _in_tenant(conn, "a", query, args)
                calls += 1
                assert outcome == "ME017", (name, tenant, outcome)
            text_args = [i for i, t in enumerate(types) if t == "text" and names[i] != "tenant"]
            for position in text_args:
                for value in CRAFTED_VALUES:
                    args = list(base)
                    args[position] = value
                    outcome = _in_tenant(conn, "a", query, args)
                    calls += 1
                    if CANARY in repr(outcome):
                        leaks += 1
    with psycopg.connect(dsn, autocommit=True) as admin:
        assert _b_snapshot(admin) == before
    assert leaks == 0
    assert calls > 500  # the matrix really ran


def test_an_app_login_can_use_the_whole_python_api_for_its_tenant(
    world: dict[str, str],
) -> None:
    from datetime import timedelta

    from pymem import NewMessage
    from pymem.errors import TenantAccessDenied as Denied
    from pymem.tier.ratelimit import Limit, RateLimits

    limits = RateLimits(per_session=Limit(100, timedelta(minutes=1)))
    with Memory.connect(world["iso_app"], rate_limits=limits) as mem:
        mem.configure_tenant(tenant="a", max_messages=500, default_ttl=timedelta(days=30))
        mem.configure_recall(tenant="a", summary_every_tokens=None, embed_messages=False)
        mem.configure_pii({"email": "redact"}, tenant="a")
        chat = mem.session("api", tenant="a", user="api-user")
        chat.append("user", "mail me at x@example.org", idempotency_key="k1")
        chat.append_many([NewMessage("assistant", "noted"), NewMessage("user", "thanks")])
        assert chat.messages()[0].content == "mail me at [EMAIL]"
        for strategy in ("recent", "summary", "hybrid"):
            assert chat.context(budget=200, query="mail", strategy=strategy).items
        assert chat.recall("mail")
        assert chat.summaries() == []
        chat.configure(max_messages=50, metadata={"topic": "api"})
        chat.extend(timedelta(days=1))
        assert chat.info().message_count == 3
        assert [s.session_id for s in mem.sessions(tenant="a", user="api-user")] == ["api"]
        assert [s.tenant_id for s in mem.stats(tenant="a")] == ["a"]
        with pytest.raises(Denied):
            mem.stats()  # every tenant: owners only
        chat.delete()
        chat.restore()
        assert mem.export_subject("api-user", tenant="a")["sessions"]
        assert mem.erase_subject("api-user", tenant="a") == [("api", 3)]
