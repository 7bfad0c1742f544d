"""A backend that keeps everything in process memory: tests, notebooks, demos.

It follows the same rules as the SQL functions, check for check, and passes
the same contract suite as the PostgreSQL backend.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ..errors import (
    IdempotencyKeyReused,
    InvalidArgument,
    MessageTooLarge,
    SessionDeleted,
    SessionNotFound,
    SessionOwnedByAnotherUser,
    SummaryRangeInvalid,
)
from ..models import (
    AppendResult,
    ContextItem,
    ContextWindow,
    NewMessage,
    RecalledMessage,
    SessionInfo,
    StoredMessage,
    Summary,
    TenantStats,
)
from ..validation import (
    DEFAULT_EMBEDDING_DIM,
    check_append,
    check_budget,
    check_content,
    check_embedding,
    check_ident,
    check_range,
    check_strategy,
    metadata_json,
)
from . import _ranking


@dataclass
class _Tenant:
    max_messages: int | None = None
    max_tokens: int | None = None
    default_ttl: timedelta | None = None
    summary_every_tokens: int | None = 2000
    embed_messages: bool = False


@dataclass
class _Session:
    info: SessionInfo
    messages: list[StoredMessage] = field(default_factory=list)
    keys: dict[str, tuple[int, str, datetime]] = field(default_factory=dict)
    summaries: list[Summary] = field(default_factory=list)
    vectors: dict[int, list[float]] = field(default_factory=dict)


def _item(part: str, m: StoredMessage, score: float | None) -> ContextItem:
    return ContextItem(
        part=part, seq=m.seq, role=m.role, content=m.content, tokens=m.tokens, score=score
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _now() -> datetime:
    return datetime.now(UTC)


def _request_hash(role: str, content: str) -> str:
    return hashlib.md5(f"{role}:{content}".encode()).hexdigest()


class InMemoryBackend:
    """Thread-safe, process-local storage with the semantics of the SQL API."""

    def __init__(self, *, embedding_dim: int = DEFAULT_EMBEDDING_DIM) -> None:
        self._lock = threading.RLock()
        self._tenants: dict[str, _Tenant] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._embedding_dim = embedding_dim
        self._next_summary_id = 0

    # -- helpers ---------------------------------------------------------------

    def _live(self, tenant: str, session: str) -> _Session:
        check_ident("tenant", tenant)
        check_ident("session", session)
        found = self._sessions.get((tenant, session))
        if found is None:
            raise SessionNotFound(f"memory: session {tenant}/{session} not found")
        if found.info.deleted_at is not None:
            raise SessionDeleted(f"memory: session {tenant}/{session} is deleted")
        return found

    def _any(self, tenant: str, session: str) -> _Session:
        check_ident("tenant", tenant)
        check_ident("session", session)
        found = self._sessions.get((tenant, session))
        if found is None:
            raise SessionNotFound(f"memory: session {tenant}/{session} not found")
        return found

    # -- writes ----------------------------------------------------------------

    def append(
        self,
        tenant: str,
        session: str,
        role: str,
        content: str,
        *,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
        idempotency_key: str | None = None,
        user_id: str | None = None,
    ) -> AppendResult:
        checked = check_append(
            tenant,
            session,
            role,
            content,
            tokens=tokens,
            metadata=metadata,
            embedding=embedding,
            idempotency_key=idempotency_key,
            user_id=user_id,
            embedding_dim=self._embedding_dim,
        )
        stored_metadata = checked.metadata
        estimated = checked.estimated
        n_tokens = checked.tokens

        with self._lock:
            state = self._sessions.get((tenant, session))
            request = _request_hash(role, content)
            if state is not None and idempotency_key is not None:
                known = state.keys.get(idempotency_key)
                if known is not None and known[1] == request:
                    return AppendResult(seq=known[0], created_at=known[2], duplicate=True)
            if state is not None and state.info.deleted_at is not None:
                raise SessionDeleted(f"memory: session {tenant}/{session} is deleted")
            owner = state.info.user_id if state is not None else None
            if user_id is not None and (owner or user_id) != user_id:
                raise SessionOwnedByAnotherUser(
                    f"memory: session {tenant}/{session} belongs to another user",
                    hint="use a new session id for this user",
                )
            if state is not None and idempotency_key in state.keys:
                raise IdempotencyKeyReused(
                    f"memory: idempotency key {idempotency_key!r} was already used for "
                    "another message"
                )
            now = _now()
            tenant_state = self._tenants.setdefault(tenant, _Tenant())
            if state is None:
                expires = now + tenant_state.default_ttl if tenant_state.default_ttl else None
                info = SessionInfo(
                    tenant_id=tenant,
                    session_id=session,
                    user_id=user_id,
                    last_seq=0,
                    first_seq=1,
                    message_count=0,
                    token_count=0,
                    summarized_upto=0,
                    max_messages=None,
                    max_tokens=None,
                    metadata={},
                    created_at=now,
                    updated_at=now,
                    expires_at=expires,
                    deleted_at=None,
                )
                state = _Session(info=info)
            info = state.info
            seq = info.last_seq + 1
            max_messages = info.max_messages or tenant_state.max_messages
            max_tokens = info.max_tokens or tenant_state.max_tokens
            if max_tokens is not None and n_tokens > max_tokens:
                raise MessageTooLarge(
                    f"memory: message has {n_tokens} tokens, the session cap is {max_tokens}",
                    hint="raise max_tokens or split the message",
                )
            message = StoredMessage(
                seq=seq,
                role=role,
                content=content,
                tokens=n_tokens,
                tokens_estimated=estimated,
                metadata=stored_metadata,
                created_at=now,
            )
            messages = [*state.messages, message]
            if max_messages is not None and len(messages) > max_messages:
                messages = messages[len(messages) - max_messages :]
            if max_tokens is not None:
                total = 0
                keep = 0
                for kept in reversed(messages):
                    if total + kept.tokens > max_tokens:
                        break
                    total += kept.tokens
                    keep += 1
                messages = messages[len(messages) - keep :]
            state.messages = messages
            state.info = replace(
                info,
                user_id=info.user_id or user_id,
                last_seq=seq,
                first_seq=messages[0].seq,
                message_count=len(messages),
                token_count=sum(m.tokens for m in messages),
                updated_at=now,
            )
            if idempotency_key is not None:
                state.keys[idempotency_key] = (seq, request, now)
            if embedding is not None:
                state.vectors[seq] = [float(x) for x in embedding]
            kept = {m.seq for m in messages}
            state.vectors = {k: v for k, v in state.vectors.items() if k in kept}
            self._sessions[(tenant, session)] = state
            return AppendResult(seq=seq, created_at=now, duplicate=False)

    def append_many(
        self,
        tenant: str,
        session: str,
        messages: Sequence[NewMessage],
        *,
        user_id: str | None = None,
    ) -> list[AppendResult]:
        if not messages:
            raise InvalidArgument(
                "memory: messages must be a non-empty array",
                hint="pass at least one message",
            )
        if len(messages) > 10000:
            raise InvalidArgument(
                f"memory: a batch holds at most 10000 messages, got {len(messages)}",
                hint="split the batch",
            )
        with self._lock:
            # All or nothing: work on a copy and swap it in at the end.
            saved_sessions = copy.deepcopy(self._sessions)
            saved_tenants = copy.deepcopy(self._tenants)
            try:
                return [
                    self.append(
                        tenant,
                        session,
                        m.role,
                        m.content,
                        tokens=m.tokens,
                        metadata=m.metadata,
                        embedding=m.embedding,
                        idempotency_key=m.idempotency_key,
                        user_id=user_id,
                    )
                    for m in messages
                ]
            except BaseException:
                self._sessions = saved_sessions
                self._tenants = saved_tenants
                raise

    # -- reads -----------------------------------------------------------------

    def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        check_range(
            "after_seq",
            after_seq,
            0,
            2**63 - 1,
            "pass 0 for the first page, then the last seq you saw",
        )
        check_range("page_size", page_size, 1, 10000, "page through long sessions with after_seq")
        with self._lock:
            state = self._live(tenant, session)
            return [m for m in state.messages if m.seq > after_seq][:page_size]

    def last_messages(self, tenant: str, session: str, count: int = 50) -> list[StoredMessage]:
        check_range("count", count, 1, 10000, "use history to page through more")
        with self._lock:
            state = self._live(tenant, session)
            return state.messages[-count:]

    def context(
        self,
        tenant: str,
        session: str,
        *,
        budget: int,
        query: str | None = None,
        query_embedding: Sequence[float] | None = None,
        strategy: str = "recent",
        message_overhead: int = 0,
        summary_share: float | None = None,
        recent_share: float | None = None,
    ) -> ContextWindow:
        check_budget(budget)
        overhead = check_range(
            "message_overhead",
            message_overhead,
            0,
            1000,
            "chat formats add about 3 to 4 tokens per message",
        )
        check_strategy(strategy)
        ss = summary_share if summary_share is not None else (0.3 if strategy == "summary" else 0.1)
        rs = recent_share if recent_share is not None else (0.7 if strategy == "summary" else 0.1)
        if ss < 0 or rs < 0 or ss + rs > 1:
            raise InvalidArgument(
                f"memory: shares must be >= 0 and add up to at most 1, got summary {ss} "
                f"and recent {rs}",
                hint="e.g. summary_share=0.2, recent_share=0.25",
            )
        if query_embedding is not None:
            check_embedding(query_embedding, self._embedding_dim)
        with self._lock:
            state = self._live(tenant, session)
            messages = list(state.messages)
            summaries = list(state.summaries)
            info = state.info
        if strategy == "recent":
            items = [_item("recent", m, None) for m in _ranking.tail(messages, budget, overhead)]
            return ContextWindow(
                items=tuple(items), budget=budget, strategy=strategy, message_overhead=overhead
            )

        v_summary = math.floor(budget * ss)
        v_recent = math.floor(budget * rs)
        v_recall = budget - v_summary - v_recent if strategy == "hybrid" else 0
        if strategy == "summary":
            v_recent = budget - v_summary
        avg = info.token_count / max(info.message_count, 1)
        reserved = _ranking.tail(messages, v_recent, overhead)
        first = reserved[0].seq if reserved else info.last_seq + 1

        cover = _ranking.summary_cover(summaries, min(info.summarized_upto, first - 1), v_summary)
        used = sum(d.tokens + overhead for d in cover)
        if used > v_summary:
            kept_cover: list[Summary] = []
            used = 0
            for d in sorted(cover, key=lambda x: -x.seq_to):
                if used + d.tokens + overhead > v_summary:
                    break
                kept_cover.append(d)
                used += d.tokens + overhead
            cover = sorted(kept_cover, key=lambda d: d.seq_from)
        v_recall += v_summary - used

        recalled: list[tuple[StoredMessage, float]] = []
        if (
            strategy == "hybrid"
            and v_recall > 0
            and (query or query_embedding is not None)
            and first > 1
        ):
            used = 0
            by_seq = {m.seq: m for m in messages}
            for found in self.recall(
                tenant,
                session,
                query or "",
                query_embedding=query_embedding,
                before_seq=first,
                max_rows=min(max(math.ceil(2 * v_recall / max(avg + overhead, 1)), 20), 500),
            ):
                if used + found.tokens + overhead > v_recall:
                    continue
                recalled.append((by_seq[found.seq], found.score))
                used += found.tokens + overhead
                if v_recall - used < overhead + 1:
                    break
            v_recent += v_recall - used
        else:
            v_recent += v_recall
        taken = frozenset(m.seq for m, _ in recalled)
        recent = _ranking.tail(messages, v_recent, overhead, taken)
        items = [
            ContextItem(
                part="summary",
                seq=d.seq_to,
                role="system",
                content=d.content,
                tokens=d.tokens,
                score=float(d.level),
            )
            for d in cover
        ]
        turns = [_item("recall", m, score) for m, score in recalled]
        turns += [_item("recent", m, None) for m in recent]
        items += sorted(turns, key=lambda i: i.seq or 0)
        return ContextWindow(
            items=tuple(items), budget=budget, strategy=strategy, message_overhead=overhead
        )

    def recall(
        self,
        tenant: str,
        session: str,
        query: str,
        *,
        query_embedding: Sequence[float] | None = None,
        before_seq: int | None = None,
        max_rows: int = 50,
    ) -> list[RecalledMessage]:
        check_range(
            "max_rows", max_rows, 1, 10000, "ask for the few dozen turns a context can hold"
        )
        if query_embedding is not None:
            check_embedding(query_embedding, self._embedding_dim)
        with self._lock:
            state = self._live(tenant, session)
            messages = list(state.messages)
            vectors = dict(state.vectors)
        pool = max(max_rows * 2, 100)
        text = _ranking.bm25_smoothed(messages, query, before_seq)[:pool]
        vector = (
            _ranking.cosine_ranking(vectors, query_embedding, before_seq)[:pool]
            if query_embedding is not None
            else []
        )
        by_seq = {m.seq: m for m in messages}
        return [
            RecalledMessage(
                seq=seq,
                role=by_seq[seq].role,
                content=by_seq[seq].content,
                tokens=by_seq[seq].tokens,
                score=score,
                text_rank=tr,
                vector_rank=vr,
            )
            for seq, score, tr, vr in _ranking.fuse(text, vector)[:max_rows]
        ]

    def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        with self._lock:
            state = self._live(tenant, session)
            return sorted(state.summaries, key=lambda d: (d.seq_from, -d.level))

    def add_summary(
        self,
        tenant: str,
        session: str,
        *,
        level: int,
        seq_from: int,
        seq_to: int,
        content: str,
        tokens: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        if not (
            1 <= level <= 32
            and 1 <= seq_from <= seq_to
            and isinstance(content, str)
            and tokens >= 0
        ):
            raise InvalidArgument(
                "memory: a summary needs level 1..32, 1 <= seq_from <= seq_to, content and "
                "tokens >= 0",
                hint="see memory.add_summary's reference",
            )
        metadata_json(metadata)
        check_content(content)
        with self._lock:
            state = self._live(tenant, session)
            info = state.info
            same = [d for d in state.summaries if d.level == level - 1]
            if level == 1:
                start = max(info.summarized_upto + 1, info.first_seq)
                if seq_from != start or seq_to > info.last_seq:
                    raise SummaryRangeInvalid(
                        f"memory: a level-1 summary of {tenant}/{session} must cover "
                        f"{start}..(at most {info.last_seq}), got "
                        f"{seq_from}..{seq_to}",
                        hint="read session_info().summarized_upto and summarize from the next seq",
                    )
                state.info = replace(info, summarized_upto=seq_to)
            elif (
                not any(d.seq_from == seq_from for d in same)
                or not any(d.seq_to == seq_to for d in same)
                or any(
                    d.level == level and d.seq_to >= seq_from and d.seq_from <= seq_to
                    for d in state.summaries
                )
            ):
                raise SummaryRangeInvalid(
                    f"memory: a level-{level} summary must span whole level-{level - 1} "
                    "summaries not yet rolled up",
                    hint="list them with list_summaries",
                )
            self._next_summary_id += 1
            state.summaries.append(
                Summary(
                    summary_id=self._next_summary_id,
                    level=level,
                    seq_from=seq_from,
                    seq_to=seq_to,
                    content=content,
                    tokens=tokens,
                    created_at=_now(),
                )
            )
            return self._next_summary_id

    def configure_recall(
        self,
        tenant: str,
        *,
        summary_every_tokens: int | None = 2000,
        embed_messages: bool = False,
    ) -> None:
        check_ident("tenant", tenant)
        if summary_every_tokens is not None and summary_every_tokens < 50:
            raise InvalidArgument(
                f"memory: summary_every_tokens must be >= 50 or null, got {summary_every_tokens}",
                hint="None turns summaries off",
            )
        with self._lock:
            policy = self._tenants.setdefault(tenant, _Tenant())
            policy.summary_every_tokens = summary_every_tokens
            policy.embed_messages = embed_messages

    def session_info(self, tenant: str, session: str) -> SessionInfo:
        with self._lock:
            return self._any(tenant, session).info

    def list_sessions(
        self,
        tenant: str,
        *,
        owner: str | None = None,
        include_deleted: bool = False,
        after_session: str | None = None,
        page_size: int = 100,
    ) -> list[SessionInfo]:
        check_ident("tenant", tenant)
        if owner is not None:
            check_ident("owner", owner)
        check_range("page_size", page_size, 1, 10000, "page with after_session")
        with self._lock:
            rows = [
                s.info
                for (t, _), s in self._sessions.items()
                if t == tenant
                and (owner is None or s.info.user_id == owner)
                and (include_deleted or s.info.deleted_at is None)
                and (after_session is None or s.info.session_id.encode() > after_session.encode())
            ]
        rows.sort(key=lambda info: info.session_id.encode())
        return rows[:page_size]

    def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        check_ident("tenant", tenant)
        check_ident("user_id", user_id)
        with self._lock:
            mine = sorted(
                (
                    s
                    for (t, _), s in self._sessions.items()
                    if t == tenant and s.info.user_id == user_id
                ),
                key=lambda s: s.info.session_id,
            )
            sessions = [
                {
                    "session_id": s.info.session_id,
                    "created_at": _iso(s.info.created_at),
                    "updated_at": _iso(s.info.updated_at),
                    "expires_at": _iso(s.info.expires_at),
                    "deleted_at": _iso(s.info.deleted_at),
                    "metadata": s.info.metadata,
                    "messages": [
                        {
                            "seq": m.seq,
                            "role": m.role,
                            "content": m.content,
                            "tokens": m.tokens,
                            "metadata": m.metadata,
                            "created_at": _iso(m.created_at),
                        }
                        for m in s.messages
                    ],
                    "summaries": [
                        {
                            "level": d.level,
                            "seq_from": d.seq_from,
                            "seq_to": d.seq_to,
                            "content": d.content,
                            "created_at": _iso(d.created_at),
                        }
                        for d in sorted(s.summaries, key=lambda d: (d.seq_from, d.level))
                    ],
                }
                for s in mine
            ]
        return {
            "tenant": tenant,
            "user_id": user_id,
            "exported_at": _iso(_now()),
            "sessions": sessions,
        }

    def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        check_ident("tenant", tenant)
        check_ident("user_id", user_id)
        with self._lock:
            mine = sorted(
                sid
                for (t, sid), s in self._sessions.items()
                if t == tenant and s.info.user_id == user_id
            )
            return [(sid, self.purge_session(tenant, sid)) for sid in mine]

    def stats(self, tenant: str | None = None) -> list[TenantStats]:
        with self._lock:
            totals: dict[str, list[SessionInfo]] = {}
            for (t, _), s in self._sessions.items():
                if tenant is None or t == tenant:
                    totals.setdefault(t, []).append(s.info)
        return [
            TenantStats(
                tenant_id=t,
                sessions=len(infos),
                live_sessions=sum(1 for i in infos if i.deleted_at is None),
                messages=sum(i.message_count for i in infos),
                tokens=sum(i.token_count for i in infos),
                last_activity=max(i.updated_at for i in infos),
            )
            for t, infos in sorted(totals.items(), key=lambda kv: kv[0].encode())
        ]

    # -- lifecycle -------------------------------------------------------------

    def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise InvalidArgument(
                f"memory: ttl must be positive, got {ttl!r}",
                hint="pass a timedelta such as timedelta(days=30)",
            )
        with self._lock:
            state = self._live(tenant, session)
            now = _now()
            base = max(state.info.expires_at or now, now)
            state.info = replace(state.info, expires_at=base + ttl)
            return base + ttl

    def configure_session(
        self,
        tenant: str,
        session: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        summary_every_tokens: int | None = None,
    ) -> None:
        if summary_every_tokens is not None and summary_every_tokens < 50:
            raise InvalidArgument(
                f"memory: summary_every_tokens must be >= 50, got {summary_every_tokens}",
                hint="pass None to keep the tenant's cadence",
            )
        for name, cap in (("max_messages", max_messages), ("max_tokens", max_tokens)):
            if cap is not None and cap < 1:
                raise InvalidArgument(
                    f"memory: {name} must be >= 1, got {cap}",
                    hint="pass None to keep the tenant default",
                )
        new_metadata = None if metadata is None else json.loads(metadata_json(metadata))
        with self._lock:
            state = self._live(tenant, session)
            state.info = replace(
                state.info,
                max_messages=max_messages,
                max_tokens=max_tokens,
                metadata=state.info.metadata if new_metadata is None else new_metadata,
                updated_at=_now(),
            )

    def configure_tenant(
        self,
        tenant: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        default_ttl: timedelta | None = None,
    ) -> None:
        check_ident("tenant", tenant)
        if (
            (max_messages is not None and max_messages < 1)
            or (max_tokens is not None and max_tokens < 1)
            or (default_ttl is not None and default_ttl <= timedelta(0))
        ):
            raise InvalidArgument(
                "memory: caps must be >= 1 and default_ttl positive",
                hint="pass None for no cap or no expiry",
            )
        with self._lock:
            self._tenants[tenant] = _Tenant(max_messages, max_tokens, default_ttl)

    def delete_session(self, tenant: str, session: str) -> datetime:
        with self._lock:
            state = self._any(tenant, session)
            deleted = state.info.deleted_at or _now()
            state.info = replace(state.info, deleted_at=deleted)
            return deleted

    def restore_session(self, tenant: str, session: str) -> None:
        with self._lock:
            state = self._any(tenant, session)
            state.info = replace(state.info, deleted_at=None)

    def purge_session(self, tenant: str, session: str) -> int:
        with self._lock:
            state = self._any(tenant, session)
            del self._sessions[(tenant, session)]
            return len(state.messages)

    def close(self) -> None:
        """Nothing to release; present for the protocol."""


class AsyncInMemoryBackend:
    """The async face of :class:`InMemoryBackend` (no I/O, so no awaiting inside)."""

    def __init__(self, backend: InMemoryBackend | None = None) -> None:
        self.sync = backend or InMemoryBackend()

    async def append(self, *args: Any, **kwargs: Any) -> AppendResult:
        return self.sync.append(*args, **kwargs)

    async def append_many(self, *args: Any, **kwargs: Any) -> list[AppendResult]:
        return self.sync.append_many(*args, **kwargs)

    async def history(self, *args: Any, **kwargs: Any) -> list[StoredMessage]:
        return self.sync.history(*args, **kwargs)

    async def last_messages(self, *args: Any, **kwargs: Any) -> list[StoredMessage]:
        return self.sync.last_messages(*args, **kwargs)

    async def context(self, *args: Any, **kwargs: Any) -> ContextWindow:
        return self.sync.context(*args, **kwargs)

    async def recall(self, *args: Any, **kwargs: Any) -> list[RecalledMessage]:
        return self.sync.recall(*args, **kwargs)

    async def list_summaries(self, *args: Any, **kwargs: Any) -> list[Summary]:
        return self.sync.list_summaries(*args, **kwargs)

    async def add_summary(self, *args: Any, **kwargs: Any) -> int:
        return self.sync.add_summary(*args, **kwargs)

    async def configure_recall(self, *args: Any, **kwargs: Any) -> None:
        self.sync.configure_recall(*args, **kwargs)

    async def session_info(self, *args: Any, **kwargs: Any) -> SessionInfo:
        return self.sync.session_info(*args, **kwargs)

    async def list_sessions(self, *args: Any, **kwargs: Any) -> list[SessionInfo]:
        return self.sync.list_sessions(*args, **kwargs)

    async def extend_session(self, *args: Any, **kwargs: Any) -> datetime:
        return self.sync.extend_session(*args, **kwargs)

    async def configure_session(self, *args: Any, **kwargs: Any) -> None:
        self.sync.configure_session(*args, **kwargs)

    async def configure_tenant(self, *args: Any, **kwargs: Any) -> None:
        self.sync.configure_tenant(*args, **kwargs)

    async def delete_session(self, *args: Any, **kwargs: Any) -> datetime:
        return self.sync.delete_session(*args, **kwargs)

    async def restore_session(self, *args: Any, **kwargs: Any) -> None:
        self.sync.restore_session(*args, **kwargs)

    async def purge_session(self, *args: Any, **kwargs: Any) -> int:
        return self.sync.purge_session(*args, **kwargs)

    async def export_subject(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return self.sync.export_subject(*args, **kwargs)

    async def erase_subject(self, *args: Any, **kwargs: Any) -> list[tuple[str, int]]:
        return self.sync.erase_subject(*args, **kwargs)

    async def stats(self, *args: Any, **kwargs: Any) -> list[TenantStats]:
        return self.sync.stats(*args, **kwargs)

    async def close(self) -> None:
        self.sync.close()
