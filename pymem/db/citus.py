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

This module is the manifest: ``tests/sql/test_citus_ready.py`` checks it
against the installed catalog (every table and every tenant function is
placed, and each distributed function really takes the argument named
here), together with the statements Citus refuses.
"""

from __future__ import annotations

from typing import Final

SCHEMA: Final = "memory"

# Hash-distributed on tenant_id, all in one co-location group.
DISTRIBUTED_TABLES: Final = (
    "tenants",
    "sessions",
    "messages",
    "idempotency_keys",
    "summaries",
    "jobs",
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
