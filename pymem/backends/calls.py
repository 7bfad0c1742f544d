"""Parameters of each SQL call, shared by the async and sync PostgreSQL backends.

Each builder validates what only Python can see (NUL characters, lone
surrogates, non-serializable metadata) and returns the named parameters of
one ``queries.sql`` block; everything else is checked by the SQL function.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..correlation import current_traceparent
from ..models import (
    ContextRequest,
    NewMessage,
    NewSummary,
    RecallRequest,
    RecallSettings,
    SessionQuery,
    SessionSettings,
    TenantSettings,
)
from ..validation import check_text, metadata_json, parts_json, vector_literal
from .vectors import vector_param


def _opt_text(name: str, value: str | None) -> str | None:
    return None if value is None else check_text(name, value)


def _ident(name: str, value: Any) -> Any:
    return check_text(name, value) if isinstance(value, str) else value


def session_params(tenant: str, session: str) -> dict[str, Any]:
    return {"tenant": _ident("tenant", tenant), "session": _ident("session", session)}


def message_params(message: NewMessage, *, batch: bool = False) -> dict[str, Any]:
    """One ``memory.message_input``'s fields, checked and encoded for the server
    (the embedding as text in a ``batch``, which travels as ``text[]``)."""
    parts = message.parts_json()
    return {
        "role": _ident("role", message.role),
        # A message with parts sends them instead of its text.
        "content": None if parts is not None else _ident("content", message.content),
        "tokens": message.tokens,
        "metadata": metadata_json(message.metadata),
        "embedding": (vector_literal if batch else vector_param)(message.embedding),
        "idempotency_key": _opt_text("idempotency_key", message.idempotency_key),
        "parts": None if parts is None else parts_json(parts),
        "name": _opt_text("name", message.name),
    }


def append_params(
    tenant: str,
    session: str,
    message: NewMessage,
    user_id: str | None,
    call_key: str | None = None,
) -> dict[str, Any]:
    """``call_key``: a key made for this call's own retries (memory.append)."""
    return {
        **session_params(tenant, session),
        **message_params(message),
        "user_id": _opt_text("user_id", user_id),
        "trace_context": current_traceparent(),
        "call_key": call_key,
        "call_retried": False,
    }


def append_many_params(
    tenant: str,
    session: str,
    messages: Sequence[NewMessage],
    user_id: str | None,
    call_keys: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """The batch as one array per field (unnested into message_input rows by SQL)."""
    rows = [message_params(m, batch=True) for m in messages]
    return {
        **session_params(tenant, session),
        **{column: [r[field] for r in rows] for field, column in _BATCH_COLUMNS.items()},
        "user_id": _opt_text("user_id", user_id),
        "trace_context": current_traceparent(),
        "call_keys": list(call_keys) if call_keys is not None else None,
        "call_retried": False,
    }


# message_input field -> the array parameter that carries it in a batch.
_BATCH_COLUMNS = {
    "role": "roles",
    "content": "contents",
    "tokens": "token_counts",
    "metadata": "metadatas",
    "embedding": "embeddings",
    "idempotency_key": "idempotency_keys",
    "parts": "part_lists",
    "name": "names",
}


def context_params(tenant: str, session: str, request: ContextRequest) -> dict[str, Any]:
    return {
        **session_params(tenant, session),
        "budget": request.budget,
        "query": _opt_text("query", request.query),
        "query_embedding": vector_param(request.query_embedding),
        "strategy": _ident("strategy", request.strategy),
        "message_overhead": request.message_overhead,
        "summary_share": request.summary_share,
        "recent_share": request.recent_share,
        "shorten_results": request.shorten_results,
    }


def recall_params(tenant: str, session: str, request: RecallRequest) -> dict[str, Any]:
    return {
        **session_params(tenant, session),
        "query": _ident("query", request.query),
        "query_embedding": vector_param(request.query_embedding),
        "before_seq": request.before_seq,
        "max_rows": request.max_rows,
    }


def add_summary_params(tenant: str, session: str, summary: NewSummary) -> dict[str, Any]:
    return {
        **session_params(tenant, session),
        "level": summary.level,
        "seq_from": summary.seq_from,
        "seq_to": summary.seq_to,
        "content": _ident("content", summary.content),
        "tokens": summary.tokens,
        "metadata": metadata_json(summary.metadata),
    }


def list_params(tenant: str, query: SessionQuery) -> dict[str, Any]:
    return {
        "tenant": _ident("tenant", tenant),
        "owner": _opt_text("owner", query.owner),
        "include_deleted": query.include_deleted,
        "after_session": _opt_text("after_session", query.after_session),
        "page_size": query.page_size,
    }


def configure_session_params(
    tenant: str, session: str, settings: SessionSettings
) -> dict[str, Any]:
    metadata = settings.metadata
    return {
        **session_params(tenant, session),
        "max_messages": settings.max_messages,
        "max_tokens": settings.max_tokens,
        "metadata": None if metadata is None else metadata_json(metadata),
        "summary_every_tokens": settings.summary_every_tokens,
    }


def configure_tenant_params(tenant: str, settings: TenantSettings) -> dict[str, Any]:
    return {
        "tenant": _ident("tenant", tenant),
        "max_messages": settings.max_messages,
        "max_tokens": settings.max_tokens,
        "default_ttl": settings.default_ttl,
        "retention": settings.retention,
    }


def configure_recall_params(tenant: str, settings: RecallSettings) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "summary_every_tokens": settings.summary_every_tokens,
        "embed_messages": settings.embed_messages,
    }


def subject_params(tenant: str, user_id: str) -> dict[str, Any]:
    return {"tenant": tenant, "user_id": check_text("user_id", user_id)}


def job_params(tenant: str, session: str, kind: str, worker: str) -> dict[str, Any]:
    return {"tenant": tenant, "session": session, "kind": kind, "worker": worker}
