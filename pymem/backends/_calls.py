"""Parameters and result shapes of each SQL call, shared by the sync and async backends.

Each builder validates what only Python can see (NUL characters, lone
surrogates, non-serializable metadata) and returns the named parameters of
one ``queries.sql`` block; everything else is checked by the SQL function.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from ..models import NewMessage
from ..validation import check_text, metadata_json, vector_literal


def _opt_text(name: str, value: str | None) -> str | None:
    return None if value is None else check_text(name, value)


def _ident(name: str, value: Any) -> Any:
    return check_text(name, value) if isinstance(value, str) else value


def append_params(
    tenant: str,
    session: str,
    role: str,
    content: str,
    *,
    tokens: int | None,
    metadata: Mapping[str, Any] | None,
    embedding: Sequence[float] | None,
    idempotency_key: str | None,
    user_id: str | None,
) -> dict[str, Any]:
    return {
        "tenant": _ident("tenant", tenant),
        "session": _ident("session", session),
        "role": _ident("role", role),
        "content": _ident("content", content),
        "tokens": tokens,
        "metadata": metadata_json(metadata),
        "embedding": vector_literal(embedding),
        "idempotency_key": _opt_text("idempotency_key", idempotency_key),
        "user_id": _opt_text("user_id", user_id),
    }


def append_many_params(
    tenant: str, session: str, messages: Sequence[NewMessage], user_id: str | None
) -> dict[str, Any]:
    return {
        "tenant": _ident("tenant", tenant),
        "session": _ident("session", session),
        "roles": [_ident("role", m.role) for m in messages],
        "contents": [_ident("content", m.content) for m in messages],
        "tokens": [m.tokens for m in messages],
        "metadatas": [metadata_json(m.metadata) for m in messages],
        "embeddings": [vector_literal(m.embedding) for m in messages],
        "keys": [_opt_text("idempotency_key", m.idempotency_key) for m in messages],
        "user_id": _opt_text("user_id", user_id),
    }


def session_params(tenant: str, session: str) -> dict[str, Any]:
    return {"tenant": _ident("tenant", tenant), "session": _ident("session", session)}


def context_params(
    tenant: str,
    session: str,
    *,
    budget: int,
    query: str | None,
    query_embedding: Sequence[float] | None,
    strategy: str,
    message_overhead: int,
    summary_share: float | None = None,
    recent_share: float | None = None,
) -> dict[str, Any]:
    return {
        **session_params(tenant, session),
        "budget": budget,
        "query": _opt_text("query", query),
        "query_embedding": vector_literal(query_embedding),
        "strategy": _ident("strategy", strategy),
        "message_overhead": message_overhead,
        "summary_share": summary_share,
        "recent_share": recent_share,
    }


def recall_params(
    tenant: str,
    session: str,
    *,
    query: str,
    query_embedding: Sequence[float] | None,
    before_seq: int | None,
    max_rows: int,
) -> dict[str, Any]:
    return {
        **session_params(tenant, session),
        "query": _ident("query", query),
        "query_embedding": vector_literal(query_embedding),
        "before_seq": before_seq,
        "max_rows": max_rows,
    }


def add_summary_params(
    tenant: str,
    session: str,
    *,
    level: int,
    seq_from: int,
    seq_to: int,
    content: str,
    tokens: int,
    metadata: Mapping[str, Any] | None,
) -> dict[str, Any]:
    return {
        **session_params(tenant, session),
        "level": level,
        "seq_from": seq_from,
        "seq_to": seq_to,
        "content": _ident("content", content),
        "tokens": tokens,
        "metadata": metadata_json(metadata),
    }


def list_params(
    tenant: str,
    *,
    owner: str | None,
    include_deleted: bool,
    after_session: str | None,
    page_size: int,
) -> dict[str, Any]:
    return {
        "tenant": _ident("tenant", tenant),
        "owner": _opt_text("owner", owner),
        "include_deleted": include_deleted,
        "after_session": _opt_text("after_session", after_session),
        "page_size": page_size,
    }


def configure_session_params(
    tenant: str,
    session: str,
    *,
    max_messages: int | None,
    max_tokens: int | None,
    metadata: Mapping[str, Any] | None,
    summary_every_tokens: int | None = None,
) -> dict[str, Any]:
    return {
        **session_params(tenant, session),
        "max_messages": max_messages,
        "max_tokens": max_tokens,
        "metadata": None if metadata is None else metadata_json(metadata),
        "summary_every_tokens": summary_every_tokens,
    }


def configure_tenant_params(
    tenant: str,
    *,
    max_messages: int | None,
    max_tokens: int | None,
    default_ttl: timedelta | None,
) -> dict[str, Any]:
    return {
        "tenant": _ident("tenant", tenant),
        "max_messages": max_messages,
        "max_tokens": max_tokens,
        "default_ttl": default_ttl,
    }
