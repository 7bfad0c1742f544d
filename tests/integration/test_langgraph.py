"""LangGraph: the pymem_window node in a real StateGraph (and as a pre-model
hook), with langchain-core's fake chat model in place of a provider."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition

from pymem import AsyncMemory, Memory
from pymem.context.tokens import counter_for
from pymem.integrations.langgraph import pymem_store, pymem_window


class RecordingModel(GenericFakeChatModel):
    """The fake chat model, remembering every message list it was given."""

    seen: ClassVar[list[list[BaseMessage]]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> RecordingModel:
        return self

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return super()._generate(messages, *args, **kwargs)

    async def _agenerate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> Any:
        self.seen.append(list(messages))
        return await super()._agenerate(messages, *args, **kwargs)


@tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"12 C and rain in {city}"


CALL = {"name": "get_weather", "args": {"city": "Oslo"}, "id": "call_1", "type": "tool_call"}


def _graph(window: Any, store: Any, model: RecordingModel) -> Any:
    """memory -> model -> (tools -> memory -> model)* -> store -> end, checkpointed
    per thread."""

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("memory", window)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode([get_weather]))
    graph.add_node("store", store)
    graph.add_edge(START, "memory")
    graph.add_edge("memory", "model")
    graph.add_conditional_edges("model", tools_condition, {"tools": "tools", END: "store"})
    graph.add_edge("tools", "memory")
    graph.add_edge("store", END)
    return graph.compile(checkpointer=InMemorySaver())


def _replies() -> list[AIMessage]:
    return [
        AIMessage("", tool_calls=[CALL]),
        AIMessage("12 C and rain in Oslo."),
        *[AIMessage(f"Noted, fact {i}.") for i in range(12)],
    ]


def test_the_graph_keeps_a_window_and_pymem_keeps_everything(dsn: str) -> None:
    RecordingModel.seen = []
    model = RecordingModel(messages=iter(_replies()))
    counter = counter_for("gpt-4o")
    with Memory.connect(dsn) as mem:
        graph = _graph(
            pymem_window(mem, tenant="acme", budget=60), pymem_store(mem, tenant="acme"), model
        )
        config = {"configurable": {"thread_id": "thread-1"}}
        graph.invoke({"messages": [HumanMessage("Weather in Oslo?")]}, config)
        for i in range(12):
            graph.invoke({"messages": [HumanMessage(f"Remember fact number {i}, please.")]}, config)
        stored = mem.session("thread-1", tenant="acme").messages()
        state = graph.get_state(config).values["messages"]
    # pymem holds the whole conversation once, tool call and result included.
    assert len(stored) == 2 * 14
    assert stored[1].turn().tool_calls[0].arguments == {"city": "Oslo"}
    assert stored[2].turn().tool_results[0].call_id == "call_1"
    assert len({m.content for m in stored}) == len(stored)
    # Every model call got a window within budget, starting with no orphan result,
    # and the graph's own state stays small.
    for given in RecordingModel.seen:
        assert sum(counter.count(str(m.content)) for m in given) <= 60
        assert not isinstance(given[0], ToolMessage)
        calls = {c["id"] for m in given if isinstance(m, AIMessage) for c in m.tool_calls}
        results = {m.tool_call_id for m in given if isinstance(m, ToolMessage)}
        assert calls == results
    assert RecordingModel.seen[1][-1].tool_call_id == "call_1"  # type: ignore[attr-defined]
    assert len(RecordingModel.seen[-1]) <= len(stored) // 2
    assert len(state) <= len(stored) // 2 + 1  # the window and the last reply


def test_the_async_graph_with_an_async_memory(dsn: str) -> None:
    RecordingModel.seen = []
    model = RecordingModel(messages=iter(_replies()))

    async def scenario() -> list[str]:
        async with await AsyncMemory.connect(dsn) as mem:
            graph = _graph(
                pymem_window(mem, tenant="acme", budget=500), pymem_store(mem, tenant="acme"), model
            )
            config = {"configurable": {"thread_id": "thread-2"}}
            await graph.ainvoke({"messages": [HumanMessage("Weather in Oslo?")]}, config)
            await graph.ainvoke({"messages": [HumanMessage("And tomorrow?")]}, config)
            stored = await mem.session("thread-2", tenant="acme").messages()
            return [m.role for m in stored]

    assert asyncio.run(scenario()) == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "user",
        "assistant",
    ]
    assert [type(m).__name__ for m in RecordingModel.seen[-1]] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
        "HumanMessage",
    ]


@pytest.mark.filterwarnings("ignore:create_react_agent has been moved")
def test_as_a_pre_model_hook_of_create_react_agent(dsn: str) -> None:
    from langgraph.prebuilt import create_react_agent

    RecordingModel.seen = []
    model = RecordingModel(messages=iter(_replies()))
    with Memory.connect(dsn) as mem:
        hook = pymem_window(mem, tenant="acme", budget=500, output="llm_input_messages")
        agent = create_react_agent(
            model, [get_weather], pre_model_hook=hook, checkpointer=InMemorySaver()
        )
        config = {"configurable": {"thread_id": "thread-3"}}
        out = agent.invoke({"messages": [HumanMessage("Weather in Oslo?")]}, config)
        stored = mem.session("thread-3", tenant="acme").messages()
    assert out["messages"][-1].content == "12 C and rain in Oslo."
    assert [m.role for m in stored] == ["user", "assistant", "tool"]  # the last reply
    # is stored by the next model call, when the hook next runs
    assert RecordingModel.seen[1][-1].tool_call_id == "call_1"  # type: ignore[attr-defined]
