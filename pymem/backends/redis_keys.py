"""Names of pymem's Redis keys, shared by the Redis backend and the Redis tier.

Identifiers may hold ``:``, ``{`` or ``}``; they are escaped so that keys stay
exact and a session's hash tag (``{tenant:session}``) keeps all of its keys in
one Redis Cluster slot.
"""

from __future__ import annotations


def escape(part: str) -> str:
    """``part`` with ``%``, ``:``, ``{`` and ``}`` percent-encoded."""
    return part.replace("%", "%25").replace(":", "%3A").replace("{", "%7B").replace("}", "%7D")


def session_tag(tenant: str, session: str) -> str:
    """The prefix of every key of one session: ``memory:{<tenant>:<session>}``."""
    return f"memory:{{{escape(tenant)}:{escape(session)}}}"


def tenant_tag(tenant: str) -> str:
    """The prefix of a tenant's own keys: ``memory:{<tenant>}``."""
    return f"memory:{{{escape(tenant)}}}"
