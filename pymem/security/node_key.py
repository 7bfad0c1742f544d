"""A master key that the server reads from a file on each node.

Clients normally bring the master key in their connection's startup options
(:mod:`pymem.security.keys`). A Citus worker runs the calls sent to it on
connections that Citus opens itself, without those options, so there the key
must come from the node: :func:`install_node_key` (``pymem keys node-file``)
creates ``memory._node_key``, which reads it from a file.

- **The path is fixed when the function is created** (a literal in its body).
  No caller can point it at another file.
- **Who can read the key.** The function is SECURITY DEFINER, owned by the
  installing role (a superuser or a member of ``pg_read_server_files``), and
  executable by ``pymem_owner`` only. pymem's own functions call it as that
  owner; no application or reader role can.
- **Where the key stays.** It is read inside the server. It is never in a
  statement, a parameter, a setting (``SHOW``) or a log line, and the file is
  outside the data directory, so base backups do not hold it.
- **Rotation.** The previous master key, for ``memory.rewrap_keys``, is read
  from the same path with ``.previous`` appended.

A connection that brings a key in its options still uses its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from psycopg import sql

from ..db.citus import citus_version
from ..errors import InvalidArgument, KeyUnavailable

NODE_KEY_FUNCTION: Final = "memory._node_key(text)"
PREVIOUS_SUFFIX: Final = ".previous"

# Only the two literals are filled in, as quoted literals (psycopg.sql).
_CREATE: Final = """
create or replace function memory._node_key(
    setting text
)
returns text
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    -- Both paths were fixed when this function was created (pymem keys
    -- node-file); the argument only chooses between them.
    return nullif(pg_catalog.btrim(
        case _node_key.setting
            when 'pymem.master_key' then pg_catalog.pg_read_file({current}, 0, 256, true)
            when 'pymem.previous_master_key' then pg_catalog.pg_read_file({previous}, 0, 256, true)
        end, E' \\t\\r\\n'), '');
end;
$fn$
"""

_COMMENT: Final = """
comment on function memory._node_key(text) is
$$This node's master key (setting pymem.master_key) or previous master key
(pymem.previous_master_key), read from the file named when `pymem keys
node-file` created this function (the previous key from the same path with
.previous appended); null when the file is missing. memory._master_key uses it
when the connection brings no key. Executable by pymem_owner only.$$
"""

_CHECK: Final = """
select k is not null, coalesce(k ~ '^[0-9a-fA-F]{64}$', false),
       case when k ~ '^[0-9a-fA-F]{64}$' then memory._key_fingerprint(lower(k)) end
  from (select memory._node_key(%s) as k) as s
"""


@dataclass(frozen=True, slots=True)
class NodeKey:
    """Where the node key was installed, and the fingerprint each node reads."""

    path: str
    fingerprint: str
    previous_fingerprint: str | None
    workers: dict[str, str]


def _may_read_files(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "select r.rolsuper"
        "    or pg_catalog.pg_has_role(current_user, 'pg_read_server_files', 'member')"
        "  from pg_catalog.pg_roles as r where r.rolname = current_user"
    ).fetchone()
    return bool(row and row[0])


def _read_here(conn: psycopg.Connection[Any], setting: str, path: str) -> str | None:
    row = conn.execute(_CHECK, (setting,)).fetchone()
    assert row is not None
    present, well_formed, fingerprint = row
    if not present:
        return None
    if not well_formed:
        raise KeyUnavailable(
            f"pymem: {path} does not hold a master key (64 hexadecimal digits)",
            hint="write the key made by `pymem keys generate` into it, alone on one line",
        )
    return str(fingerprint)


def _worker_fingerprints(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """The fingerprint of the key each Citus worker reads (the key itself never leaves)."""
    rows = conn.execute(
        "select nodename, success, result from run_command_on_workers("
        "$$select memory._key_fingerprint(lower(memory._node_key('pymem.master_key')))$$)"
    ).fetchall()
    return {str(node): str(result) if ok and result else "" for node, ok, result in rows}


def install_node_key(conn: psycopg.Connection[Any], path: str) -> NodeKey:
    """Create ``memory._node_key`` reading ``path`` (and ``path.previous``).

    ``conn`` is a superuser's (or a ``pg_read_server_files`` member's), in
    autocommit. The file must already be readable by the server on this node;
    on a Citus coordinator the function is propagated to the workers and
    each must read the same key there. Repeating it is safe.
    """
    if not os.path.isabs(path) or "\x00" in path:
        raise InvalidArgument(
            f"pymem: the key file must be an absolute path, not {path!r}",
            hint="mount the key outside the data directory, e.g. /run/secrets/pymem_master_key",
        )
    if not _may_read_files(conn):
        raise KeyUnavailable(
            f"pymem: role {conn.info.user} may not let the server read key files",
            hint="run it as a superuser (or a member of pg_read_server_files)",
        )
    previous = path + PREVIOUS_SUFFIX
    with conn.transaction():
        conn.execute(
            sql.SQL(_CREATE).format(current=sql.Literal(path), previous=sql.Literal(previous))
        )
        conn.execute(_COMMENT)
        conn.execute("revoke all on function memory._node_key(text) from public")
        conn.execute("grant execute on function memory._node_key(text) to pymem_owner")
        fingerprint = _read_here(conn, "pymem.master_key", path)
        if fingerprint is None:
            raise KeyUnavailable(
                f"pymem: the server cannot read {path} on this node",
                hint="create the file on every node, readable by the server's OS user "
                "(chmod 0400, owned by postgres)",
            )
        previous_fingerprint = _read_here(conn, "pymem.previous_master_key", previous)
    workers: dict[str, str] = {}
    if citus_version(conn) is not None:
        conn.execute("select create_distributed_function(%s)", (NODE_KEY_FUNCTION,))
        workers = _worker_fingerprints(conn)
        wrong = sorted(node for node, found in workers.items() if found != fingerprint)
        if wrong:
            raise KeyUnavailable(
                f"pymem: {', '.join(wrong)} do not read the coordinator's master key from {path}",
                hint="put the same key file at the same path on every worker, then run this again",
            )
    return NodeKey(path, fingerprint, previous_fingerprint, workers)


def node_key_installed(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("select to_regprocedure(%s) is not null", (NODE_KEY_FUNCTION,)).fetchone()
    return bool(row and row[0])


__all__ = ["NODE_KEY_FUNCTION", "NodeKey", "install_node_key", "node_key_installed"]
