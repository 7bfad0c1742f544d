"""The values pymem hands back: frozen dataclasses named like the SQL columns."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal, NamedTuple

from .transcript.parts import Part, Refusal, Text, ToolResult, Turn

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant", "tool"})
Strategy = Literal["recent", "summary", "hybrid"]
STRATEGIES: frozenset[str] = frozenset({"recent", "summary", "hybrid"})


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an appended message landed. ``duplicate`` marks an idempotent retry."""

    seq: int
    created_at: datetime
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to append: the Python face of ``memory.message_input``.

    Every backend's ``append`` and ``append_many`` take these, so a message's
    fields are spelled out once, here.
    """

    role: str
    content: str
    tokens: int | None = None
    metadata: Mapping[str, Any] | None = None
    embedding: Sequence[float] | None = None
    idempotency_key: str | None = None
    parts: tuple[Part, ...] | None = None
    """The message as parts (tool calls, tool results, references...); ``content``
    is then their text, filled in here. One text part without a name is plain
    text, as the server stores it."""
    name: str | None = None

    def __post_init__(self) -> None:
        parts = self.parts
        if parts is None:
            return
        if not isinstance(parts, tuple):
            object.__setattr__(self, "parts", parts := tuple(parts))
        Turn(self.role, parts, self.name)  # the role's rules for parts, as the server's
        if self.name is None and len(parts) == 1 and isinstance(parts[0], Text):
            object.__setattr__(self, "content", parts[0].text)
            object.__setattr__(self, "parts", None)
        else:
            text = "".join(
                p.text if isinstance(p, Text | Refusal) else p.content
                for p in parts
                if isinstance(p, Text | Refusal | ToolResult)
            )
            object.__setattr__(self, "content", text)

    @classmethod
    def from_turn(cls, turn: Turn, **fields: Any) -> NewMessage:
        """The message of a transcript turn. ``fields``: tokens, metadata,
        embedding, idempotency_key."""
        return cls(turn.role, turn.content, parts=turn.parts, name=turn.name, **fields)

    def turn(self) -> Turn:
        """The message as a transcript turn."""
        parts = self.parts if self.parts is not None else (Text(self.content),)
        return Turn(self.role, parts, self.name)

    def parts_json(self) -> list[dict[str, Any]] | None:
        """The parts in their stored JSON shape; None for plain text."""
        if self.parts is None:
            return None if self.name is None else [Text(self.content).to_json()]
        return [p.to_json() for p in self.parts]


def stored_turn(role: str, content: str, parts: list[Any] | None, name: str | None) -> Turn:
    """A stored message's turn: its parts, or its text as one text part."""
    if parts is None:
        return Turn.text(role, content, name)
    return Turn.from_json({"role": role, "parts": parts, "name": name})


Batch = Sequence[NewMessage]
"""Messages appended together, in order, all or nothing (``memory.append_many``)."""


@dataclass(frozen=True, slots=True)
class ContextRequest:
    """What a context window is asked for: the arguments of ``memory.context``.

    Frozen and hashable; the Redis tier derives its cache entry from it
    (:meth:`cache_fields`). ``query_embedding`` is kept as a tuple.
    """

    budget: int
    strategy: str = "recent"
    query: str | None = None
    query_embedding: Sequence[float] | None = None
    message_overhead: int = 0
    summary_share: float | None = None
    recent_share: float | None = None
    shorten_results: int | None = None
    """Cut older tool results over this many tokens, with a marker (off: None)."""

    def __post_init__(self) -> None:
        embedding = self.query_embedding
        if embedding is not None and not isinstance(embedding, tuple):
            object.__setattr__(self, "query_embedding", tuple(embedding))

    def cache_fields(self) -> list[Any]:
        """The request as JSON-ready values, in a fixed order (a cache key's input)."""
        return [
            self.budget,
            self.query,
            list(self.query_embedding) if self.query_embedding is not None else None,
            self.strategy,
            self.message_overhead,
            self.summary_share,
            self.recent_share,
            self.shorten_results,
        ]


@dataclass(frozen=True, slots=True)
class RecallRequest:
    """What turns are recalled for: the arguments of ``memory.recall``."""

    query: str
    query_embedding: Sequence[float] | None = None
    before_seq: int | None = None
    max_rows: int = 50


@dataclass(frozen=True, slots=True)
class NewSummary:
    """A digest of turns ``seq_from..seq_to`` to store (``memory.add_summary``)."""

    level: int
    seq_from: int
    seq_to: int
    content: str
    tokens: int
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class SessionQuery:
    """Which sessions of a tenant to list (``memory.list_sessions``), one page."""

    owner: str | None = None
    include_deleted: bool = False
    after_session: str | None = None
    page_size: int = 100


FIRST_PAGE: Final = SessionQuery()
"""The default listing: the first page of a tenant's live sessions."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """A session's caps, metadata and digest cadence (``memory.configure_session``);
    None keeps the tenant's default (metadata: keeps the session's)."""

    max_messages: int | None = None
    max_tokens: int | None = None
    metadata: Mapping[str, Any] | None = None
    summary_every_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class TenantSettings:
    """A tenant's default caps, session TTL and retention (``memory.configure_tenant``)."""

    max_messages: int | None = None
    max_tokens: int | None = None
    default_ttl: timedelta | None = None
    retention: timedelta | None = None


