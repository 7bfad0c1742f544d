"""Tenant key operations: choose a mode, rotate, re-encrypt in batches, re-wrap.

Each function takes a psycopg connection whose startup options carry the
master key (:func:`pymem.keys.with_master_key`) and whose login may act for
the tenants named (an owner login, member of pymem_owner). Re-encryption runs
in small transactions, so appends go on between and during batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from ..db.queries import QUERIES
from ..errors import translate_errors


@dataclass(frozen=True, slots=True)
class Progress:
    """What one memory.reencrypt batch did."""

    tenant: str
    sessions: int
    messages: int
    summaries: int
    sessions_remaining: int


@dataclass(frozen=True, slots=True)
class TenantKeys:
    """A tenant's encryption state."""

    tenant: str
    mode: str
    active_version: int | None
    versions: int
    sessions_behind: int


def _in_tenant(conn: psycopg.Connection[Any], tenant: str, query: Any, args: Any) -> Any:
    with conn.transaction():
        conn.execute(QUERIES["set_tenant"], {"tenant": tenant})
        return conn.execute(query, args).fetchall()


def reencrypt_all(
    conn: psycopg.Connection[Any],
    tenant: str,
    *,
    batch_rows: int = 2000,
    on_batch: Callable[[Progress], None] | None = None,
) -> Progress:
    """Run memory.reencrypt until no session is behind, then drop retired keys."""
    total = Progress(tenant, 0, 0, 0, 0)
    with translate_errors():
        while True:
            rows = _in_tenant(
                conn, tenant, "select * from memory.reencrypt(%s, %s)", (tenant, batch_rows)
            )
            sessions, messages, summaries, remaining = rows[0]
            step = Progress(tenant, sessions, messages, summaries, remaining)
            total = Progress(
                tenant,
                total.sessions + sessions,
                total.messages + messages,
                total.summaries + summaries,
                remaining,
            )
            if on_batch is not None:
                on_batch(step)
            # Done, or no progress (every session behind is locked by others).
            if remaining == 0 or sessions + messages + summaries == 0:
                break
        if total.sessions_remaining == 0:
            _in_tenant(conn, tenant, "select memory.destroy_retired_keys(%s)", (tenant,))
    return total


def configure(conn: psycopg.Connection[Any], tenant: str, mode: str) -> int | None:
    """Set the tenant's mode (a new data key when sealing); returns the active version."""
    with translate_errors():
        rows = _in_tenant(
            conn, tenant, "select memory.configure_encryption(%s, %s)", (tenant, mode)
        )
    version: int | None = rows[0][0]
    return version


def rotate(conn: psycopg.Connection[Any], tenant: str) -> int:
    """Start a new data key version for the tenant; returns it."""
    with translate_errors():
        rows = _in_tenant(conn, tenant, "select memory.rotate_key(%s)", (tenant,))
    version: int = rows[0][0]
    return version


def tenants_with_keys(conn: psycopg.Connection[Any]) -> list[str]:
    """Every tenant that has data keys (needs an owner login)."""
    with translate_errors():
        rows = conn.execute(
            "select distinct tenant_id from memory.tenant_keys order by tenant_id"
        ).fetchall()
    return [r[0] for r in rows]


def rewrap_all(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Re-wrap every tenant's data keys from the previous master key to the current one."""
    done: dict[str, int] = {}
    for tenant in tenants_with_keys(conn):
        with translate_errors():
            rows = _in_tenant(conn, tenant, "select memory.rewrap_keys(%s)", (tenant,))
        done[tenant] = rows[0][0]
    return done


def status(conn: psycopg.Connection[Any]) -> list[TenantKeys]:
    """Mode, key versions and sessions not yet on the active key, per tenant."""
    with translate_errors():
        rows = conn.execute(
            """
            select t.tenant_id, t.encryption, a.version,
                   (select count(*) from memory.tenant_keys as k where k.tenant_id = t.tenant_id),
                   (select count(*) from memory.sessions as s
                     where s.tenant_id = t.tenant_id and s.key_version is distinct from a.version)
              from memory.tenants as t
             cross join lateral (select memory._active_key(t.tenant_id) as version) as a
             where t.encryption <> 'none'
                or exists (select from memory.tenant_keys as k where k.tenant_id = t.tenant_id)
             order by t.tenant_id
            """
        ).fetchall()
    return [TenantKeys(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in rows]
