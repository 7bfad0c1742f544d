"""A backend that keeps everything in process memory: tests, notebooks, demos.

It follows the same rules as the SQL functions, check for check, and passes
the same contract suite as the PostgreSQL backend. ``append`` takes the steps
of ``memory.append`` in the same order and under the same names (see
``sql/040_append_steps.sql``). :mod:`pymem.backends.memory_async` is the source and
:mod:`pymem.backends.memory` its generated sync twin. Nothing in it waits
on I/O: every method runs to completion under one lock.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from ..context import ranking
from ..errors import (
    IdempotencyKeyReused,
    InvalidArgument,
    MessageTooLarge,
    SessionDeleted,
    SessionExpired,
    SessionNotFound,
    SessionOwnedByAnotherUser,
    SummaryRangeInvalid,
)
from ..models import (
    FIRST_PAGE,
    AppendResult,
    Batch,
    ContextItem,
    ContextRequest,
    ContextWindow,
    NewMessage,
    NewSummary,
    RecalledMessage,
    RecallRequest,
    RecallSettings,
    SessionInfo,
    SessionQuery,
    SessionSettings,
    StoredMessage,
    Summary,
    TenantSettings,
    TenantStats,
)
from ..validation import (
    DEFAULT_EMBEDDING_DIM,
    CheckedAppend,
    check_append,
    check_batch,
    check_budget,
    check_content,
    check_embedding,
    check_ident,
    check_range,
    check_shares,
    check_strategy,
    metadata_json,
)


@dataclass
class TenantPolicy:
    """A tenant's defaults (the columns of ``memory.tenants`` these backends keep)."""

    max_messages: int | None = None
    max_tokens: int | None = None
    default_ttl: timedelta | None = None
    summary_every_tokens: int | None = 2000
    embed_messages: bool = False


@dataclass
class SessionState:
    """One session: its row, its messages, idempotency keys, digests and vectors."""

    info: SessionInfo
    messages: list[StoredMessage] = field(default_factory=list)
    keys: dict[str, tuple[int, str, datetime]] = field(default_factory=dict)
    summaries: list[Summary] = field(default_factory=list)
    vectors: dict[int, list[float]] = field(default_factory=dict)


def _item(part: str, m: StoredMessage, score: float | None) -> ContextItem:
    return ContextItem(part, m.seq, m.role, m.content, m.tokens, score, m.parts, m.name)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def now() -> datetime:
    """The clock of these backends (UTC, aware)."""
    return datetime.now(UTC)


def request_hash(role: str, content: str) -> str:
    """What an idempotency key remembers of its message (as memory._request_hash)."""
    return hashlib.md5(f"{role}:{content}".encode()).hexdigest()


def stored_form(message: NewMessage) -> str:
    """What an idempotency key compares of a message: its text, or its parts and name."""
    parts = message.parts_json()
    if parts is None:
        return message.content
    return json.dumps({"parts": parts, "name": message.name}, sort_keys=True)


def new_session_info(
    tenant: str, session: str, user_id: str | None, at: datetime, policy: TenantPolicy
) -> SessionInfo:
    """The row of a session created by its first append."""
    return SessionInfo(
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
        created_at=at,
        updated_at=at,
        expires_at=at + policy.default_ttl if policy.default_ttl else None,
        deleted_at=None,
    )


def check_live(info: SessionInfo, at: datetime) -> None:
    """Raise unless the session may be read or written now (memory._live_session)."""
    where = f"{info.tenant_id}/{info.session_id}"
    if info.deleted_at is not None:
        raise SessionDeleted(f"memory: session {where} is deleted")
    if info.expires_at is not None and info.expires_at <= at:
        raise SessionExpired(f"memory: session {where} expired at {info.expires_at.isoformat()}")


