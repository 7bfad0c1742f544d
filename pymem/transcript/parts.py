"""What an agent's turn holds beyond text: the parts of a message.

A :class:`Turn` is one message of a transcript: a role, an optional ``name``
and its parts, in order:

- :class:`Text`: text;
- :class:`ToolCall`: a call the assistant asks for (``id``, function ``name``,
  ``arguments`` as a JSON object); an assistant turn may hold several;
- :class:`ToolResult`: the result of one call, tied to it by ``call_id``
  (with ``is_error`` when the tool failed); they make up ``tool`` turns;
- :class:`Image` and :class:`File`: references (a URL or a provider's file
  id), never the bytes;
- :class:`Refusal`: the model's refusal text.

Each part has one JSON shape (``to_json`` / :func:`part_from_json`), the one
SQL clients see, e.g. ``{"type": "tool_call", "id": "call_1", "name":
"get_weather", "arguments": {"city": "Oslo"}}``. Bad parts raise
``InvalidPart`` (a kind of ``InvalidArgument``) with a hint, before
anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ..errors import InvalidPart, InvalidRole, MessageTooLarge

MAX_TEXT: Final = 4 * 1024 * 1024  # characters of one text-bearing part
MAX_REFERENCE: Final = 2048  # characters of a URL or file id
MAX_ID: Final = 255
ROLES: Final = frozenset({"system", "developer", "user", "assistant", "tool"})


def _text(value: Any, what: str, limit: int = MAX_TEXT) -> str:
    if not isinstance(value, str):
        raise InvalidPart(
            f"pymem: {what} must be a string, got {type(value).__name__}",
            hint="convert it to text, e.g. json.dumps() for structured tool output",
        )
    if len(value) > limit:
        raise MessageTooLarge(
            f"pymem: {what} has {len(value)} characters, the limit is {limit}",
            hint="store large payloads elsewhere and keep a reference",
        )
    return value


def _ident(value: Any, what: str) -> str:
    found = _text(value, what, MAX_ID)
    if not found or any(ord(c) < 32 for c in found):
        raise InvalidPart(
            f"pymem: {what} must be 1 to {MAX_ID} printable characters",
            hint="use the id the model or the tool gave",
        )
    return found


@dataclass(frozen=True, slots=True)
class Text:
    text: str

    def __post_init__(self) -> None:
        _text(self.text, "a text part")

    def to_json(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _ident(self.id, "a tool call's id")
        _ident(self.name, "a tool call's name")
        if not isinstance(self.arguments, Mapping):
            raise InvalidPart(
                f"pymem: tool call {self.id!r}: arguments must be a JSON object, "
                f"got {type(self.arguments).__name__}",
                hint="pass a dict; a JSON string from the model can be given to parse_arguments()",
            )
        _text(json.dumps(self.arguments, default=str), f"tool call {self.id!r}'s arguments")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "tool_call",
            "id": self.id,
            "name": self.name,
            "arguments": dict(self.arguments),
        }


@dataclass(frozen=True, slots=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool = False

    def __post_init__(self) -> None:
        _ident(self.call_id, "a tool result's call_id")
        _text(self.content, f"the result of {self.call_id!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "tool_result",
            "call_id": self.call_id,
            "content": self.content,
            "is_error": self.is_error,
        }


@dataclass(frozen=True, slots=True)
class Image:
    url: str | None = None
    file_id: str | None = None
    detail: str | None = None

    def __post_init__(self) -> None:
        _reference(self.url, self.file_id, "an image")

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"type": "image"}
        for key in ("url", "file_id", "detail"):
            if getattr(self, key) is not None:
                found[key] = getattr(self, key)
        return found


@dataclass(frozen=True, slots=True)
class File:
    url: str | None = None
    file_id: str | None = None
    filename: str | None = None

    def __post_init__(self) -> None:
        _reference(self.url, self.file_id, "a file")

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"type": "file"}
        for key in ("url", "file_id", "filename"):
            if getattr(self, key) is not None:
                found[key] = getattr(self, key)
        return found


@dataclass(frozen=True, slots=True)
class Refusal:
    text: str

    def __post_init__(self) -> None:
        _text(self.text, "a refusal")

    def to_json(self) -> dict[str, Any]:
        return {"type": "refusal", "text": self.text}


Part = Text | ToolCall | ToolResult | Image | File | Refusal


def _reference(url: str | None, file_id: str | None, what: str) -> None:
    if (url is None) == (file_id is None):
        raise InvalidPart(
            f"pymem: {what} needs a url or a file_id (one of them)",
            hint="upload the bytes to the provider or your storage and keep the reference",
        )
    value = url if url is not None else file_id
    _text(value, f"{what}'s reference", MAX_REFERENCE)
    if url is not None and url.startswith("data:"):
        raise InvalidPart(
            f"pymem: {what} given as a data: URL; pymem keeps references, not bytes",
            hint="upload it (to the provider's files API or your storage) and pass its id or URL",
        )


def parse_arguments(raw: str | Mapping[str, Any] | None, call_id: str = "?") -> dict[str, Any]:
    """A tool call's arguments as a dict, from the JSON text a model returns."""
    if raw is None or raw == "":
        return {}
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        found = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidPart(
            f"pymem: tool call {call_id!r}: arguments are not valid JSON ({exc.msg})",
            hint="store what the model returned only after checking it parses",
        ) from exc
    if not isinstance(found, dict):
        raise InvalidPart(
            f"pymem: tool call {call_id!r}: arguments must be a JSON object",
            hint='wrap the value in an object, e.g. {"value": ...}',
        )
    return found


