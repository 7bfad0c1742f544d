"""Input rules shared by every backend, written once in Python.

The PostgreSQL functions enforce the same rules in SQL; the in-memory backend
uses these, and the contract suite checks that both agree.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import (
    EmbeddingDimensionMismatch,
    InvalidArgument,
    InvalidBudget,
    InvalidIdentifier,
    InvalidMetadata,
    InvalidPart,
    InvalidRole,
    MessageTooLarge,
    UnknownStrategy,
)
from .models import ROLES, STRATEGIES, NewMessage

MAX_IDENT_CHARS: Final = 255
MAX_CONTENT_BYTES: Final = 4 * 1024 * 1024
MAX_METADATA_BYTES: Final = 256 * 1024
DEFAULT_EMBEDDING_DIM: Final = 1536
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACE = "[ \t\n\r\f\v]"
_BLANK = re.compile(f"^{_SPACE}*$")
_SPACES = re.compile(f"{_SPACE}+")
_EDGES = re.compile(f"^{_SPACE}+|{_SPACE}+$")


def check_text(name: str, value: str) -> str:
    """Reject text PostgreSQL cannot store: NUL characters and lone surrogates."""
    if "\x00" in value:
        raise InvalidArgument(
            f"memory: {name} contains a NUL (\\x00) character",
            hint="PostgreSQL text cannot hold NUL; strip or escape it",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(
            f"memory: {name} is not valid Unicode (lone surrogate)",
            hint="decode input bytes with errors='replace' before storing",
        ) from None
    return value


def check_ident(kind: str, value: object) -> str:
    """The rule of ``memory._check_ident``: printable, 1 to 255 characters."""
    if not isinstance(value, str) or value == "":
        raise InvalidIdentifier(
            f"memory: {kind} must be a non-empty string",
            hint=f"pass a non-empty {kind}, e.g. 'acme' or 'support-42'",
        )
    if len(value) > MAX_IDENT_CHARS:
        raise InvalidIdentifier(
            f"memory: {kind} is {len(value)} characters long, the limit is {MAX_IDENT_CHARS}",
            hint=f"use a shorter {kind}, e.g. a UUID or a hash",
        )
    if _CONTROL.search(value):
        raise InvalidIdentifier(
            f"memory: {kind} contains a control character",
            hint="identifiers must be printable text",
        )
    return check_text(kind, value)


def check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidRole(f"memory: unknown role {role!r}")
    return role


def check_content(content: object) -> str:
    if not isinstance(content, str):
        raise InvalidArgument(
            "memory: content must be a string",
            hint="pass an empty string for a message without text",
        )
    check_text("content", content)
    size = len(content.encode("utf-8"))
    if size > MAX_CONTENT_BYTES:
        raise MessageTooLarge(
            f"memory: content is {size} bytes, the limit is {MAX_CONTENT_BYTES}",
            hint="split the text or store it elsewhere and keep a reference",
        )
    return content


def check_tokens(tokens: int | None) -> int | None:
    if tokens is not None and (not isinstance(tokens, int) or tokens < 0):
        raise InvalidArgument(
            f"memory: tokens must be >= 0, got {tokens!r}",
            hint="pass the count from your tokenizer, or None to estimate",
        )
    return tokens


def metadata_json(metadata: Mapping[str, Any] | None) -> str:
    """Serialize metadata as PostgreSQL will store it, or raise InvalidMetadata."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, Mapping):
        raise InvalidMetadata(
            f"memory: metadata must be a JSON object, got {type(metadata).__name__}",
            hint='pass a dict such as {"source": "web"}',
        )
    try:
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidMetadata(
            f"memory: metadata is not JSON-serializable: {exc}",
            hint="use str, int, float, bool, None, lists and dicts with str keys",
        ) from None
    if "\\u0000" in text:
        raise InvalidMetadata(
            "memory: metadata contains a NUL (\\u0000) character",
            hint="PostgreSQL jsonb cannot hold \\u0000; strip it",
        )
    check_text("metadata", text)
    if len(text.encode("utf-8")) > MAX_METADATA_BYTES:
        raise InvalidMetadata(
            f"memory: metadata is larger than {MAX_METADATA_BYTES} bytes",
            hint="store large payloads elsewhere and keep a reference",
        )
    return text


