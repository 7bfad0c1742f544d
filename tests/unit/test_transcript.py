"""Transcript parts and the three API formats, both ways, with the SDKs' own types."""

from __future__ import annotations

from typing import Any

import pytest
from anthropic.types import Message as AnthropicMessage
from openai.types.chat import ChatCompletionMessage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage

from pymem.errors import InvalidArgument
from pymem.transcript import (
    File,
    Image,
    Text,
    ToolCall,
    ToolResult,
    Turn,
    from_turns,
    to_turns,
)
from pymem.transcript.parts import part_from_json

WEATHER = {"city": "Oslo", "units": "metric"}

CHAT: list[dict[str, Any]] = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "Weather in Oslo and Bergen? "},
            {"type": "image_url", "image_url": {"url": "https://x.test/map.png", "detail": "low"}},
        ],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Oslo", "units": "metric"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city": "Bergen"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "4 C, rain"},
    {"role": "tool", "tool_call_id": "call_2", "content": "7 C, wind"},
    {"role": "assistant", "content": "Oslo 4 C rain; Bergen 7 C wind.", "name": "forecaster"},
]


def test_openai_chat_round_trips_with_the_sdks_message_objects() -> None:
    # The assistant's tool-calling turn as the SDK returns it.
    sdk = ChatCompletionMessage.model_validate(CHAT[2])
    turns = to_turns([*CHAT[:2], sdk, *CHAT[3:]], "openai")
    assert [t.role for t in turns] == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert turns[2].tool_calls == (
        ToolCall("call_1", "weather", WEATHER),
        ToolCall("call_2", "weather", {"city": "Bergen"}),
    )
    assert turns[3].tool_results == (ToolResult("call_1", "4 C, rain"),)
    assert turns[1].parts[1] == Image(url="https://x.test/map.png", detail="low")
    assert turns[5].name == "forecaster"
    rendered = from_turns(turns, "openai")
    rendered[2]["tool_calls"][0]["function"]["arguments"] = CHAT[2]["tool_calls"][0]["function"][
        "arguments"
    ]  # the same JSON object; only spacing may differ
    assert rendered == CHAT


RESPONSES: list[dict[str, Any]] = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
    {
        "type": "function_call",
        "call_id": "call_1",
        "name": "weather",
        "arguments": '{"city": "Oslo"}',
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "4 C, rain"},
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "4 C and rain."}],
    },
]


def test_openai_responses_round_trip_with_the_sdks_items() -> None:
    call = ResponseFunctionToolCall.model_validate(
        {**RESPONSES[1], "id": "fc_1", "status": "completed"}
    )
    answer = ResponseOutputMessage.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": "4 C and rain.", "annotations": []}],
        }
    )
    turns = to_turns([RESPONSES[0], call, RESPONSES[2], answer], "openai-responses")
    assert [t.role for t in turns] == ["user", "assistant", "tool", "assistant"]
    assert turns[1].tool_calls == (ToolCall("call_1", "weather", {"city": "Oslo"}),)
    assert from_turns(turns, "openai-responses") == RESPONSES


def test_anthropic_round_trips_with_the_sdks_message() -> None:
    reply = AnthropicMessage.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude",
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 1, "output_tokens": 1},
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": WEATHER},
            ],
        }
    )
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": [{"type": "text", "text": "Weather in Oslo?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": WEATHER},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_1",
                    "content": "4 C",
                    "is_error": True,
                },
                {"type": "text", "text": "Try again?"},
            ],
        },
    ]
    turns = to_turns([messages[0], messages[1], reply, messages[3]], "anthropic")
    assert [t.role for t in turns] == ["system", "user", "assistant", "tool", "user"]
    assert turns[3].tool_results == (ToolResult("toolu_1", "4 C", is_error=True),)
    assert from_turns(turns, "anthropic") == messages


def test_a_transcript_crosses_formats_without_loss() -> None:
    turns = to_turns(CHAT[2:5], "openai")
    via_anthropic = to_turns(from_turns(turns, "anthropic"), "anthropic")
    via_responses = to_turns(from_turns(turns, "openai-responses"), "openai-responses")
    assert via_anthropic == turns == via_responses


def test_turns_and_parts_have_one_json_shape() -> None:
    turn = Turn(
        "user",
        (Text("see"), Image(file_id="file-1"), File(url="https://x.test/a.pdf", filename="a.pdf")),
        name="ann",
    )
    assert Turn.from_json(turn.to_json()) == turn
    assert turn.to_json()["parts"][1] == {"type": "image", "file_id": "file-1"}
    assert part_from_json(ToolCall("c", "f", {"a": [1]}).to_json()) == ToolCall(
        "c", "f", {"a": [1]}
    )


