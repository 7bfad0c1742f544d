"""The OpenAI Agents SDK: PymemSession under the real Runner, with a scripted
model in place of the API, checked against the SDK's own SQLiteSession."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.memory import Session as SdkSession
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

from pymem import AsyncMemory, Memory
from pymem.integrations.openai_agents import PymemSession

set_tracing_disabled(True)


class ScriptedModel(Model):
    """Answers with the next scripted output and records what it was given."""

    def __init__(self, outputs: list[list[Any]]) -> None:
        self.outputs = list(outputs)
        self.inputs: list[Any] = []

    async def get_response(
        self, system_instructions: Any, input: Any, *args: Any, **kw: Any
    ) -> Any:
        self.inputs.append(input)
        return ModelResponse(output=self.outputs.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kw: Any) -> Any:
        raise NotImplementedError


def _say(text: str, item_id: str) -> list[Any]:
    block = ResponseOutputText(type="output_text", text=text, annotations=[])
    return [
        ResponseOutputMessage(
            id=item_id, type="message", role="assistant", status="completed", content=[block]
        )
    ]


def _call(call_id: str, arguments: str) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(
        id=f"fc_{call_id}",
        call_id=call_id,
        type="function_call",
        name="get_weather",
        arguments=arguments,
    )


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"12 C and rain in {city}"


def _script() -> list[list[Any]]:
    return [
        # Two calls in parallel, their arguments spelled two ways.
        [
            _call("call_1", '{"city":"Oslo"}'),
            _call("call_2", '{"city": "Bergen"}'),
        ],
        _say("Oslo and Bergen: 12 C and rain.", "msg_1"),
        _say("You asked about Oslo and Bergen.", "msg_2"),
    ]


async def _conversation(session: SdkSession) -> ScriptedModel:
    model = ScriptedModel(_script())
    agent = Agent(name="weather", model=model, tools=[get_weather])
    await Runner.run(agent, "Weather in Oslo and Bergen?", session=session)
    await Runner.run(agent, "What did I ask?", session=session)
    return model


def test_items_come_back_exactly_as_the_sdk_added_them(dsn: str) -> None:
    async def scenario() -> None:
        reference = SQLiteSession("ref")
        expected_model = await _conversation(reference)
        async with await AsyncMemory.connect(dsn) as mem:
            session = PymemSession(mem, "agent-1", tenant="acme")
            assert isinstance(session, SdkSession)
            model = await _conversation(session)
            assert await session.get_items() == await reference.get_items()
            # The second run's model saw the same history as with the SDK's own session.
            assert model.inputs[-1] == expected_model.inputs[-1]
            assert await session.get_items(limit=2) == (await reference.get_items())[-2:]
            stored = await mem.session("agent-1", tenant="acme").messages()
            assert stored[1].turn().tool_calls[0].arguments == {"city": "Oslo"}
            assert [m.role for m in stored[:5]] == [
                "user",
                "assistant",
                "assistant",
                "tool",
                "tool",
            ]
            assert await session.pop_item() == await reference.pop_item()
            assert await session.get_items() == await reference.get_items()
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.pop_item() is None

    asyncio.run(scenario())


def test_items_the_parts_cannot_hold_are_kept_as_they_are(dsn: str) -> None:
    reasoning = {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "thinking about Oslo"}],
        "encrypted_content": "gAAAA...",
    }
    odd_call = {
        "type": "function_call",
        "call_id": "c9",
        "name": "f",
        "arguments": '{ "a" :1 }',  # spelled as no json.dumps spells it
    }
    items = [{"role": "user", "content": "hi"}, reasoning, odd_call]

    async def scenario() -> None:
        with Memory.connect(dsn) as mem:  # a sync Memory works too, in a thread
            session = PymemSession(mem, "agent-2", tenant="acme")
            await session.add_items(items)
            assert await session.get_items() == items

    asyncio.run(scenario())


def test_a_budget_hands_the_agent_a_valid_window(dsn: str) -> None:
    async def scenario() -> None:
        async with await AsyncMemory.connect(dsn) as mem:
            full = PymemSession(mem, "agent-3", tenant="acme")
            await _conversation(full)
            everything = await full.get_items()
            windowed = PymemSession(mem, "agent-3", tenant="acme", budget=40)
            window = await windowed.get_items()
            assert 0 < len(window) < len(everything)
            assert window == everything[-len(window) :]
            kinds = [i.get("type", "message") for i in window]
            assert kinds[0] != "function_call_output"
            if "function_call" in kinds:
                calls = {i["call_id"] for i in window if i.get("type") == "function_call"}
                outputs = {i["call_id"] for i in window if i.get("type") == "function_call_output"}
                assert calls == outputs

    asyncio.run(scenario())


@pytest.mark.parametrize("budget", [0, 15, 60, 200])
def test_every_budget_keeps_calls_with_their_outputs(dsn: str, budget: int) -> None:
    async def scenario() -> None:
        async with await AsyncMemory.connect(dsn) as mem:
            await _conversation(PymemSession(mem, "agent-4", tenant="acme"))
            window = await PymemSession(mem, "agent-4", tenant="acme", budget=budget).get_items()
            calls = {i["call_id"] for i in window if i.get("type") == "function_call"}
            outputs = {i["call_id"] for i in window if i.get("type") == "function_call_output"}
            assert calls == outputs

    asyncio.run(scenario())