@dataclass(frozen=True, slots=True)
class RecallSettings:
    """A tenant's background work (``memory.configure_recall``): the digest cadence
    in unsummarized tokens (None: no digests) and whether turns are embedded."""

    summary_every_tokens: int | None = 2000
    embed_messages: bool = False


class StoredMessage(NamedTuple):
    """A message as stored; fields equal the columns of ``memory.history``.

    A named tuple rather than a dataclass: histories and windows hold
    hundreds of rows, and tuples build several times faster.
    """

    seq: int
    role: str
    content: str
    tokens: int
    tokens_estimated: bool
    metadata: dict[str, Any]
    created_at: datetime
    parts: list[dict[str, Any]] | None = None
    """Parts in their JSON shape (see :mod:`pymem.transcript`); None for plain text."""
    name: str | None = None

    def as_chat(self) -> dict[str, str]:
        """The message's role and text (OpenAI chat format for plain text; use
        :meth:`turn` with :func:`pymem.transcript.from_turns` for tool calls)."""
        return {"role": self.role, "content": self.content}

    def turn(self) -> Turn:
        """The message as a transcript turn (typed parts)."""
        return stored_turn(self.role, self.content, self.parts, self.name)


@dataclass(frozen=True, slots=True)
class MessagePage:
    """One page of a session's history; ``next_after`` is the cursor for the next
    page (pass it as ``after_seq``), None when this page is the last."""

    messages: tuple[StoredMessage, ...]
    next_after: int | None

    def __iter__(self) -> Iterator[StoredMessage]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)


class ContextItem(NamedTuple):
    """One row of a context window; fields equal the columns of ``memory.context``."""

    part: str
    seq: int | None
    role: str
    content: str
    tokens: int
    score: float | None
    parts: list[dict[str, Any]] | None = None
    name: str | None = None

    def turn(self) -> Turn:
        """The row as a transcript turn (typed parts)."""
        return stored_turn(self.role, self.content, self.parts, self.name)


@dataclass(frozen=True, slots=True)
class ContextWindow:
    """The context handed to a model: items in conversation order, within ``budget``."""

    items: tuple[ContextItem, ...]
    budget: int
    strategy: str
    message_overhead: int = 0

    @property
    def tokens(self) -> int:
        """Tokens used, per-message overhead included."""
        return sum(item.tokens + self.message_overhead for item in self.items)

    def messages(self, format: str = "openai") -> list[dict[str, Any]]:
        """The window as messages of a model API: ``openai`` (Chat Completions,
        the default), ``openai-responses`` (input items) or ``anthropic``
        (digests and system turns come as ``{"role": "system"}`` entries, in
        order: pass their text as the API's ``system`` parameter). Tool calls
        and results keep their ids, arguments and order. A plain-text turn
        stored with the ``tool`` role (no call id) fits only ``openai``."""
        from .transcript import from_turns

        if format == "openai":
            out: list[dict[str, Any]] = []
            for item in self.items:
                if item.parts is None and item.name is None:
                    out.append({"role": item.role, "content": item.content})
                else:
                    out.extend(from_turns([item.turn()], format))
            return out
        return from_turns([item.turn() for item in self.items], format)

    def turns(self) -> list[Turn]:
        """The window's rows as transcript turns (digests as system turns)."""
        return [item.turn() for item in self.items]

    def __iter__(self) -> Iterator[ContextItem]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A session's counters and settings; fields equal ``memory.session_info``'s columns."""

    tenant_id: str
    session_id: str
    user_id: str | None
    last_seq: int
    first_seq: int
    message_count: int
    token_count: int
    summarized_upto: int
    max_messages: int | None
    max_tokens: int | None
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    deleted_at: datetime | None


@dataclass(frozen=True, slots=True)
class TenantStats:
    """Totals of one tenant; fields equal ``memory.stats``'s columns."""

    tenant_id: str
    sessions: int
    live_sessions: int
    messages: int
    tokens: int
    last_activity: datetime | None


class RecalledMessage(NamedTuple):
    """A turn found by relevance; fields equal the columns of ``memory.recall``."""

    seq: int
    role: str
    content: str
    tokens: int
    score: float
    text_rank: int | None
    vector_rank: int | None
    parts: list[dict[str, Any]] | None = None
    name: str | None = None

    def turn(self) -> Turn:
        """The row as a transcript turn (typed parts)."""
        return stored_turn(self.role, self.content, self.parts, self.name)


@dataclass(frozen=True, slots=True)
class Summary:
    """A digest of turns seq_from..seq_to; fields equal ``memory.list_summaries``'s columns."""

    summary_id: int
    level: int
    seq_from: int
    seq_to: int
    content: str
    tokens: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class MaintenanceRun:
    """What ``memory.maintain_if_due`` did; fields equal its columns."""

    ran: bool
    partitions_created: list[str]
    sessions_expired: int
    messages_removed: int


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """Work a worker holds under a lease; fields equal ``memory.claim_jobs``'s columns."""

    tenant_id: str
    session_id: str
    kind: str
    attempts: int
    trace_context: str | None = None
