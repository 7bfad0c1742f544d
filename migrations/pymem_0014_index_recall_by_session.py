"""Recall's full-text index keys on the session, not on the tenant.

The GIN index messages_session_search_idx (tenant_id, session_id, search)
put every append of a tenant into the same tenant_id posting tree (one hot
spot for concurrent writers of a tenant, and a long posting list that every
recall query intersects). messages_session_recall_idx (session_id, search)
leaves the tenant to the row check (tenant_id = ... is still in every query)
and keeps one posting list per session id.

Locks: none that block writers. The new index is built on each partition
with CREATE INDEX CONCURRENTLY and attached to a parent index created ON
ONLY memory.messages; an interrupted build is dropped and redone by the next
`pymem migrate`. Dropping the old index takes a short ACCESS EXCLUSIVE lock
on memory.messages and its partitions (under migrate's lock_timeout, retried).
Runs outside a transaction; the rollback builds the old index the same way.
"""

from typing import Any

from yoyo import step

from pymem.db.online_index import create_partitioned_index, drop_partitioned_index

__depends__ = {"pymem_0013_add_message_parts"}
__transactional__ = False

TABLE = "memory.messages"
NEW = "messages_session_recall_idx"
OLD = "messages_session_search_idx"


def _replace(conn: Any, *, build: str, columns: str, drop: str) -> None:
    """Build index `build` on `columns`, then drop index `drop`."""
    create_partitioned_index(
        conn,
        table=TABLE,
        schema="memory",
        name=build,
        definition=f"using gin ({columns}) with (fastupdate = off)",
    )
    drop_partitioned_index(conn, schema="memory", name=drop)


def index_by_session(conn: Any) -> None:
    _replace(conn, build=NEW, columns="session_id, search", drop=OLD)


def index_by_tenant_and_session(conn: Any) -> None:
    _replace(conn, build=OLD, columns="tenant_id, session_id, search", drop=NEW)


steps = [step(index_by_session, index_by_tenant_and_session)]
