"""The backend contract for agent transcripts: parts, names, and windows that the
model APIs accept. Every backend passes these same tests."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymem import errors
from pymem.backends.base import MemoryBackend
from pymem.backends.memory import InMemoryBackend
from pymem.backends.postgres import PostgresBackend
from pymem.models import ContextRequest, NewMessage, RecallRequest
from pymem.transcript import Image, Text, ToolCall, ToolResult, Turn
from tests.transcripts import steps, transcript

T, S = "acme", "agent-1"


def _call(*calls: ToolCall, tokens: int = 10) -> NewMessage:
    return NewMessage("assistant", "", tokens=tokens, parts=calls)


def _result(call_id: str, content: str, tokens: int = 10) -> NewMessage:
    return NewMessage("tool", "", tokens=tokens, parts=(ToolResult(call_id, content),))


def _say(role: str, text: str, tokens: int = 10) -> NewMessage:
    return NewMessage(role, text, tokens=tokens)


WEATHER = ToolCall("call_w", "get_weather", {"city": "Oslo", "units": {"temp": "C"}})
TIME = ToolCall("call_t", "get_time", {"zone": "Europe/Oslo"})


def _agent_turns(backend: MemoryBackend, session: str = S) -> None:
    """user, assistant calling two tools in parallel, both results, the answer."""
    backend.append_many(
        T,
        session,
        [
            _say("user", "What is the weather and the time in Oslo?"),
            _call(WEATHER, TIME),
            _result("call_w", "12 degrees, light rain"),
            _result("call_t", "14:05"),
            _say("assistant", "It is 12 C with light rain, and 14:05."),
        ],
    )


def test_parts_and_name_round_trip(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "look at this", name="ada", tokens=3))
    backend.append(
        T,
        S,
        NewMessage(
            "user",
            "",
            tokens=90,
            parts=(Text("What is in "), Image(url="https://example.com/a.png", detail="low")),
        ),
    )
    _agent_turns(backend)
    named, picture, user, calling, weather, _, answer = backend.history(T, S)
    assert named.turn() == Turn("user", (Text("look at this"),), "ada")
    assert (named.content, named.name) == ("look at this", "ada")
    assert picture.turn().parts[1] == Image(url="https://example.com/a.png", detail="low")
    assert picture.content == "What is in "
    assert user.parts is None and user.name is None  # plain text stays plain
    assert calling.turn().tool_calls == (WEATHER, TIME)
    assert calling.parts == [
        {
            "type": "tool_call",
            "id": "call_w",
            "name": "get_weather",
            "arguments": WEATHER.arguments,
        },
        {"type": "tool_call", "id": "call_t", "name": "get_time", "arguments": TIME.arguments},
    ]
    assert calling.content == ""
    assert weather.turn() == Turn("tool", (ToolResult("call_w", "12 degrees, light rain"),))
    assert weather.content == "12 degrees, light rain"
    assert answer.parts is None
    assert [m.seq for m in backend.last_messages(T, S, 2)] == [6, 7]
    assert backend.last_messages(T, S, 3)[0].turn() == weather.turn()


def test_one_text_part_is_plain_text(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "", tokens=1, parts=(Text("hi"),)))
    (stored,) = backend.history(T, S)
    assert (stored.content, stored.parts, stored.name) == ("hi", None, None)


def test_estimated_tokens_of_parts_agree_everywhere(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("assistant", "", parts=(WEATHER,)))
    backend.append(T, S, NewMessage("tool", "", parts=(ToolResult("call_w", "twelve degrees"),)))
    calling, result = backend.history(T, S)
    assert calling.tokens_estimated and result.tokens_estimated
    # "get_weather Oslo C": 18 characters -> 5 tokens, plus a call's framing (7);
    # "twelve degrees": 14 characters -> 4, plus a result's framing (4).
    assert (calling.tokens, result.tokens) == (12, 8)


def test_bad_parts_raise_typed_errors_and_write_nothing(backend: MemoryBackend) -> None:
    backend.append(T, S, _say("user", "first"))
    bad = [
        ("user", ToolResult("call_1", "a result in a user turn")),
        ("tool", Text("a tool turn without a result")),
        ("user", WEATHER),
    ]
    for role, part in bad:
        with pytest.raises(errors.InvalidPart) as caught:
            backend.append_many(T, S, [_say("user", "kept?"), NewMessage(role, "", parts=(part,))])
        assert caught.value.hint
    with pytest.raises(errors.InvalidPart):
        backend.append(T, S, NewMessage("user", "hi", name="bad\nname"))
    assert [m.content for m in backend.history(T, S)] == ["first"]


def test_idempotency_key_covers_parts(backend: MemoryBackend) -> None:
    first = backend.append(T, S, NewMessage("assistant", "", parts=(WEATHER,), idempotency_key="k"))
    again = backend.append(T, S, NewMessage("assistant", "", parts=(WEATHER,), idempotency_key="k"))
    assert (again.seq, again.duplicate) == (first.seq, True)
    with pytest.raises(errors.IdempotencyKeyReused):
        backend.append(T, S, NewMessage("assistant", "", parts=(TIME,), idempotency_key="k"))


def test_recent_window_keeps_tool_groups_whole(backend: MemoryBackend) -> None:
    _agent_turns(backend)  # seqs 1..5, 10 tokens each
    whole = backend.context(T, S, ContextRequest(budget=50))
    assert [i.seq for i in whole] == [1, 2, 3, 4, 5]
    assert [i.seq for i in backend.context(T, S, ContextRequest(budget=40))] == [2, 3, 4, 5]
    # 20 or 30 tokens reach back into the results: the results and their call
    # go together, so the window is the answer alone, never a result first.
    for budget in (20, 30):
        window = backend.context(T, S, ContextRequest(budget=budget))
        assert [i.seq for i in window] == [5], budget
        assert window.tokens <= budget
    messages = whole.messages()
    assert messages[1]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert [m["tool_call_id"] for m in messages[2:4]] == ["call_w", "call_t"]
    anthropic = whole.messages(format="anthropic")
    assert [b["type"] for b in anthropic[2]["content"]] == ["tool_result", "tool_result"]


def test_unanswered_calls_are_left_out(backend: MemoryBackend) -> None:
    backend.append_many(
        T,
        S,
        [
            _say("user", "weather and time?"),
            _call(WEATHER, TIME),
            _result("call_w", "12 degrees"),  # call_t never answered
            _say("user", "hello?"),
            _call(ToolCall("call_x", "lookup", {})),  # the newest call, still running
        ],
    )
    for strategy in ("recent", "summary", "hybrid"):
        window = backend.context(
            T, S, ContextRequest(budget=1000, strategy=strategy, query="weather degrees")
        )
        assert [i.seq for i in window if i.part != "summary"] == [1, 4], strategy


def test_hybrid_recall_brings_the_whole_group(backend: MemoryBackend) -> None:
    _agent_turns(backend)
    for i in range(20):
        backend.append(T, S, _say("user" if i % 2 else "assistant", f"small talk {i}"))
    # A tool call is found by its tool name and argument values.
    found = backend.recall(T, S, RecallRequest(RecallQuery.oslo))
    assert any(m.seq == 2 for m in found)
    window = backend.context(
        T,
        S,
        ContextRequest(budget=100, strategy="hybrid", query=RecallQuery.rain, recent_share=0.2),
    )
    recalled = [i.seq for i in window if i.part == "recall"]
    assert {2, 3, 4} <= set(recalled), recalled
    assert window.tokens <= 100
    roles = [m["role"] for m in window.messages()]
    first_tool = roles.index("tool")
    assert roles[first_tool - 1] == "assistant" and roles[first_tool + 1] == "tool"


class RecallQuery:
    oslo = "europe oslo zone"
    rain = "light rain"


def test_export_includes_parts(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "hi", name="ada", tokens=1), user_id="u1")
    backend.append(T, S, _call(WEATHER), user_id="u1")
    backend.append(T, S, _say("assistant", "plain"), user_id="u1")
    (session,) = backend.export_subject(T, "u1")["sessions"]
    named, calling, plain = session["messages"]
    assert (named["parts"], named["name"]) == ([{"type": "text", "text": "hi"}], "ada")
    assert calling["parts"] == [WEATHER.to_json()] and "name" not in calling
    assert "parts" not in plain and plain["content"] == "plain"


def test_pop_message_gives_the_newest_back(backend: MemoryBackend) -> None:
    backend.append(T, S, _say("user", "keep me"), user_id="u1")
    backend.append(
        T, S, NewMessage("assistant", "", tokens=5, parts=(WEATHER,), idempotency_key="k")
    )
    before = backend.session_info(T, S)
    popped = backend.pop_message(T, S)
    assert popped is not None and popped.seq == 2 and popped.turn().tool_calls == (WEATHER,)
    info = backend.session_info(T, S)
    assert (info.last_seq, info.message_count, info.token_count) == (1, 1, before.token_count - 5)
    # The seq and the idempotency key are free again: seqs stay gap-free.
    again = backend.append(T, S, NewMessage("assistant", "", parts=(TIME,), idempotency_key="k"))
    assert (again.seq, again.duplicate) == (2, False)
    assert [m.turn().tool_calls for m in backend.history(T, S)][1] == (TIME,)
    assert backend.pop_message(T, S) is not None
    assert backend.pop_message(T, S) is not None
    assert backend.pop_message(T, S) is None  # empty: nothing to pop
    assert backend.history(T, S) == []
    with pytest.raises(errors.SessionNotFound):
        backend.pop_message(T, "never-written")


def test_parallel_calls_stored_one_turn_each_stay_together(backend: MemoryBackend) -> None:
    """Responses items are stored one by one: two call turns in a row, then both
    results, form one group."""
    backend.append_many(
        T,
        S,
        [
            _say("user", "weather and time?"),
            _call(WEATHER),
            _call(TIME),
            _result("call_w", "12 degrees"),
            _result("call_t", "14:05"),
            _say("assistant", "12 C at 14:05"),
        ],
    )
    assert [i.seq for i in backend.context(T, S, ContextRequest(budget=50))] == [2, 3, 4, 5, 6]
    # 40 tokens start the window at the second call: its group began before the
    # window, so the window holds the answer alone.
    assert [i.seq for i in backend.context(T, S, ContextRequest(budget=40))] == [6]
    window = backend.context(T, S, ContextRequest(budget=60))
    assert [m["role"] for m in window.messages()] == [
        "user",
        "assistant",
        "assistant",
        "tool",
        "tool",
        "assistant",
    ]


# Random transcripts: the SQL rule (memory._tail, memory._turn_group) and its
# Python twin (pymem.context.ranking) choose the same windows.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drawn=st.lists(steps(30), min_size=1, max_size=20),
    budget=st.integers(0, 300),
    strategy=st.sampled_from(["recent", "hybrid"]),
    shorten=st.one_of(st.none(), st.integers(1, 10)),
)
def test_sql_and_python_choose_the_same_windows(
    dsn: str, drawn: list[tuple[Any, ...]], budget: int, strategy: str, shorten: int | None
) -> None:
    session = f"prop-{uuid.uuid4().hex[:12]}"
    messages = transcript(drawn)
    twin = InMemoryBackend()
    twin.append_many(T, session, messages)
    pg = PostgresBackend(dsn, max_size=1).open()
    try:
        pg.append_many(T, session, messages)
        # "rain" is only in tool results: the twin's word matching (no stemming,
        # "get_weather" one word) agrees with PostgreSQL's on it.
        request = ContextRequest(
            budget=budget, strategy=strategy, query="rain", shorten_results=shorten
        )
        expected = [(i.part, i.seq, i.tokens, i.content) for i in twin.context(T, session, request)]
        found = pg.context(T, session, request)
        assert [(i.part, i.seq, i.tokens, i.content) for i in found] == expected
    finally:
        pg.close()


def test_old_long_tool_results_are_shortened_before_turns_are_dropped(
    backend: MemoryBackend,
) -> None:
    long_text = "Oslo hourly forecast: " + "rain, 12 C; " * 400
    backend.append_many(
        T,
        S,
        [
            _say("user", "Forecast for Oslo?"),
            _call(ToolCall("call_a", "forecast", {"city": "Oslo"})),
            _result("call_a", long_text, tokens=500),
            _say("assistant", "Rain all day."),
            _say("user", "And Bergen now?"),
            _call(ToolCall("call_b", "get_weather", {"city": "Bergen"})),
            _result("call_b", "9 C", tokens=20),
            _say("assistant", "9 C in Bergen."),
        ],
    )
    plain = backend.context(T, S, ContextRequest(budget=150))
    assert [i.seq for i in plain] == [4, 5, 6, 7, 8]  # the long result drops its whole group
    window = backend.context(T, S, ContextRequest(budget=150, shorten_results=50))
    assert [i.seq for i in window] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert window.tokens <= 150
    short = window.items[2]
    assert short.tokens == 50 + 16
    assert short.content.startswith("Oslo hourly forecast: rain, 12 C;")
    assert short.content.endswith("[pymem: 450 of this result's 500 tokens left out]")
    assert len(short.content) < len(long_text) // 5
    assert short.parts == [
        {"type": "tool_result", "call_id": "call_a", "content": short.content, "is_error": False}
    ]
    assert window.items[6].content == "9 C"  # the newest call's result stays whole
    assert backend.history(T, S)[2].content == long_text  # only the window is shortened
    with pytest.raises(errors.InvalidArgument):
        backend.context(T, S, ContextRequest(budget=150, shorten_results=0))
