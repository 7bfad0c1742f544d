"""The installed schema holds nothing that Citus refuses (tests/sql/citus_lint.py).

CI cannot run a Citus cluster, so these tests read the catalog of a one-node
install. Each rule has a negative control: a planted policy, trigger, table or
function of the refused form must be reported, and a near miss that Citus
accepts must not be.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pymem.db import citus
from tests.sql.citus_lint import Finding, check

# What is still refused on Citus, each with the change that removes it. The
# list only shrinks: a new finding fails the test, and so does one listed here
# that is gone (take it off the list).
STILL_REFUSED: frozenset[tuple[str, str]] = frozenset(
    {
        # Audit and append-only guards are triggers; on Citus they need
        # citus.enable_unsafe_triggers (the audit rows stay on the tenant's
        # shard) or writes that audit themselves.
        ("memory.audit_log", "trigger"),
        ("memory.messages", "trigger"),
        ("memory.sessions", "trigger"),
        ("memory.summaries", "trigger"),
        ("memory.tenant_keys", "trigger"),
        ("memory.tenants", "trigger"),
    }
)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose planted objects vanish with the test (rolled back)."""
    with psycopg.connect(dsn) as connection:
        yield connection
        connection.rollback()


def test_the_schema_holds_only_what_is_listed_as_still_refused(
    conn: psycopg.Connection[Any],
) -> None:
    found = {f.key() for f in check(conn)}
    new = sorted(found - STILL_REFUSED)
    assert not new, "Citus refuses these (see tests/sql/citus_lint.py):\n" + "\n".join(
        f"  {where}: {rule}" for where, rule in new
    )
    fixed = sorted(STILL_REFUSED - found)
    assert not fixed, f"no longer found, take them off STILL_REFUSED: {fixed}"


def _function(body: str, *, header: str = "", language: str = "plpgsql") -> str:
    if language == "plpgsql":
        body = f"begin\n{body}\nend;"
    return (
        f"create function memory.planted(tenant text) returns void language {language}"
        f" {header} as $planted$\n{body}\n$planted$"
    )


def _planted_sql(body: str, rule: str, detail: str, name: str) -> Any:
    """A planted SQL-language function and the finding it must produce."""
    return pytest.param(
        _function(body, language="sql"), Finding("memory.planted", rule, detail), id=name
    )


