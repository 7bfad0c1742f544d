from __future__ import annotations

import pytest

from pymem import errors
from pymem.context.tokens import CallableCounter, TiktokenCounter, TokenCounter, counter_for


@pytest.mark.parametrize(
    ("encoding", "text", "expected"),
    [
        ("o200k_base", "Hello world", 2),
        ("cl100k_base", "Hello world", 2),
        ("o200k_base", "", 0),
    ],
)
def test_tiktoken_counts_offline(encoding: str, text: str, expected: int) -> None:
    assert TiktokenCounter(encoding).count(text) == expected


def test_special_tokens_are_counted_as_text() -> None:
    assert TiktokenCounter().count("<|endoftext|>") > 1


def test_counter_for_models_and_encodings() -> None:
    assert counter_for("gpt-4o").name == "o200k_base"
    assert counter_for("gpt-4").name == "cl100k_base"
    assert isinstance(counter_for("o200k_base"), TokenCounter)
    with pytest.raises(errors.InvalidArgument):
        counter_for("no-such-model")


def test_callable_counter() -> None:
    words = CallableCounter("words", lambda t: len(t.split()))
    assert words.count("a b c") == 3 and words.name == "words"
    with pytest.raises(errors.InvalidArgument):
        CallableCounter("broken", lambda t: -1).count("x")
