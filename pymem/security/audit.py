"""Audit checkpoints: chain heads signed with a key and kept outside the database.

``memory.verify_audit()`` finds a changed, missing or reordered row. A
superuser can still rewrite a whole chain consistently (or cut its tail and
move the head back); only a copy of the heads kept elsewhere catches that.
``checkpoint`` signs the current heads with HMAC-SHA256; ``verify_checkpoint``
checks the signature, then that every recorded row still exists with the
recorded hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import psycopg

from ..errors import PymemError


class CheckpointInvalid(PymemError):
    """A checkpoint whose signature does not match: it was altered, or the key differs."""

    default_hint = "use the key the checkpoint was written with (PYMEM_AUDIT_KEY)"


def _sign(key: bytes, heads: list[dict[str, Any]], taken_at: str) -> str:
    body = json.dumps({"taken_at": taken_at, "heads": heads}, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def checkpoint(conn: psycopg.Connection[Any], key: bytes) -> dict[str, Any]:
    """The signed heads of every tenant's chain, as a JSON-ready document."""
    if not key:
        raise PymemError(
            "pymem: an audit checkpoint needs a signing key",
            hint="set PYMEM_AUDIT_KEY (keep it outside the database)",
        )
    rows = conn.execute("select * from memory.audit_checkpoint()").fetchall()
    heads = [{"tenant_id": t, "audit_id": int(i), "hash": h} for t, i, h in rows]
    taken_at = datetime.now(UTC).isoformat()
    return {"taken_at": taken_at, "heads": heads, "signature": _sign(key, heads, taken_at)}


def verify_checkpoint(
    conn: psycopg.Connection[Any], document: dict[str, Any], key: bytes
) -> list[str]:
    """Problems found comparing the database with a checkpoint (empty: consistent)."""
    expected = _sign(key, document["heads"], document["taken_at"])
    if not hmac.compare_digest(expected, document.get("signature", "")):
        raise CheckpointInvalid("pymem: the audit checkpoint's signature does not match")
    problems = []
    for head in document["heads"]:
        row = conn.execute(
            "select memory.audit_hash_at(%s, %s)", (head["tenant_id"], head["audit_id"])
        ).fetchone()
        stored = row[0] if row else None
        if stored is None:
            problems.append(f"{head['tenant_id']}: row {head['audit_id']} is gone (truncated)")
        elif stored != head["hash"]:
            problems.append(
                f"{head['tenant_id']}: row {head['audit_id']} hash differs "
                "(the chain was rewritten)"
            )
    for tenant, audit_id, problem in conn.execute("select * from memory.verify_audit()").fetchall():
        problems.append(f"{tenant}: row {audit_id}: {problem}")
    return problems
