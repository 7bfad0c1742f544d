"""The OpenAI Agents SDK: a pymem session as the SDK's ``Session``.

``PymemSession(memory, session_id, tenant=...)`` implements the SDK's session
protocol (``get_items``, ``add_items``, ``pop_item``, ``clear_session``):
pass it to ``Runner.run(agent, input, session=...)`` and the agent remembers
the conversation in PostgreSQL (or any pymem backend).

Each item the SDK adds is one pymem message, so ``pop_item`` undoes exactly
one item and ``get_items(limit)`` returns the newest ``limit``. Messages,
function calls and their outputs are stored as parts (searchable, redacted
and sealed like any content; a function call's arguments as a JSON object),
and what the parts do not hold (item ids, status, annotations, whether the
content was a string) is kept in the message's metadata (``openai_item``),
so that ``get_items`` returns the items exactly as they were added. Other
item types (reasoning, hosted tool calls) are stored as their JSON text.

``budget``: hand the agent a context window of that many tokens instead of
the whole conversation (the newest items, tool calls always with their
outputs; hosted items left out). Needs ``pip install 'pymem[openai-agents]'``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any, Final

from ..errors import InvalidArgument, SessionNotFound
from ..models import ContextWindow, NewMessage, StoredMessage
from ..transcript import File, Image, Part, Refusal, Text, ToolCall, to_turns
from .binding import SessionBinding

KEY: Final = "openai_item"  # metadata: what the parts do not hold of an item
_STRUCTURED: Final = frozenset({"message", "function_call", "function_call_output"})
_ROLES: Final = frozenset({"system", "developer", "user", "assistant"})
# json.dumps settings that reproduce a function call's arguments text
_ARGUMENT_FORMS: Final[Mapping[str, dict[str, Any]]] = {
    "spaced": {"separators": (", ", ": "), "ensure_ascii": False},
    "compact": {"separators": (",", ":"), "ensure_ascii": False},
    "spaced-ascii": {"separators": (", ", ": ")},
    "compact-ascii": {"separators": (",", ":")},
}


def _as_dict(item: Any) -> dict[str, Any]:
    dump = getattr(item, "model_dump", None)
    return dump(exclude_none=True) if dump is not None else dict(item)


# -- an item as a message, and back --------------------------------------------------


def _block_fields(part: Part) -> dict[str, Any]:
    """The fields of a Responses content block that ``part`` holds."""
    if isinstance(part, Text):
        return {"text": part.text}
    if isinstance(part, Refusal):
        return {"refusal": part.text}
    if isinstance(part, Image):
        found = {"image_url": part.url, "file_id": part.file_id, "detail": part.detail}
    elif isinstance(part, File):
        found = {"file_url": part.url, "file_id": part.file_id, "filename": part.filename}
    else:
        return {}
    return {k: v for k, v in found.items() if v is not None}


def _template(item: dict[str, Any], parts: tuple[Part, ...]) -> dict[str, Any] | None:
    """What ``parts`` do not hold of ``item``; None when the item cannot be
    rebuilt exactly from both."""
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        template = {k: v for k, v in item.items() if k != "content"}
        if isinstance(content, str):
            template["content"] = "text"
        else:
            template["content"] = [
                {k: v for k, v in block.items() if k not in _block_fields(part)}
                for block, part in zip(content or [], parts, strict=True)
            ]
    elif kind == "function_call":
        template = {k: v for k, v in item.items() if k != "arguments"}
        (call,) = parts
        assert isinstance(call, ToolCall)
        text = item.get("arguments")
        forms = [
            name
            for name, settings in _ARGUMENT_FORMS.items()
            if json.dumps(dict(call.arguments), **settings) == text
        ]
        if not forms:
            return None
        template["arguments"] = forms[0]
    else:
        if not isinstance(item.get("output"), str):
            return None
        template = {k: v for k, v in item.items() if k != "output"}
    return template if _rebuild(template, parts) == item else None


def _rebuild(template: Mapping[str, Any], parts: tuple[Part, ...]) -> dict[str, Any]:
    """The item a stored message holds: its template with the parts put back."""
    item = dict(template)
    kind = item.get("type", "message")
    if kind == "message":
        if template["content"] == "text":
            item["content"] = "".join(p.text for p in parts if isinstance(p, Text))
        else:
            item["content"] = [
                {**block, **_block_fields(part)}
                for block, part in zip(template["content"], parts, strict=True)
            ]
    elif kind == "function_call":
        (call,) = parts
        assert isinstance(call, ToolCall)
        settings = _ARGUMENT_FORMS[template["arguments"]]
        item["arguments"] = json.dumps(dict(call.arguments), **settings)
    else:
        item["output"] = "".join(getattr(p, "content", "") for p in parts)
    return item


def item_message(item: Any) -> NewMessage:
    """The pymem message that stores one SDK item."""
    found = _as_dict(item)
    if found.get("type", "message") in _STRUCTURED:
        try:
            (turn,) = to_turns([found], "openai-responses")
            template = _template(found, turn.parts)
        except (InvalidArgument, KeyError, ValueError):  # a shape the parts cannot hold
            template = None
        if template is not None:
            return NewMessage(
                turn.role, "", metadata={KEY: template}, parts=turn.parts or (Text(""),)
            )
    role = found.get("role") if found.get("role") in _ROLES else "assistant"
    text = json.dumps(found, ensure_ascii=False, sort_keys=True)
    return NewMessage(str(role), text, metadata={KEY: {"raw": True}})


def message_item(message: StoredMessage) -> dict[str, Any]:
    """The SDK item a stored message holds."""
    template = message.metadata.get(KEY)
    if not isinstance(template, dict):  # appended by other means: a plain message
        return {"role": message.role, "content": message.content}
    if template.get("raw"):
        found: dict[str, Any] = json.loads(message.content)
        return found
    parts = message.turn().parts
    if message.parts is None and not message.content:
        parts = ()
    return _rebuild(template, parts)


class PymemSession(SessionBinding):
    """One pymem session as an OpenAI Agents SDK session.

    ``memory``: an :class:`~pymem.AsyncMemory` (or a :class:`~pymem.Memory`,
    whose calls then run in a thread). ``budget`` (tokens): ``get_items``
    returns a context window of that size instead of everything.
    """

    session_settings: Any = None

    async def _messages(self, last: int | None = None) -> list[StoredMessage]:
        try:
            found: list[StoredMessage] = await self._run("messages", last=last)
        except SessionNotFound:
            return []
        return found

    async def get_items(self, limit: int | None = None) -> list[Any]:
        """The stored items, oldest first (the newest ``limit`` when given)."""
        if self.budget is not None:
            stored = await self._window()
        else:
            stored = await self._messages(last=limit)
        items = [message_item(m) for m in stored]
        return items[-limit:] if limit is not None and limit > 0 else items

    async def _window(self) -> list[StoredMessage]:
        """The messages of a context window, hosted (raw) items left out."""
        try:
            window: ContextWindow = await self._run(
                "context", budget=self.budget or 0, strategy=self.strategy
            )
        except SessionNotFound:
            return []
        seqs = {i.seq for i in window if i.seq is not None and i.part != "summary"}
        if not seqs:
            return []
        newest = await self._messages(last=max(seqs) - min(seqs) + 1)
        return [m for m in newest if m.seq in seqs and not (m.metadata.get(KEY) or {}).get("raw")]

    async def add_items(self, items: list[Any]) -> None:
        """Store items in order, in one transaction."""
        if items:
            await self._run("append_many", [item_message(i) for i in items])

    async def pop_item(self) -> Any | None:
        """Remove the newest item and return it (None when there is none)."""
        try:
            popped: StoredMessage | None = await self._run("pop")
        except SessionNotFound:
            return None
        return None if popped is None else message_item(popped)

    async def clear_session(self) -> None:
        """Remove the session and everything it stored."""
        with contextlib.suppress(SessionNotFound):
            await self._run("purge")