PLANTED = [
    pytest.param(
        "create policy planted on memory.summaries"
        " using (tenant_id = (select memory.current_tenant()))",
        Finding("memory.summaries", "policy-subquery", "planted"),
        id="policy-with-subquery",
    ),
    pytest.param(
        _function(
            "insert into memory.sessions as s (tenant_id, session_id, last_seq)"
            " values (planted.tenant, 's', (select 1)) on conflict do nothing;"
        ),
        Finding("memory.planted", "insert-subquery", "sessions"),
        id="insert-values-subquery",
    ),
    pytest.param(
        _function(
            "insert into memory.sessions as s (tenant_id, session_id) values (planted.tenant, 's')"
            " on conflict (tenant_id, session_id) do update"
            " set user_id = (select 'u');"
        ),
        Finding("memory.planted", "insert-subquery", "sessions"),
        id="insert-conflict-subquery",
    ),
    pytest.param(
        _function(
            "insert into memory.sessions as s (tenant_id, session_id) values (planted.tenant, 's')"
            " on conflict (tenant_id, session_id) do update set updated_at = now();"
        ),
        Finding("memory.planted", "conflict-function", "sessions: now"),
        id="now-in-do-update",
    ),
    pytest.param(
        _function(
            "update memory.sessions as s set deleted_at = case when s.deleted_at is null"
            " then now() end where s.tenant_id = planted.tenant;"
        ),
        Finding("memory.planted", "case-function", "sessions: now"),
        id="now-in-case",
    ),
    pytest.param(
        _function(
            "update memory.sessions as s set deleted_at = coalesce(s.deleted_at, now())"
            " where s.tenant_id = planted.tenant;"
        ),
        Finding("memory.planted", "case-function", "sessions: now"),
        id="now-in-coalesce",
    ),
    pytest.param(
        _function(
            "update memory.sessions as s set expires_at = greatest(s.expires_at, now())"
            " + interval '1 day' where s.tenant_id = planted.tenant;"
        ),
        Finding("memory.planted", "column-function", "sessions: now"),
        id="now-with-a-column",
    ),
    pytest.param(
        _function(
            "delete from memory.messages as m where m.tenant_id = planted.tenant"
            " and random() < 0.5;"
        ),
        Finding("memory.planted", "volatile-write", "messages: random"),
        id="volatile-in-delete",
    ),
    pytest.param(
        _function(
            "update memory.sessions as s set metadata = '{}' where s.tenant_id = planted.tenant"
            " returning clock_timestamp();"
        ),
        Finding("memory.planted", "returning-function", "sessions: clock_timestamp"),
        id="function-in-returning",
    ),
    pytest.param(
        _function(
            "perform 1 from memory.jobs as j where j.status = 'queued' for update skip locked;"
        ),
        Finding("memory.planted", "cross-tenant-lock", "jobs"),
        id="lock-across-tenants",
    ),
    pytest.param(
        _function("perform 1 from memory.jobs as j where j.tenant_id = j.session_id for update;"),
        Finding("memory.planted", "cross-tenant-lock", "jobs"),
        id="lock-pinned-to-a-column",
    ),
    pytest.param(
        "create trigger planted after insert on memory.summaries"
        " for each row execute function memory._audit_summaries()",
        Finding("memory.summaries", "trigger", "planted"),
        id="trigger",
    ),
    pytest.param(
        _function(
            "perform 1 from memory.sessions as s where s.tenant_id = planted.tenant;",
            header="set plan_cache_mode = force_generic_plan",
        ),
        Finding("memory.planted", "generic-plan"),
        id="generic-plan",
    ),
    _planted_sql(
        "with gone as (delete from memory.rate_limits as r where r.tenant_id = planted.tenant"
        " returning 1) select;",
        "sql-function",
        "data-modifying CTE",
        "sql-function-modifying-cte",
    ),
    _planted_sql(
        "select from memory.sessions as s join memory.messages as m"
        " using (tenant_id, session_id) where s.tenant_id = planted.tenant;",
        "sql-function",
        "join of sessions, messages",
        "sql-function-join",
    ),
    _planted_sql(
        "with moved as (update memory.jobs as j set status = 'queued'"
        " where j.status = 'parked' returning 1) select count(*) from moved;",
        "modifying-cte",
        "jobs: across tenants",
        "modifying-cte-across-tenants",
    ),
    _planted_sql(
        "with added as (insert into memory.jobs (tenant_id, session_id, kind)"
        " values (planted.tenant, 's', 'embed') returning 1) select count(*) from added;",
        "modifying-cte",
        "jobs: INSERT",
        "insert-cte",
    ),
    pytest.param(
        _function("perform 1;"),
        Finding("memory.planted", "distributed-function", "not placed"),
        id="tenant-function-not-placed",
    ),
    pytest.param(
        "alter table memory.rate_limits add column planted integer generated always as identity",
        Finding("memory.rate_limits", "identity-column", "planted integer"),
        id="narrow-identity",
    ),
    pytest.param(
        "create table memory.planted (tenant_id text)",
        Finding("memory.planted", "unplaced-table"),
        id="table-not-placed",
    ),
]


@pytest.mark.parametrize(("ddl", "finding"), PLANTED)
def test_a_planted_refused_form_is_found(
    conn: psycopg.Connection[Any], ddl: str, finding: Finding
) -> None:
    before = set(check(conn))
    conn.execute(ddl)  # type: ignore[arg-type]
    assert finding in set(check(conn)) - before


def test_a_function_placed_without_a_tenant_argument_is_found(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(citus.DISTRIBUTED_FUNCTIONS, "job_stats", "tenant")
    monkeypatch.setitem(citus.DISTRIBUTED_FUNCTIONS, "verify_audit", "tenant")
    found = set(check(conn))
    assert Finding("memory.job_stats", "distributed-function", "no argument tenant") in found
    assert Finding("memory.verify_audit", "distributed-function", "tenant has a default") in found


NEAR_MISSES = [
    pytest.param(
        _function(
            "perform 1 from memory.jobs as j where j.tenant_id = planted.tenant"
            " and j.status = 'queued' for update skip locked;"
        ),
        id="lock-pinned-to-the-argument",
    ),
    pytest.param(
        _function(
            "insert into memory.messages as m (tenant_id, session_id, seq, role, content, tokens)"
            " values (planted.tenant, 's', 1, 'user', case when true then now()::text end, 1);"
        ),
        id="now-in-case-of-insert-values",
    ),
    pytest.param(
        _function(
            "update memory.sessions as s set updated_at = now()"
            " where s.tenant_id = planted.tenant and s.expires_at > now();"
        ),
        id="now-alone-in-update",
    ),
    pytest.param(
        _function(
            "insert into memory.sessions as s (tenant_id, session_id) values (planted.tenant, 's')"
            " on conflict (tenant_id, session_id) do update set last_seq = s.last_seq + 1;"
        ),
        id="immutable-do-update",
    ),
]


@pytest.mark.parametrize("ddl", NEAR_MISSES)
def test_a_form_citus_accepts_is_not_reported(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch, ddl: str
) -> None:
    monkeypatch.setitem(citus.DISTRIBUTED_FUNCTIONS, "planted", "tenant")
    conn.execute(ddl)  # type: ignore[arg-type]
    assert [f for f in check(conn) if f.where == "memory.planted"] == []
