"""LangGraph: a node (or pre-model hook) that hands the model a pymem window.

``pymem_window(memory, tenant=..., budget=...)`` returns a runnable to put in
front of the node that calls the model:

- it stores the graph's new messages in the pymem session of the graph's
  thread (``config["configurable"]["thread_id"]``, or ``session_id``), each
  under its LangChain id (an idempotency key, so replays store nothing twice);
- it reads a context window of ``budget`` tokens (``strategy`` recent,
  summary or hybrid, the newest human message as the query), tool calls
  always with their results;
- it returns ``{"messages": [RemoveMessage(REMOVE_ALL_MESSAGES), *window]}``,
  which replaces the graph's message list by the window (``output="messages"``,
  the default, for a node in a ``StateGraph``), or ``{"llm_input_messages":
  window}`` (``output="llm_input_messages"``, for ``create_react_agent``'s
  ``pre_model_hook``, leaving the state as it is).

The graph state then stays small however long the conversation grows, and
the whole conversation stays in pymem. ``pymem_store(memory, tenant=...)``
only stores: put it before ``END`` so that the model's last reply is stored
when the run ends, not when the next one starts. Sync graphs need a ``Memory``, async
ones (``ainvoke``) an ``AsyncMemory``. Needs ``pip install 'pymem[langgraph]'``.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from langchain_core.messages import BaseMessage, HumanMessage, RemoveMessage
from langchain_core.runnables import RunnableConfig, RunnableLambda
from langgraph.graph.message import REMOVE_ALL_MESSAGES

from ..aio import AsyncMemory, AsyncSession
from ..client import Memory, Session
from ..errors import InvalidArgument
from ..models import ContextWindow, NewMessage
from .langchain import ID_KEY, from_turn, to_new_message

OUTPUTS: Final = ("messages", "llm_input_messages")
FROM_PYMEM: Final = "pymem:"  # ids of messages read from pymem: never stored again


class _Stored:
    """The LangChain ids this process has stored, per session (a cache: the
    idempotency keys make a second store harmless anyway)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], set[str]] = {}

    def new(self, tenant: str, session: str, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
        with self._lock:
            known = self._ids.get((tenant, session), set())
        return [
            m for m in messages if not (m.id and (m.id in known or m.id.startswith(FROM_PYMEM)))
        ]

    def add(self, tenant: str, session: str, messages: Sequence[BaseMessage]) -> None:
        with self._lock:
            self._ids.setdefault((tenant, session), set()).update(m.id for m in messages if m.id)


def _to_store(messages: Sequence[BaseMessage]) -> list[NewMessage]:
    """The messages to append, each with its LangChain id as idempotency key."""
    return [
        replace(to_new_message(m), idempotency_key=f"lc:{m.id}") if m.id else to_new_message(m)
        for m in messages
    ]


def _window_messages(window: ContextWindow) -> list[BaseMessage]:
    """The window as LangChain messages, each with an id of its own that marks it
    as read from pymem (a graph's reducer merges messages that share an id)."""
    found: list[BaseMessage] = []
    for item in window:
        for k, message in enumerate(from_turn(item.turn())):
            message.id = f"{FROM_PYMEM}{item.part}:{item.seq}:{k}"
            found.append(message)
    return found


def _query(messages: Sequence[BaseMessage]) -> str | None:
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            return m.text
    return None


@dataclass(frozen=True)
class _Window:
    budget: int
    strategy: str
    output: str


def pymem_window(
    memory: Memory | AsyncMemory,
    *,
    tenant: str | None = None,
    budget: int,
    strategy: str = "recent",
    session_id: str | None = None,
    output: str = "messages",
) -> RunnableLambda[dict[str, Any], dict[str, Any]]:
    """A LangGraph node (or pre-model hook) that stores the graph's messages in
    pymem and hands the model a window of ``budget`` tokens (see the module)."""
    if output not in OUTPUTS:
        raise InvalidArgument(
            f"pymem: unknown output {output!r}", hint=f"use one of {', '.join(OUTPUTS)}"
        )
    return _node(memory, tenant, session_id, _Window(budget, strategy, output))


def _node(
    memory: Memory | AsyncMemory,
    tenant: str | None,
    session_id: str | None,
    window: _Window | None,
) -> RunnableLambda[dict[str, Any], dict[str, Any]]:
    """Store the graph's new messages; then, with ``window``, read one."""
    stored = _Stored()

    def _session_id(config: RunnableConfig) -> str:
        found = session_id or (config.get("configurable") or {}).get("thread_id")
        if not found:
            raise InvalidArgument(
                "pymem: no session for this graph run",
                hint="invoke the graph with config={'configurable': {'thread_id': ...}}, "
                "or pass session_id=",
            )
        return str(found)

    def _result(found: ContextWindow) -> dict[str, Any]:
        assert window is not None
        messages = _window_messages(found)
        if window.output == "llm_input_messages":
            return {"llm_input_messages": messages}
        return {"messages": [RemoveMessage(id=REMOVE_ALL_MESSAGES), *messages]}

    def run(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        if not isinstance(memory, Memory):
            raise InvalidArgument(
                "pymem: a sync graph run needs a Memory", hint="use ainvoke with an AsyncMemory"
            )
        chat: Session = memory.session(_session_id(config), tenant=tenant)
        new = stored.new(chat.tenant, chat.id, state["messages"])
        if new:
            chat.append_many(_to_store(new))
            stored.add(chat.tenant, chat.id, new)
        if window is None:
            return {}
        query = _query(state["messages"])
        return _result(chat.context(budget=window.budget, strategy=window.strategy, query=query))

    async def arun(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
        if isinstance(memory, Memory):
            return await asyncio.to_thread(run, state, config)
        chat: AsyncSession = memory.session(_session_id(config), tenant=tenant)
        new = stored.new(chat.tenant, chat.id, state["messages"])
        if new:
            await chat.append_many(_to_store(new))
            stored.add(chat.tenant, chat.id, new)
        if window is None:
            return {}
        query = _query(state["messages"])
        found = await chat.context(budget=window.budget, strategy=window.strategy, query=query)
        return _result(found)

    name = "pymem_window" if window is not None else "pymem_store"
    return RunnableLambda(run, afunc=arun, name=name)


def pymem_store(
    memory: Memory | AsyncMemory, *, tenant: str | None = None, session_id: str | None = None
) -> RunnableLambda[dict[str, Any], dict[str, Any]]:
    """A LangGraph node that only stores the graph's new messages (put it before
    ``END``, so that the model's last reply is stored before the run ends)."""
    return _node(memory, tenant, session_id, None)


__all__ = ["ID_KEY", "pymem_store", "pymem_window"]
