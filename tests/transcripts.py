"""Random agent transcripts for property tests of tool-call windows."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pymem.models import NewMessage
from pymem.transcript import ToolCall, ToolResult


def steps(max_tokens: int) -> st.SearchStrategy[tuple[Any, ...]]:
    """One step of a transcript: a user turn, an assistant answer, a plain-text
    tool turn (no call id), or `calls` tool calls of which `answered` get a
    result, made in one assistant turn ("tools") or one turn per call ("split",
    as Responses items are stored one by one)."""
    return st.one_of(
        st.tuples(st.sampled_from(["user", "answer", "plain tool"]), st.integers(1, max_tokens)),
        st.tuples(
            st.sampled_from(["tools", "split"]),
            st.integers(1, 3),  # calls
            st.integers(0, 3),  # answered
            st.integers(1, max_tokens),  # tokens
        ),
    )


def transcript(drawn: list[tuple[Any, ...]]) -> list[NewMessage]:
    """The messages of drawn steps; tool results hold "rain in Oslo" and cost
    twice their call's tokens."""
    out: list[NewMessage] = []
    for n, step in enumerate(drawn):
        if len(step) == 2:
            role = {"user": "user", "answer": "assistant", "plain tool": "tool"}[step[0]]
            out.append(NewMessage(role, f"turn {n} weather", tokens=step[1]))
            continue
        kind, calls, answered, tokens = step
        made = [ToolCall(f"c{n}_{i}", "get_weather", {"city": "Oslo"}) for i in range(calls)]
        groups = [tuple(made)] if kind == "tools" else [(c,) for c in made]
        out += [NewMessage("assistant", "", tokens=tokens, parts=g) for g in groups]
        out += [
            NewMessage(
                "tool", "", tokens=2 * tokens, parts=(ToolResult(c.id, "rain in Oslo " * tokens),)
            )
            for c in made[:answered]
        ]
    return out