def trim_to_caps(
    messages: list[StoredMessage], max_messages: int | None, max_tokens: int | None
) -> list[StoredMessage]:
    """Drop the oldest messages until both caps hold (memory._trim_to_caps)."""
    if max_messages is not None and len(messages) > max_messages:
        messages = messages[len(messages) - max_messages :]
    if max_tokens is not None:
        total = keep = 0
        for kept in reversed(messages):
            if total + kept.tokens > max_tokens:
                break
            total += kept.tokens
            keep += 1
        messages = messages[len(messages) - keep :]
    return messages


class AsyncInMemoryBackend:
    """Thread-safe, process-local storage with the semantics of the SQL API."""

    def __init__(self, *, embedding_dim: int = DEFAULT_EMBEDDING_DIM) -> None:
        self._lock = threading.RLock()
        self.tenants: dict[str, TenantPolicy] = {}
        self.sessions: dict[tuple[str, str], SessionState] = {}
        self.embedding_dim = embedding_dim
        self.last_summary_id = 0

    # -- lookups ---------------------------------------------------------------

    def _any(self, tenant: str, session: str) -> SessionState:
        check_ident("tenant", tenant)
        check_ident("session", session)
        found = self.sessions.get((tenant, session))
        if found is None:
            raise SessionNotFound(f"memory: session {tenant}/{session} not found")
        return found

    def _live(self, tenant: str, session: str) -> SessionState:
        found = self._any(tenant, session)
        check_live(found.info, now())
        return found

    # -- append, in the steps of memory.append -----------------------------------

    @staticmethod
    def _find_retry(
        state: SessionState | None, key: str | None, request: str
    ) -> AppendResult | None:
        """A retry of a stored append: the original's result (memory._find_retry)."""
        if state is None or key is None:
            return None
        known = state.keys.get(key)
        if known is None or known[1] != request:
            return None
        return AppendResult(seq=known[0], created_at=known[2], duplicate=True)

    @staticmethod
    def _claim_idempotency(state: SessionState, key: str | None) -> None:
        """Under the session lock: a key already used for another message raises."""
        if key is not None and key in state.keys:
            raise IdempotencyKeyReused(
                f"memory: idempotency key {key!r} was already used for another message",
                hint="use a fresh key for each distinct message",
            )

    def _lock_session(
        self, tenant: str, session: str, user_id: str | None, at: datetime
    ) -> tuple[SessionState, TenantPolicy]:
        """The live session (created when missing) and its tenant's policy."""
        policy = self.tenants.setdefault(tenant, TenantPolicy())
        state = self.sessions.get((tenant, session))
        if state is None:
            state = SessionState(info=new_session_info(tenant, session, user_id, at, policy))
        check_live(state.info, at)
        owner = state.info.user_id
        if user_id is not None and (owner or user_id) != user_id:
            raise SessionOwnedByAnotherUser(
                f"memory: session {tenant}/{session} belongs to another user",
                hint="use a new session id for this user",
            )
        return state, policy

    def _append_one(
        self, tenant: str, session: str, message: NewMessage, user_id: str | None
    ) -> AppendResult:
        """One append, in the steps of memory.append (sql/040_append_steps.sql)."""
        checked: CheckedAppend = check_append(
            tenant, session, message, user_id=user_id, embedding_dim=self.embedding_dim
        )
        # _apply_pii_policy and _choose_data_key: personal data policies and
        # sealing keys are kept by PostgreSQL only; here a PiiFilter in the
        # client applies a policy given in code, and text is stored as given.
        request = request_hash(message.role, stored_form(message))
        retry = self._find_retry(
            self.sessions.get((tenant, session)), message.idempotency_key, request
        )
        if retry is not None:
            return retry
        at = now()
        state, policy = self._lock_session(tenant, session, user_id, at)
        # _key_after_lock: no keys here.
        self._claim_idempotency(state, message.idempotency_key)
        result = self._insert_message(state, message, checked, user_id, request, at)
        self._trim_to_caps(
            state,
            state.info.max_messages or policy.max_messages,
            state.info.max_tokens or policy.max_tokens,
            checked.tokens,
        )
        self.sessions[(tenant, session)] = state
        # _queue_background_work: no job queue here; digests and embeddings
        # are PostgreSQL's background work.
        return result

    @staticmethod
    def _insert_message(
        state: SessionState,
        message: NewMessage,
        checked: CheckedAppend,
        user_id: str | None,
        request: str,
        at: datetime,
    ) -> AppendResult:
        """Store the message under the next seq and count it."""
        info = state.info
        seq = info.last_seq + 1
        stored = StoredMessage(
            seq=seq,
            role=message.role,
            content=message.content,
            tokens=checked.tokens,
            tokens_estimated=checked.estimated,
            metadata=checked.metadata,
            created_at=at,
            parts=message.parts_json(),
            name=message.name,
        )
        state.messages = [*state.messages, stored]
        state.info = replace(
            info,
            user_id=info.user_id or user_id,
            last_seq=seq,
            message_count=info.message_count + 1,
            token_count=info.token_count + checked.tokens,
            updated_at=at,
        )
        if message.idempotency_key is not None:
            state.keys[message.idempotency_key] = (seq, request, at)
        if checked.embedding is not None:
            state.vectors[seq] = checked.embedding
        return AppendResult(seq=seq, created_at=at, duplicate=False)

    @staticmethod
    def _trim_to_caps(
        state: SessionState, max_messages: int | None, max_tokens: int | None, tokens: int
    ) -> None:
        """Over a cap: drop the oldest messages; one message over the token cap raises."""
        if max_tokens is not None and tokens > max_tokens:
            raise MessageTooLarge(
                f"memory: message has {tokens} tokens, the session cap is {max_tokens}",
                hint="raise max_tokens or split the message",
            )
        kept = trim_to_caps(state.messages, max_messages, max_tokens)
        if len(kept) == len(state.messages):
            return
        seqs = {m.seq for m in kept}
        state.messages = kept
        state.vectors = {k: v for k, v in state.vectors.items() if k in seqs}
        state.info = replace(
            state.info,
            first_seq=kept[0].seq,
            message_count=len(kept),
            token_count=sum(m.tokens for m in kept),
        )

    async def append(
        self, tenant: str, session: str, message: NewMessage, *, user_id: str | None = None
    ) -> AppendResult:
        return (await self.append_many(tenant, session, [message], user_id=user_id))[0]

    async def append_many(
        self, tenant: str, session: str, messages: Batch, *, user_id: str | None = None
    ) -> list[AppendResult]:
        check_batch(messages)
        with self._lock:
            # All or nothing: restore the copies when any message fails.
            saved = copy.deepcopy(self.sessions.get((tenant, session)))
            saved_policy = copy.deepcopy(self.tenants.get(tenant))
            try:
                return [self._append_one(tenant, session, m, user_id) for m in messages]
            except BaseException:
                self._restore(tenant, session, saved, saved_policy)
                raise

    def _restore(
        self,
        tenant: str,
        session: str,
        state: SessionState | None,
        policy: TenantPolicy | None,
    ) -> None:
        if state is None:
            self.sessions.pop((tenant, session), None)
        else:
            self.sessions[(tenant, session)] = state
        if policy is None:
            self.tenants.pop(tenant, None)
        else:
            self.tenants[tenant] = policy

    # -- reads -----------------------------------------------------------------

    async def history(
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

    async def last_messages(
        self, tenant: str, session: str, count: int = 50
    ) -> list[StoredMessage]:
        check_range("count", count, 1, 10000, "use history to page through more")
        with self._lock:
            state = self._live(tenant, session)
            return state.messages[-count:]

    async def context(self, tenant: str, session: str, request: ContextRequest) -> ContextWindow:
        check_budget(request.budget)
        check_range(
            "message_overhead",
            request.message_overhead,
            0,
            1000,
            "chat formats add about 3 to 4 tokens per message",
        )
        check_strategy(request.strategy)
        shares = check_shares(request.strategy, request.summary_share, request.recent_share)
        if request.shorten_results is not None:
            check_range(
                "shorten_results",
                request.shorten_results,
                1,
                2**31 - 1,
                "e.g. 200 keeps the first 200 tokens of old tool results",
            )
        if request.query_embedding is not None:
            check_embedding(request.query_embedding, self.embedding_dim)
        with self._lock:
            state = self._live(tenant, session)
            state = copy.copy(state)
        items = self._assemble(state, request, *shares)
        return ContextWindow(
            items=tuple(items),
            budget=request.budget,
            strategy=request.strategy,
            message_overhead=request.message_overhead,
        )

    def _assemble(
        self,
        state: SessionState,
        request: ContextRequest,
        summary_share: float,
        recent_share: float,
    ) -> list[ContextItem]:
        """The window's rows, in the order and shares of memory.context."""
        budget, overhead, strategy = request.budget, request.message_overhead, request.strategy
        messages, info = state.messages, state.info
        if strategy == "recent":
            recent = ranking.tail(messages, budget, overhead, shorten=request.shorten_results)
            return [_item("recent", m, None) for m in recent]
        v_summary = math.floor(budget * summary_share)
        v_recent = math.floor(budget * recent_share)
        v_recall = budget - v_summary - v_recent if strategy == "hybrid" else 0
        if strategy == "summary":
            v_recent = budget - v_summary
        reserved = ranking.tail(messages, v_recent, overhead, shorten=request.shorten_results)
        first = reserved[0].seq if reserved else info.last_seq + 1
        cover = ranking.fit_cover(
            ranking.summary_cover(state.summaries, min(info.summarized_upto, first - 1), v_summary),
            v_summary,
            overhead,
        )
        v_recall += v_summary - sum(d.tokens + overhead for d in cover)
        recalled: list[tuple[StoredMessage, float]] = []
        if (
            strategy == "hybrid"
            and v_recall > 0
            and first > 1
            and (request.query or request.query_embedding is not None)
        ):
            avg = info.token_count / max(info.message_count, 1)
            max_rows = min(max(math.ceil(2 * v_recall / max(avg + overhead, 1)), 20), 500)
            found = self._recall_rows(
                state, request.query or "", request.query_embedding, first, max_rows
            )
            recalled = ranking.fit_recalled(found, v_recall, overhead, messages)
            v_recent += v_recall - sum(m.tokens + overhead for m, _ in recalled)
        else:
            v_recent += v_recall
        taken = frozenset(m.seq for m, _ in recalled)
        recent = ranking.tail(messages, v_recent, overhead, taken, request.shorten_results)
        items = [
            ContextItem("summary", d.seq_to, "system", d.content, d.tokens, float(d.level))
            for d in cover
        ]
        turns = [_item("recall", m, score) for m, score in recalled]
        turns += [_item("recent", m, None) for m in recent]
        return items + sorted(turns, key=lambda i: i.seq or 0)

    @staticmethod
    def _recall_rows(
        state: SessionState,
        query: str,
        query_embedding: Sequence[float] | None,
        before_seq: int | None,
        max_rows: int,
    ) -> list[tuple[StoredMessage, float, int | None, int | None]]:
        """BM25 and cosine rankings fused (memory.recall), best first."""
        pool = max(max_rows * 2, 100)
        text = ranking.bm25_smoothed(state.messages, query, before_seq)[:pool]
        vector = (
            ranking.cosine_ranking(state.vectors, query_embedding, before_seq)[:pool]
            if query_embedding is not None
            else []
        )
        by_seq = {m.seq: m for m in state.messages}
        return [
            (by_seq[seq], score, tr, vr)
            for seq, score, tr, vr in ranking.fuse(text, vector)[:max_rows]
        ]

    async def recall(
        self, tenant: str, session: str, request: RecallRequest
    ) -> list[RecalledMessage]:
        check_range(
            "max_rows",
            request.max_rows,
            1,
            10000,
            "ask for the few dozen turns a context can hold",
        )
        if request.query_embedding is not None:
            check_embedding(request.query_embedding, self.embedding_dim)
        with self._lock:
            state = copy.copy(self._live(tenant, session))
        found = self._recall_rows(
            state, request.query, request.query_embedding, request.before_seq, request.max_rows
        )
        return [
            RecalledMessage(m.seq, m.role, m.content, m.tokens, score, tr, vr, m.parts, m.name)
            for m, score, tr, vr in found
        ]

    async def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        with self._lock:
            state = self._live(tenant, session)
            return sorted(state.summaries, key=lambda d: (d.seq_from, -d.level))

    async def add_summary(self, tenant: str, session: str, summary: NewSummary) -> int:
        level, seq_from, seq_to = summary.level, summary.seq_from, summary.seq_to
        content, tokens = summary.content, summary.tokens
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
        metadata_json(summary.metadata)
        check_content(content)
        with self._lock:
            state = self._live(tenant, session)
            self._check_summary_range(state, level, seq_from, seq_to)
            if level == 1:
                state.info = replace(state.info, summarized_upto=seq_to)
            self.last_summary_id += 1
            state.summaries.append(
                Summary(self.last_summary_id, level, seq_from, seq_to, content, tokens, now())
            )
            return self.last_summary_id

    @staticmethod
    def _check_summary_range(state: SessionState, level: int, seq_from: int, seq_to: int) -> None:
        """The rules of memory.add_summary: level 1 continues the summarized prefix;
        a higher level spans whole digests of the level below, not yet rolled up."""
        info = state.info
        if level == 1:
            start = max(info.summarized_upto + 1, info.first_seq)
            if seq_from != start or seq_to > info.last_seq:
                raise SummaryRangeInvalid(
                    f"memory: a level-1 summary of {info.tenant_id}/{info.session_id} must "
                    f"cover {start}..(at most {info.last_seq}), got {seq_from}..{seq_to}",
                    hint="read session_info().summarized_upto and summarize from the next seq",
                )
            return
        below = [d for d in state.summaries if d.level == level - 1]
        if (
            not any(d.seq_from == seq_from for d in below)
            or not any(d.seq_to == seq_to for d in below)
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

    async def configure_recall(self, tenant: str, settings: RecallSettings) -> None:
        summary_every_tokens = settings.summary_every_tokens
        check_ident("tenant", tenant)
        if summary_every_tokens is not None and summary_every_tokens < 50:
            raise InvalidArgument(
                f"memory: summary_every_tokens must be >= 50 or null, got {summary_every_tokens}",
                hint="None turns summaries off",
            )
        with self._lock:
            policy = self.tenants.setdefault(tenant, TenantPolicy())
            policy.summary_every_tokens = summary_every_tokens
            policy.embed_messages = settings.embed_messages

    async def session_info(self, tenant: str, session: str) -> SessionInfo:
        with self._lock:
            return self._any(tenant, session).info

    async def list_sessions(
        self, tenant: str, query: SessionQuery = FIRST_PAGE
    ) -> list[SessionInfo]:
        owner, after_session, page_size = query.owner, query.after_session, query.page_size
        check_ident("tenant", tenant)
        if owner is not None:
            check_ident("owner", owner)
        check_range("page_size", page_size, 1, 10000, "page with after_session")
        with self._lock:
            rows = [
                s.info
                for (t, _), s in self.sessions.items()
                if t == tenant
                and (owner is None or s.info.user_id == owner)
                and (query.include_deleted or s.info.deleted_at is None)
                and (after_session is None or s.info.session_id.encode() > after_session.encode())
            ]
        rows.sort(key=lambda info: info.session_id.encode())
        return rows[:page_size]

    async def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        check_ident("tenant", tenant)
        check_ident("user_id", user_id)
        with self._lock:
            mine = sorted(
                (
                    s
                    for (t, _), s in self.sessions.items()
                    if t == tenant and s.info.user_id == user_id
                ),
                key=lambda s: s.info.session_id,
            )
            sessions = [_exported(s) for s in mine]
        return {
            "tenant": tenant,
            "user_id": user_id,
            "exported_at": _iso(now()),
            "sessions": sessions,
        }

    async def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        check_ident("tenant", tenant)
        check_ident("user_id", user_id)
        with self._lock:
            mine = sorted(
                sid
                for (t, sid), s in self.sessions.items()
                if t == tenant and s.info.user_id == user_id
            )
            return [(sid, len(self.sessions.pop((tenant, sid)).messages)) for sid in mine]

    async def stats(self, tenant: str | None = None) -> list[TenantStats]:
        with self._lock:
            totals: dict[str, list[SessionInfo]] = {}
            for (t, _), s in self.sessions.items():
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

    async def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        if not isinstance(ttl, timedelta) or ttl <= timedelta(0):
            raise InvalidArgument(
                f"memory: ttl must be positive, got {ttl!r}",
                hint="pass a timedelta such as timedelta(days=30)",
            )
        with self._lock:
            state = self._live(tenant, session)
            at = now()
            expires = max(state.info.expires_at or at, at) + ttl
            state.info = replace(state.info, expires_at=expires)
            return expires

    async def configure_session(self, tenant: str, session: str, settings: SessionSettings) -> None:
        summary_every_tokens = settings.summary_every_tokens
        max_messages, max_tokens, metadata = (
            settings.max_messages,
            settings.max_tokens,
            settings.metadata,
        )
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
                updated_at=now(),
            )

    async def configure_tenant(self, tenant: str, settings: TenantSettings) -> None:
        max_messages, max_tokens = settings.max_messages, settings.max_tokens
        default_ttl = settings.default_ttl
        check_ident("tenant", tenant)
        if settings.retention is not None:
            raise InvalidArgument(
                "memory: retention needs PostgreSQL (its maintenance removes old turns)",
                hint="use Memory.connect(dsn), or session TTLs here",
            )
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
            self.tenants[tenant] = TenantPolicy(max_messages, max_tokens, default_ttl)

    async def delete_session(self, tenant: str, session: str) -> datetime:
        with self._lock:
            state = self._any(tenant, session)
            deleted = state.info.deleted_at or now()
            state.info = replace(state.info, deleted_at=deleted)
            return deleted

    async def restore_session(self, tenant: str, session: str) -> None:
        with self._lock:
            state = self._any(tenant, session)
            state.info = replace(state.info, deleted_at=None)

    async def purge_session(self, tenant: str, session: str) -> int:
        with self._lock:
            state = self._any(tenant, session)
            del self.sessions[(tenant, session)]
            return len(state.messages)

    async def pop_message(self, tenant: str, session: str) -> StoredMessage | None:
        """Remove the newest message and give its seq back (memory.pop_message)."""
        with self._lock:
            state = self._live(tenant, session)
            if not state.messages:
                return None
            gone = state.messages[-1]
            state.messages = state.messages[:-1]
            state.keys = {k: v for k, v in state.keys.items() if v[0] != gone.seq}
            state.summaries = [d for d in state.summaries if d.seq_to < gone.seq]
            state.vectors.pop(gone.seq, None)
            info = state.info
            state.info = replace(
                info,
                last_seq=info.last_seq - 1,
                message_count=info.message_count - 1,
                token_count=info.token_count - gone.tokens,
                summarized_upto=min(info.summarized_upto, gone.seq - 1),
                updated_at=now(),
            )
            return gone

    async def close(self) -> None:
        """Nothing to release; present for the protocol."""


def _exported(s: SessionState) -> dict[str, Any]:
    """One session as memory.export_subject writes it."""
    return {
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
                **_turn_fields(m),
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


def _turn_fields(m: StoredMessage) -> dict[str, Any]:
    """A structured message's parts and name, as memory.export_subject adds them."""
    if m.parts is None:
        return {}
    return {"parts": m.parts} | ({"name": m.name} if m.name is not None else {})
