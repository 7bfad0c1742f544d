"""LangChain: a pymem session as a ``BaseChatMessageHistory``.

``PymemChatMessageHistory(memory, session_id, tenant=...)`` stores LangChain
messages in pymem and reads them back, tool calls included: an ``AIMessage``'s
``tool_calls`` (id, name, args) become tool call parts, a ``ToolMessage``
becomes a tool result tied to its ``tool_call_id`` (``status="error"`` keeps
the error flag), names and message ids are kept. Give ``budget`` to read a
pymem context window instead of the whole history: the newest turns (or
digests and recalled turns, with ``strategy``) within that many tokens, tool
calls always with their results.

Works with ``RunnableWithMessageHistory``, sync (``Memory``) and async
(``AsyncMemory``). Needs ``pip install 'pymem[langchain]'``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from ..client import Session
from ..errors import InvalidArgument, InvalidPart, SessionNotFound
from ..models import NewMessage
from ..transcript import Image, Part, Refusal, Text, ToolCall, ToolResult, Turn
from .binding import SessionBinding

ID_KEY = "langchain_id"  # where a message's LangChain id is kept (metadata)


def _content_parts(content: str | list[Any]) -> list[Part]:
    if isinstance(content, str):
        return [Text(content)] if content else []
    parts: list[Part] = []
    for block in content:
        if isinstance(block, str):
            parts.append(Text(block))
            continue
        kind = block.get("type")
        if kind == "text":
            parts.append(Text(block["text"]))
        elif kind == "image_url":
            image = block["image_url"]
            url = image if isinstance(image, str) else image["url"]
            detail = None if isinstance(image, str) else image.get("detail")
            parts.append(Image(url=url, detail=detail))
        elif kind == "image" and ("url" in block or "file_id" in block):
            parts.append(Image(url=block.get("url"), file_id=block.get("file_id")))
        else:
            raise InvalidPart(
                f"pymem: a LangChain content block of type {kind!r} cannot be stored",
                hint="keep text, and images by URL or file id; store bytes elsewhere",
            )
    return parts


def to_new_message(message: BaseMessage) -> NewMessage:
    """A LangChain message as the pymem message that stores it."""
    metadata = {ID_KEY: message.id} if message.id else None
    if isinstance(message, ToolMessage):
        content = message.content if isinstance(message.content, str) else str(message.content)
        result = ToolResult(message.tool_call_id, content, message.status == "error")
        return NewMessage("tool", "", metadata=metadata, parts=(result,), name=message.name)
    if isinstance(message, AIMessage):
        parts = _content_parts(message.content)
        parts += [ToolCall(c["id"] or "", c["name"], c["args"]) for c in message.tool_calls]
        role = "assistant"
    elif isinstance(message, HumanMessage):
        parts, role = _content_parts(message.content), "user"
    elif isinstance(message, SystemMessage):
        parts, role = _content_parts(message.content), "system"
    else:
        raise InvalidArgument(
            f"pymem: a LangChain {type(message).__name__} cannot be stored",
            hint="store human, AI, system and tool messages",
        )
    return NewMessage(
        role, "", metadata=metadata, parts=tuple(parts or [Text("")]), name=message.name
    )


def from_turn(turn: Turn, message_id: str | None = None) -> list[BaseMessage]:
    """A pymem turn as LangChain messages (a tool turn with several results: one each)."""
    if turn.role == "tool":
        return [
            ToolMessage(
                content=r.content,
                tool_call_id=r.call_id,
                status="error" if r.is_error else "success",
                name=turn.name,
                id=message_id,
            )
            for r in turn.tool_results
        ]
    images = [p for p in turn.parts if isinstance(p, Image)]
    content: str | list[str | dict[str, Any]] = turn.content
    if images:
        content = [
            {"type": "text", "text": p.text}
            if isinstance(p, Text | Refusal)
            else {"type": "image_url", "image_url": {"url": p.url or p.file_id or ""}}
            for p in turn.parts
            if isinstance(p, Text | Refusal | Image)
        ]
    if turn.role == "assistant":
        calls = [
            {"name": c.name, "args": dict(c.arguments), "id": c.id, "type": "tool_call"}
            for c in turn.tool_calls
        ]
        return [AIMessage(content=content, tool_calls=calls, name=turn.name, id=message_id)]
    if turn.role == "user":
        return [HumanMessage(content=content, name=turn.name, id=message_id)]
    return [SystemMessage(content=content, name=turn.name, id=message_id)]


class PymemChatMessageHistory(SessionBinding, BaseChatMessageHistory):
    """The messages of one pymem session, for LangChain.

    ``memory`` is a :class:`~pymem.Memory` (sync and async methods) or an
    :class:`~pymem.AsyncMemory` (async methods only). ``budget`` (tokens):
    read a context window of that size instead of the whole history.
    """

    # -- sync --------------------------------------------------------------------

    def _sync(self) -> Session:
        if not isinstance(self._session, Session):
            raise InvalidArgument(
                "pymem: this history was made with an AsyncMemory: use its async methods",
                hint="await history.aget_messages() / aadd_messages(), or pass a Memory",
            )
        return self._session

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        session = self._sync()
        try:
            if self.budget is not None:
                window = session.context(budget=self.budget, strategy=self.strategy)
                return _convert([(item.turn(), None) for item in window])
            return _convert([(m.turn(), m.metadata.get(ID_KEY)) for m in session.messages()])
        except SessionNotFound:  # nothing stored yet (or expired)
            return []

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            self._sync().append_many([to_new_message(m) for m in messages])

    def clear(self) -> None:
        with contextlib.suppress(SessionNotFound):
            self._sync().purge()

    # -- async -------------------------------------------------------------------

    async def aget_messages(self) -> list[BaseMessage]:
        try:
            if self.budget is not None:
                window = await self._run("context", budget=self.budget, strategy=self.strategy)
                return _convert([(item.turn(), None) for item in window])
            stored = await self._run("messages")
        except SessionNotFound:
            return []
        return _convert([(m.turn(), m.metadata.get(ID_KEY)) for m in stored])

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        if messages:
            await self._run("append_many", [to_new_message(m) for m in messages])

    async def aclear(self) -> None:
        with contextlib.suppress(SessionNotFound):
            await self._run("purge")


def _convert(turns: list[tuple[Turn, Any]]) -> list[BaseMessage]:
    return [m for turn, message_id in turns for m in from_turn(turn, message_id)]