@pytest.mark.parametrize(
    ("build", "says"),
    [
        (lambda: to_turns([{"role": "tool", "content": "x"}]), "tool_call_id"),
        (
            lambda: to_turns(
                [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "[1]"},
                            }
                        ],
                    }
                ]
            ),
            "JSON object",
        ),
        (
            lambda: to_turns(
                [
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{oops"},
                            }
                        ],
                    }
                ]
            ),
            "not valid JSON",
        ),
        (lambda: part_from_json({"type": "hologram"}), "unknown part type"),
        (lambda: Image(url="data:image/png;base64,AAAA"), "references, not bytes"),
        (lambda: Image(), "a url or a file_id"),
        (
            lambda: to_turns(
                [{"role": "user", "content": [{"type": "file", "file": {"file_data": "AAAA"}}]}]
            ),
            "file_data",
        ),
        (lambda: Turn("user", (ToolResult("c", "x"),)), "tool turns"),
        (lambda: Turn("user", (ToolCall("c", "f", {}),)), "only assistant"),
        (lambda: Turn("robot", (Text("beep"),)), "unknown role"),
        (lambda: ToolCall("c", "f", "not a dict"), "JSON object"),  # type: ignore[arg-type]
        (lambda: Text("x" * (4 * 1024 * 1024 + 1)), "the limit"),
        (lambda: to_turns([], "gemini"), "unknown message format"),
        (
            lambda: to_turns(
                [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image", "source": {"type": "base64", "data": "AAAA"}}
                        ],
                    }
                ],
                "anthropic",
            ),
            "references, not bytes",
        ),
    ],
)
def test_bad_input_is_a_typed_error_with_a_reason(build: Any, says: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        build()
    assert says in str(caught.value)


def test_turn_tokens_count_text_and_estimate_the_framing() -> None:
    from pymem.context.tokens import TiktokenCounter
    from pymem.transcript import turn_tokens
    from pymem.transcript.tokens import IMAGE_TOKENS, TOOL_CALL_FRAMING, TOOL_RESULT_FRAMING

    counter = TiktokenCounter()
    text = "Weather in Oslo?"
    assert turn_tokens(Turn.text("user", text), counter) == counter.count(text)
    call = ToolCall("call_1", "weather", WEATHER)
    expected = (
        counter.count("weather")
        + counter.count('{"city":"Oslo","units":"metric"}')
        + TOOL_CALL_FRAMING
    )
    assert turn_tokens(Turn("assistant", (call,)), counter) == expected
    both = Turn("assistant", (Text("Checking."), call, call))
    assert turn_tokens(both, counter) == counter.count("Checking.") + 2 * expected
    result = Turn("tool", (ToolResult("call_1", "4 C, rain"),))
    assert turn_tokens(result, counter) == counter.count("4 C, rain") + TOOL_RESULT_FRAMING
    picture = Turn("user", (Image(url="https://x.test/a.png"),), name="ann")
    assert turn_tokens(picture, counter) == IMAGE_TOKENS + counter.count("ann") + 1


def test_a_window_renders_in_each_format() -> None:
    from pymem import Memory

    mem = Memory.in_memory()
    chat = mem.session("s", tenant="acme")
    for i in range(6):
        chat.append("user" if i % 2 == 0 else "assistant", f"turn {i}", tokens=5)
    window = chat.context(budget=100)
    assert window.messages() == window.messages("openai")
    assert window.messages()[0] == {"role": "user", "content": "turn 0"}
    assert window.messages("anthropic")[1] == {
        "role": "assistant",
        "content": [{"type": "text", "text": "turn 1"}],
    }
    assert window.messages("openai-responses")[1] == {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "turn 1"}],
    }
    chat.append("tool", "a result stored as text", tokens=5)
    with pytest.raises(InvalidArgument, match="tool"):
        chat.context(budget=100).messages("anthropic")
    assert chat.context(budget=100).messages()[-1]["role"] == "tool"  # the default still works


def test_digests_read_tool_calls_as_text() -> None:
    from datetime import UTC, datetime

    from pymem.context.summarize import ExtractiveSummarizer, turn_text
    from pymem.models import StoredMessage

    call = {"type": "tool_call", "id": "c1", "name": "refund", "arguments": {"order": "A-17"}}
    turn = StoredMessage(2, "assistant", "", 9, False, {}, datetime.now(UTC), [call])
    assert turn_text(turn) == '[called refund({"order": "A-17"})].'
    digest = ExtractiveSummarizer().summarize([turn], max_tokens=50)
    assert "refund" in digest and "A-17" in digest