_KINDS: Final[Mapping[str, type]] = {
    "text": Text,
    "tool_call": ToolCall,
    "tool_result": ToolResult,
    "image": Image,
    "file": File,
    "refusal": Refusal,
}


def part_from_json(found: Mapping[str, Any]) -> Part:
    """The part a JSON object describes (the shape of ``to_json``)."""
    if not isinstance(found, Mapping) or "type" not in found:
        raise InvalidPart(
            "pymem: a part must be a JSON object with a type",
            hint='e.g. {"type": "text", "text": "..."}',
        )
    kind = _KINDS.get(str(found["type"]))
    if kind is None:
        raise InvalidPart(
            f"pymem: unknown part type {found['type']!r}",
            hint=f"use one of {', '.join(sorted(_KINDS))}",
        )
    fields = {k: v for k, v in found.items() if k != "type"}
    try:
        part: Part = kind(**fields)
    except TypeError as exc:
        raise InvalidPart(
            f"pymem: a {found['type']} part: {exc}",
            hint="docs/integrations.md lists each part's fields",
        ) from exc
    return part


@dataclass(frozen=True, slots=True)
class Turn:
    """One message of a transcript: role, parts and an optional name."""

    role: str
    parts: tuple[Part, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidRole(
                f"pymem: unknown role {self.role!r}", hint=f"use one of {', '.join(sorted(ROLES))}"
            )
        if self.name is not None:
            _ident(self.name, "a message's name")
        kinds = {type(p) for p in self.parts}
        if ToolResult in kinds and (self.role != "tool" or kinds != {ToolResult}):
            raise InvalidPart(
                "pymem: tool results make up tool turns, and only they",
                hint="give each result its own Turn('tool', (ToolResult(call_id, ...),))",
            )
        if self.role == "tool" and kinds != {ToolResult}:
            raise InvalidPart(
                "pymem: a tool turn holds tool results (with the call id they answer)",
                hint="ToolResult(call_id=..., content=...)",
            )
        if ToolCall in kinds and self.role != "assistant":
            raise InvalidPart(
                "pymem: only assistant turns call tools",
                hint="store the call on the assistant turn that made it",
            )

    @classmethod
    def text(cls, role: str, text: str, name: str | None = None) -> Turn:
        return cls(role, (Text(text),), name)

    @property
    def content(self) -> str:
        """The turn's text: its text parts (and refusals), joined."""
        return "".join(p.text for p in self.parts if isinstance(p, Text | Refusal))

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolCall))

    @property
    def tool_results(self) -> tuple[ToolResult, ...]:
        return tuple(p for p in self.parts if isinstance(p, ToolResult))

    def to_json(self) -> dict[str, Any]:
        found: dict[str, Any] = {"role": self.role, "parts": [p.to_json() for p in self.parts]}
        if self.name is not None:
            found["name"] = self.name
        return found

    @classmethod
    def from_json(cls, found: Mapping[str, Any]) -> Turn:
        parts = found.get("parts")
        if not isinstance(parts, Sequence) or isinstance(parts, str):
            raise InvalidPart(
                "pymem: a turn's parts must be a JSON array",
                hint='e.g. [{"type": "text", "text": "..."}]',
            )
        return cls(
            str(found.get("role")), tuple(part_from_json(p) for p in parts), found.get("name")
        )
