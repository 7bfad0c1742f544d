"""Where each part of pymem lives on a Citus cluster.

pymem is distributed by tenant: every table that holds a tenant's rows is
hash-distributed on ``tenant_id`` and co-located with the others, so that
everything one call touches sits on one worker. Small tables that every node
reads are reference tables (a copy on each node); bookkeeping of the
installation stays on the coordinator.

Functions whose first argument is a required tenant are distributed on it:
the coordinator sends the whole call to the tenant's worker. Functions that
span tenants (maintenance, the job queue's claim, metrics, an audit check
without a tenant) stay on the coordinator.

This module is the manifest, and the steps ``pymem migrate --citus`` runs
on a coordinator with it. ``tests/sql/test_citus_ready.py`` checks the
manifest against the installed catalog (every table and every tenant
function is placed, and each distributed function really takes the argument
named here), together with the statements Citus refuses.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg import sql

from ..errors import CitusUnavailable
from .routines import schema_routines

SCHEMA: Final = "memory"

# Hash-distributed on tenant_id, all in one co-location group.
DISTRIBUTED_TABLES: Final = (
    "tenants",
    "sessions",
    "messages",
    "idempotency_keys",
    "summaries",
    "jobs",
    "term_stats",
    "session_terms",
    "rate_limits",
    "tenant_keys",
    "audit_log",
    "audit_heads",
)

# Read on every node: the installation's settings and which roles may act
# for which tenants (row-level security reads it on the node that runs the
# query).
REFERENCE_TABLES: Final = ("settings", "tenant_grants")

# Bookkeeping of the installation itself, read and written on the coordinator.
COORDINATOR_TABLES: Final = ("applied_sql", "task_runs")

# The distribution column of every distributed table.
DISTRIBUTION_COLUMN: Final = "tenant_id"

# The table the others (and the tenant functions) are co-located with.
COLOCATION_TABLE: Final = f"{SCHEMA}.{DISTRIBUTED_TABLES[0]}"

# Functions sent to the worker that holds their tenant, with the argument
# that names it. Every public function whose first argument is a required
# tenant is here or in COORDINATOR_FUNCTIONS.
DISTRIBUTED_FUNCTIONS: Final[dict[str, str]] = {
    name: "tenant"
    for name in (
        "add_summary",
        "append",
        "append_many",
        "apply_pii_policy",
        "audit_hash_at",
        "complete_job",
        "configure_encryption",
        "configure_pii",
        "configure_recall",
        "configure_session",
        "configure_tenant",
        "context",
        "count_terms",
        "delete_session",
        "destroy_retired_keys",
        "erase_subject",
        "export_subject",
        "extend_session",
        "fail_job",
        "history",
        "last_messages",
        "list_sessions",
        "list_summaries",
        "messages_to_embed",
        "pii_policy",
        "pop_message",
        "purge_session",
        "rate_limit",
        "recall",
        "reencrypt",
        "restore_session",
        "retry_job",
        "rewrap_keys",
        "rotate_key",
        "session_info",
        "set_embeddings",
        "summary_cadence",
    )
}

# Functions that take a tenant but run on the coordinator: they write a
# reference table (which role acts for which tenant). Functions whose tenant
# may be null (stats, verify_audit: every tenant) are never distributed.
COORDINATOR_FUNCTIONS: Final = ("grant_tenant", "revoke_tenant")

# Readers that one node plans once for every session (plan_cache_mode =
# force_generic_plan: their statements do not change with the values). Citus
# cannot place a generic plan on a shard, so on Citus `pymem migrate --citus`
# resets the setting on these and each call is planned with its tenant.
GENERIC_PLAN_FUNCTIONS: Final = ("_tail", "context", "history", "last_messages", "recall")

# Roles that functions run as (security definer) or that connect for them:
# Citus opens its connections to the workers as the role running the query,
# so the owner must be allowed to log in there (pg_hba.conf or
# pg_dist_authinfo decide how; see docs/scale-out.md).
OWNER_ROLE: Final = "pymem_owner"


def citus_version(conn: psycopg.Connection[Any]) -> str | None:
    """The Citus extension's version in this database, or None without it."""
    row = conn.execute(
        "select extversion from pg_catalog.pg_extension where extname = 'citus'"
    ).fetchone()
    return None if row is None else str(row[0])