def _not_finite_embedding() -> InvalidArgument:
    return InvalidArgument(
        "memory: embedding must be a non-empty list of finite numbers",
        hint="pass the vector your embedding model returned",
    )


def _finite_vector(embedding: Sequence[float]) -> list[float]:
    values = [float(x) for x in embedding]
    if not values or any(not math.isfinite(x) for x in values):
        raise _not_finite_embedding()
    return values


def check_embedding(embedding: Sequence[float] | None, dim: int) -> list[float] | None:
    if embedding is None:
        return None
    values = _finite_vector(embedding)
    if len(values) != dim:
        raise EmbeddingDimensionMismatch(
            f"memory: embedding has {len(values)} dimensions, this database stores {dim}",
            hint="use the embedding model the database was configured for (memory.settings)",
        )
    return values


def float4_bytes(embedding: Sequence[float]) -> bytes:
    """An embedding's values as big-endian float4s, as pgvector stores them.
    An empty vector, NaN, infinities and values beyond float4's range raise."""
    n = len(embedding)
    try:
        # A sum is finite only when every term is: one pass finds NaN and
        # infinities; values beyond float4's range fail to pack.
        if n == 0 or not math.isfinite(math.fsum(embedding)):
            raise ValueError
        return struct.pack(f">{n}f", *embedding)
    except (TypeError, ValueError, OverflowError, struct.error):
        raise _not_finite_embedding() from None


def vector_literal(embedding: Sequence[float] | None) -> str | None:
    """pgvector's text form of an embedding, for batches sent as ``text[]``
    (one embedding goes in binary: :func:`pymem.backends.vectors.vector_param`).

    Each value is rounded to float4 first, as pgvector stores it, and then
    written with nine significant digits, which give that float4 back
    exactly; one format call for the whole vector is about three times
    faster than a ``repr`` per float."""
    if embedding is None:
        return None
    values = [float(x) for x in embedding]
    stored = struct.unpack(f">{len(values)}f", float4_bytes(values))
    return "[" + ",".join(["%.9g"] * len(values)) % stored + "]"


def check_budget(budget: object) -> int:
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 0:
        raise InvalidBudget(
            f"memory: budget must be >= 0 tokens, got {budget!r}",
            hint="pass the tokens you can spend on history, e.g. 2000",
        )
    return budget


def check_strategy(strategy: object) -> str:
    if not isinstance(strategy, str) or strategy not in STRATEGIES:
        raise UnknownStrategy(
            f"memory: unknown context strategy {strategy!r}",
            hint="strategy must be one of: " + ", ".join(sorted(STRATEGIES)),
        )
    return strategy


