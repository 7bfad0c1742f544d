"""``pymem doctor``: check a database and say what to fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from ..config import Settings
from ..db.citus import citus_version
from ..db.migrate import pending_migrations
from ..errors import first_line
from ..security.node_key import node_key_installed

API_FUNCTIONS = (
    "append",
    "append_many",
    "history",
    "last_messages",
    "context",
    "session_info",
    "list_sessions",
    "extend_session",
    "configure_session",
    "configure_tenant",
    "delete_session",
    "restore_session",
    "purge_session",
    "purge_expired",
    "stats",
    "maintain",
    "maintain_if_due",
    "maintain_in_steps",
    "schedule_maintenance",
    "ensure_partitions",
)


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _checks(dsn: str) -> list[Check]:
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        return [
            Check(
                "connect",
                False,
                first_line(exc),
                "start PostgreSQL, or fix the DSN (PYMEM_DSN / --dsn)",
            )
        ]
    with conn:
        out = [_server_check(conn), *_extension_checks(conn)]
        schema = conn.execute("select to_regnamespace('memory') is not null").fetchone()
        has_schema = bool(schema and schema[0])
        out.append(
            Check(
                "schema memory",
                has_schema,
                "present" if has_schema else "missing",
                "run `pymem migrate --dsn ...`",
            )
        )
        if has_schema:
            out.extend(_schema_checks(conn, dsn))
            out.extend(_security_checks(conn))
            if citus_version(conn) is not None:
                from .doctor_citus import citus_checks  # it builds on Check, defined here

                out.extend(citus_checks(conn))
            maintenance = _maintenance_check(conn)
            if maintenance is not None:
                out.append(maintenance)
        out.append(_durability_check(conn))
    return out


def _server_check(conn: psycopg.Connection[Any]) -> Check:
    version = conn.execute(
        "select current_setting('server_version_num')::int, current_setting('server_version')"
    ).fetchone()
    assert version is not None
    return Check(
        "server",
        version[0] >= 140000,
        f"PostgreSQL {version[1]}",
        "pymem needs PostgreSQL 14 or newer",
    )


def _extension_checks(conn: psycopg.Connection[Any]) -> list[Check]:
    out = []
    for ext, package in (
        ("pgcrypto", "postgresql-contrib"),
        ("vector", "pgvector (`make demo` builds it)"),
        ("pg_partman", "pg_partman (Debian: postgresql-15-partman)"),
    ):
        row = conn.execute(
            "select a.name is not null, e.extversion from pg_available_extensions as a "
            "full join pg_extension as e on e.extname = a.name "
            "where coalesce(a.name, e.extname) = %s",
            (ext,),
        ).fetchone()
        available = bool(row and row[0])
        installed = row[1] if row else None
        if installed:
            out.append(Check(f"extension {ext}", True, f"installed {installed}"))
            continue
        detail = "available, not installed" if available else "not available"
        fix = "run `pymem migrate`" if available else f"install {package}"
        out.append(Check(f"extension {ext}", False, detail, fix))
    return out


def _schema_checks(conn: psycopg.Connection[Any], dsn: str) -> list[Check]:
    """Migrations applied, API functions present, a partition for now."""
    try:
        pending = pending_migrations(dsn)
    except Exception as exc:  # yoyo raises assorted errors on odd databases
        pending = [f"unknown ({exc})"]
    out = [
        Check(
            "migrations",
            not pending,
            "up to date" if not pending else "pending: " + ", ".join(pending),
            "run `pymem migrate`",
        )
    ]
    rows = conn.execute(
        "select p.proname from pg_proc as p where p.pronamespace = 'memory'::regnamespace"
    ).fetchall()
    missing = sorted(set(API_FUNCTIONS) - {r[0] for r in rows})
    out.append(
        Check(
            "functions",
            not missing,
            f"{len(API_FUNCTIONS)} API functions"
            if not missing
            else "missing: " + ", ".join(missing),
            "run `pymem migrate` (it re-applies sql/)",
        )
    )
    managed = conn.execute(
        "select to_regclass('partman.part_config') is not null and exists "
        "(select from partman.part_config where parent_table = 'memory.messages')"
        if conn.execute("select to_regclass('partman.part_config')").fetchone() != (None,)
        else "select false"
    ).fetchone()
    out.append(
        Check(
            "pg_partman",
            bool(managed and managed[0]),
            "manages memory.messages" if managed and managed[0] else "not managing memory.messages",
            "install pg_partman, then run `pymem migrate`",
        )
    )
    part = conn.execute(
        "select count(*) filter (where not p.is_default "
        "and now() >= p.range_from and now() < p.range_to), "
        "(select count(*) from (select 1 from memory.messages_default limit 1000) as d) "
        "from memory.partitions() as p"
    ).fetchone()
    if part is not None:
        out.append(
            Check(
                "partitions",
                part[0] > 0,
                "a partition covers now" if part[0] else "no partition for now",
                "run `pymem maintain`",
            )
        )
        out.append(
            Check(
                "default partition",
                part[1] == 0,
                "empty" if part[1] == 0 else f"{part[1]}{'+' if part[1] >= 1000 else ''} rows",
                "run `pymem maintain`: it moves them into partitions of their own",
            )
        )
    return out


MAINTENANCE_FIX = (
    "run `pymem maintain`; keep a `pymem worker` running (it maintains hourly), "
    "or schedule `select memory.maintain()` daily (cron, pg_cron)"
)


def _maintenance_check(conn: psycopg.Connection[Any]) -> Check | None:
    """When maintenance last ran; a warning after a day without."""
    if conn.execute("select to_regclass('memory.task_runs')").fetchone() == (None,):
        return None
    installed = "null"
    if conn.execute("select to_regclass('public._yoyo_migrations')").fetchone() != (None,):
        installed = (
            "(select min(y.applied_at_utc) from public._yoyo_migrations as y "
            "where y.migration_id like 'pymem\\_%')"
        )
    row = conn.execute(
        "select extract(epoch from now() - (select r.finished_at from memory.task_runs as r "
        "where r.task = 'maintain')), "
        f"extract(epoch from (now() at time zone 'UTC') - {installed})"  # a fixed text
    ).fetchone()
    since_run, since_install = row if row is not None else (None, None)
    if since_run is None:
        fresh = since_install is None or since_install < 86400
        detail = "never run" + (" (installed less than a day ago)" if fresh else "")
        return Check("maintenance", fresh, detail, MAINTENANCE_FIX)
    hours = float(since_run) / 3600
    return Check("maintenance", hours < 24, f"last run {hours:.1f} h ago", MAINTENANCE_FIX)


def _durability_check(conn: psycopg.Connection[Any]) -> Check:
    durable = conn.execute(
        "select current_setting('fsync'), current_setting('synchronous_commit')"
    ).fetchone()
    assert durable is not None
    return Check(
        "durability",
        durable == ("on", "on"),
        f"fsync={durable[0]} synchronous_commit={durable[1]}",
        "turn both on: acknowledged appends can be lost otherwise",
    )


def _security_checks(conn: psycopg.Connection[Any]) -> list[Check]:
    """Row-level security on every table, and the master key for encrypting tenants."""
    out = []
    open_tables = [
        r[0]
        for r in conn.execute(
            "select relname from pg_class where relnamespace = 'memory'::regnamespace "
            "and relkind in ('r', 'p') and not (relrowsecurity and relforcerowsecurity)"
        )
    ]
    if conn.execute("select to_regrole('pymem_app') is not null").fetchone() == (True,):
        out.append(
            Check(
                "row security",
                not open_tables,
                "forced on every table" if not open_tables else "off: " + ", ".join(open_tables),
                "run `pymem migrate`; never disable row level security on memory tables",
            )
        )
    encrypting = conn.execute(
        "select to_regclass('memory.tenant_keys') is not null "
        "and exists (select from memory.tenant_keys)"
    ).fetchone()
    if encrypting == (True,):
        has_key = Settings.from_env().master_key_set
        node_key = node_key_installed(conn)
        out.append(
            Check(
                "master key",
                has_key or node_key,
                "PYMEM_MASTER_KEY set"
                if has_key
                else "read by the server from its key file"
                if node_key
                else "tenants encrypt, PYMEM_MASTER_KEY unset",
                "set PYMEM_MASTER_KEY (or pass keys= to Memory.connect) where pymem runs,"
                " or install a key file on every node: pymem keys node-file",
            )
        )
    return out


def run_checks(console: Console, dsn: str) -> int:
    """Print the checks; return the number of problems."""
    checks = _checks(dsn)
    table = Table(title="pymem doctor")
    table.add_column("check")
    table.add_column("")
    table.add_column("detail")
    table.add_column("fix")
    for check in checks:
        table.add_row(
            check.name,
            "[green]ok[/]" if check.ok else "[red]FAIL[/]",
            check.detail,
            "" if check.ok else check.fix,
        )
    console.print(table)
    problems = sum(1 for c in checks if not c.ok)
    console.print("[green]all good[/]" if not problems else f"[red]{problems} problem(s)[/]")
    return problems