def require_citus(conn: psycopg.Connection[Any]) -> str:
    version = citus_version(conn)
    if version is None:
        raise CitusUnavailable("pymem: this database has no Citus extension")
    return version


def prepare_database(conn: psycopg.Connection[Any]) -> None:
    """Settings the coordinator needs before pymem's objects are distributed.

    - ``citus.enable_unsafe_triggers``: the audit triggers stay on the shards
      of their tables (each writes its tenant's audit rows, on the same
      worker); Citus asks for this setting before it distributes a table
      with triggers.
    - ``citus.propagate_set_commands = local``: a direct SQL reader's
      ``SET LOCAL pymem.tenant`` reaches the shard queries of its transaction.
    """
    database = conn.info.dbname
    for name, value in (
        ("citus.enable_unsafe_triggers", "on"),
        ("citus.propagate_set_commands", "local"),
    ):
        conn.execute(
            sql.SQL("alter database {} set {} = {}").format(
                sql.Identifier(database), sql.SQL(name), sql.Literal(value)
            )
        )
        conn.execute("select pg_catalog.set_config(%s, %s, false)", (name, value))


def distribute_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """Distribute (or make reference) every table not yet placed; returns the
    tables placed by this call. Safe to repeat."""
    placed = {
        str(name)
        for (name,) in conn.execute("select logicalrelid::regclass::text from pg_dist_partition")
    }
    done = []
    for table in DISTRIBUTED_TABLES:
        name = f"{SCHEMA}.{table}"
        if name in placed:
            continue
        colocate = "none" if name == COLOCATION_TABLE else COLOCATION_TABLE
        conn.execute(
            "select create_distributed_table(%s, %s, colocate_with => %s)",
            (name, DISTRIBUTION_COLUMN, colocate),
        )
        done.append(name)
    for table in REFERENCE_TABLES:
        name = f"{SCHEMA}.{table}"
        if name not in placed:
            conn.execute("select create_reference_table(%s)", (name,))
            done.append(name)
    return done


def distributed_routines(conn: psycopg.Connection[Any]) -> dict[str, int | None]:
    """The routines Citus propagates, by signature, with the index of the
    argument each is distributed on (None: it runs where it is called)."""
    rows = conn.execute(
        "select objid::regprocedure::text, distribution_argument_index from pg_dist_object"
        " where classid = 'pg_catalog.pg_proc'::regclass"
    ).fetchall()
    return {str(signature): index for signature, index in rows}


def distribute_functions(conn: psycopg.Connection[Any]) -> int:
    """Propagate every function of the schema to the workers, and send the
    tenant functions to their tenant's worker. Also lets the readers plan
    each call with its values (a generic plan cannot be placed on a shard;
    ``sql/`` sets it again when it re-creates them). Only what is not yet
    so is changed; returns how many routines were."""
    placed = distributed_routines(conn)
    generic = {
        str(signature)
        for (signature,) in conn.execute(
            "select p.oid::regprocedure::text from pg_catalog.pg_proc as p"
            " where p.pronamespace = %s::regnamespace"
            " and 'plan_cache_mode=force_generic_plan' = any (p.proconfig)",
            (SCHEMA,),
        )
    }
    changed = 0
    for signature, name in schema_routines(conn):
        argument = DISTRIBUTED_FUNCTIONS.get(name)
        done = signature in placed and (placed[signature] is not None) == (argument is not None)
        if done and signature not in generic:
            continue
        changed += 1
        if signature in generic:
            conn.execute(
                sql.SQL("alter function {} reset plan_cache_mode").format(sql.SQL(signature))
            )
        if done:
            continue
        if argument is None:
            conn.execute("select create_distributed_function(%s)", (signature,))
        else:
            conn.execute(
                "select create_distributed_function(%s, %s, colocate_with => %s)",
                (signature, argument, COLOCATION_TABLE),
            )
    return changed


def allow_owner_on_workers(conn: psycopg.Connection[Any]) -> None:
    """Let the functions' owner log in, so that Citus can open its connections
    to the workers as that role (pg_hba.conf still decides from where)."""
    conn.execute(sql.SQL("alter role {} login").format(sql.Identifier(OWNER_ROLE)))