def check_range(name: str, value: object, low: int, high: int, hint: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgument(
            f"memory: {name} must be between {low} and {high}, got {value!r}", hint=hint
        )
    return value


def estimate_tokens(content: str) -> int:
    """The same estimate as ``memory.estimate_tokens`` for rows given no count."""
    if _BLANK.match(content):
        return 0
    words = len(_SPACES.split(_EDGES.sub("", content)))
    return max(math.ceil(len(content) / 4), math.ceil(round(words * 1.3, 10)))


def parts_json(parts: list[dict[str, Any]]) -> str:
    """Serialize a message's parts as PostgreSQL will store them, or raise InvalidPart."""
    try:
        text = json.dumps(parts, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidPart(
            f"memory: a part is not JSON-serializable: {exc}",
            hint="tool call arguments hold str, int, float, bool, None, lists and dicts",
        ) from None
    if "\\u0000" in text:
        raise InvalidPart(
            "memory: a part contains a NUL (\\u0000) character",
            hint="PostgreSQL cannot store \\u0000; strip it",
        )
    return check_text("parts", text)


def _leaves(value: Any) -> list[str]:
    """The string and number values in a JSON value, at any depth."""
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    items = value.values() if isinstance(value, Mapping) else value
    return [leaf for item in items for leaf in _leaves(item)]


def parts_text(parts: Sequence[Mapping[str, Any]], searchable: bool = False) -> str:
    """The text of parts in their JSON shape (as ``memory._parts_text``)."""
    found = []
    for part in parts:
        kind = part.get("type")
        if kind in ("text", "refusal"):
            found.append(part["text"])
        elif kind == "tool_result":
            found.append(part["content"])
        elif kind == "tool_call" and searchable:
            found.append(" ".join([part["name"], *_leaves(part.get("arguments", {}))]))
    return (" " if searchable else "").join(found)


_FRAMING: Final = {"tool_call": 7, "tool_result": 4, "image": 85}


def estimate_parts_tokens(parts: Sequence[Mapping[str, Any]], name: str | None) -> int:
    """The estimate ``memory._parts_estimate`` stores for parts given no count."""
    framing = sum(_FRAMING.get(str(p.get("type")), 0) for p in parts)
    named = 0 if name is None else 1 + estimate_tokens(name)
    return estimate_tokens(parts_text(parts, searchable=True)) + framing + named


@dataclass(frozen=True, slots=True)
class CheckedAppend:
    """An append's arguments after the rules of ``memory.append`` accepted them."""

    metadata: dict[str, Any]
    embedding: list[float] | None
    tokens: int
    estimated: bool


def check_append(
    tenant: str,
    session: str,
    message: NewMessage,
    *,
    user_id: str | None,
    embedding_dim: int,
) -> CheckedAppend:
    """Every argument check ``memory.append`` makes before writing, in the same order."""
    check_ident("tenant", tenant)
    check_ident("session", session)
    if user_id is not None:
        check_ident("user_id", user_id)
    if message.idempotency_key is not None:
        check_ident("idempotency_key", message.idempotency_key)
    check_role(message.role)
    check_content(message.content)
    parts = message.parts_json()
    if parts is not None:
        message.turn()  # the role's and the name's rules (memory._check_parts)
        parts_json(parts)
    check_tokens(message.tokens)
    stored: dict[str, Any] = json.loads(metadata_json(message.metadata))
    vector = check_embedding(message.embedding, embedding_dim)
    if message.tokens is not None:
        tokens = message.tokens
    elif parts is not None:
        tokens = estimate_parts_tokens(parts, message.name)
    else:
        tokens = estimate_tokens(message.content)
    return CheckedAppend(
        metadata=stored, embedding=vector, tokens=tokens, estimated=message.tokens is None
    )


MAX_BATCH: Final = 10000


def check_batch(messages: Sequence[NewMessage]) -> None:
    """The batch rules of ``memory.append_many``: 1 to 10,000 messages."""
    if not messages:
        raise InvalidArgument(
            "memory: messages must be a non-empty array", hint="pass at least one message"
        )
    if len(messages) > MAX_BATCH:
        raise InvalidArgument(
            f"memory: a batch holds at most {MAX_BATCH} messages, got {len(messages)}",
            hint="split the batch",
        )


def check_shares(
    strategy: str, summary_share: float | None, recent_share: float | None
) -> tuple[float, float]:
    """The budget shares of ``memory.context``, defaults filled in per strategy."""
    ss = summary_share if summary_share is not None else (0.3 if strategy == "summary" else 0.1)
    rs = recent_share if recent_share is not None else (0.7 if strategy == "summary" else 0.1)
    if ss < 0 or rs < 0 or ss + rs > 1:
        raise InvalidArgument(
            f"memory: shares must be >= 0 and add up to at most 1, got summary {ss} "
            f"and recent {rs}",
            hint="e.g. summary_share=0.2, recent_share=0.25",
        )
    return ss, rs
