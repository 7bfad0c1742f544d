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

from yoyo import step

from pymem.db.online_index import index_swap

__depends__ = {"pymem_0013_add_message_parts"}
__transactional__ = False

index_by_session, index_by_tenant_and_session = index_swap(
    table="memory.messages",
    schema="memory",
    new=("messages_session_recall_idx", "using gin (session_id, search) with (fastupdate = off)"),
    old=(
        "messages_session_search_idx",
        "using gin (tenant_id, session_id, search) with (fastupdate = off)",
    ),
)

steps = [step(index_by_session, index_by_tenant_and_session)]
