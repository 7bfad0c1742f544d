"""LangChain: PymemChatMessageHistory against the real langchain-core, with its
own fake chat model in place of a provider."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from pymem import AsyncMemory, Memory
from pymem.integrations.langchain import PymemChatMessageHistory

CALL = {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_1", "type": "tool_call"}
TRANSCRIPT = [
    SystemMessage("You are terse."),
    HumanMessage("Weather in Oslo?", name="ada", id="m-1"),
    AIMessage("", tool_calls=[CALL], id="m-2"),
    ToolMessage("12 C, rain", tool_call_id="call_1", id="m-3"),
    ToolMessage("timeout", tool_call_id="call_2", status="error"),
    AIMessage("12 C and rain."),
]


def _same(found: list[object], expected: list[object]) -> None:
    assert [type(m) for m in found] == [type(m) for m in expected]
    for got, want in zip(found, expected, strict=True):
        assert got.content == want.content  # type: ignore[attr-defined]
        assert got.name == want.name  # type: ignore[attr-defined]
    calls = [m.tool_calls for m in found if isinstance(m, AIMessage)]
    assert calls[0] == [CALL]
    results = [(m.tool_call_id, m.status) for m in found if isinstance(m, ToolMessage)]
    assert results == [("call_1", "success"), ("call_2", "error")]


def test_history_round_trips_tool_calls_sync_and_async(dsn: str) -> None:
    with Memory.connect(dsn) as mem:
        history = PymemChatMessageHistory(mem, "lc-1", tenant="acme")
        assert history.messages == []
        history.add_messages(TRANSCRIPT[:4])
        history.add_messages(TRANSCRIPT[4:])
        _same(history.messages, TRANSCRIPT)
        assert [m.id for m in history.messages][1:4] == ["m-1", "m-2", "m-3"]
        # A window: call_2's result answers no call of m-2, so that group is
        # not valid for a model API and the window leaves it out whole.
        windowed = PymemChatMessageHistory(mem, "lc-1", tenant="acme", budget=1000)
        assert [type(m) for m in windowed.messages] == [SystemMessage, HumanMessage, AIMessage]
        history.clear()
        assert history.messages == []

    async def scenario() -> None:
        async with await AsyncMemory.connect(dsn) as mem:
            history = PymemChatMessageHistory(mem, "lc-2", tenant="acme")
            await history.aadd_messages(TRANSCRIPT)
            _same(await history.aget_messages(), TRANSCRIPT)
            await history.aclear()
            assert await history.aget_messages() == []

    asyncio.run(scenario())


# langchain-core 1.x marks RunnableWithMessageHistory deprecated (for LangGraph's
# persistence, see test_langgraph.py); applications still run on it.
@pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")
def test_runnable_with_message_history_remembers_across_calls(dsn: str) -> None:
    model = GenericFakeChatModel(
        messages=iter([AIMessage("Nice to meet you, Ada."), AIMessage("You are Ada.")])
    )
    seen: list[list[str]] = []

    def record(value: object) -> object:
        seen.append([m.content for m in value.to_messages()])  # type: ignore[attr-defined]
        return value

    prompt = ChatPromptTemplate.from_messages(
        [("system", "Be brief."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    with Memory.connect(dsn) as mem:
        chain = RunnableWithMessageHistory(
            prompt | record | model,
            lambda session_id: PymemChatMessageHistory(mem, session_id, tenant="acme"),
            input_messages_key="question",
            history_messages_key="history",
        )
        config = {"configurable": {"session_id": "chat-7"}}
        chain.invoke({"question": "I am Ada."}, config=config)
        answer = chain.invoke({"question": "Who am I?"}, config=config)
        stored = [(m.role, m.content) for m in mem.session("chat-7", tenant="acme").messages()]
    assert answer.content == "You are Ada."
    assert seen[1] == ["Be brief.", "I am Ada.", "Nice to meet you, Ada.", "Who am I?"]
    assert stored == [
        ("user", "I am Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "Who am I?"),
        ("assistant", "You are Ada."),
    ]
