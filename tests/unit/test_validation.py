from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pymem import errors
from pymem.validation import (
    check_ident,
    estimate_tokens,
    metadata_json,
    vector_literal,
)


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("", 0),
        ("   \n\t", 0),
        ("hello", 2),
        ("hello there, world", 5),
        ("one two three four five six seven eight nine ten", 13),
        ("a b c d e f g h i j", 13),
    ],
)
def test_estimate_tokens(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


@given(st.text())
def test_estimate_is_never_negative(text: str) -> None:
    assert estimate_tokens(text) >= 0


@pytest.mark.parametrize("bad", ["", "x" * 256, "a\tb", "nul\x00", 42, None])
def test_check_ident_rejects(bad: object) -> None:
    with pytest.raises(errors.InvalidIdentifier):
        check_ident("session", bad)


def test_check_ident_accepts_unicode_and_max_length() -> None:
    assert check_ident("session", "ünïcødé-会话") == "ünïcødé-会话"
    assert check_ident("session", "x" * 255)


def test_metadata_json() -> None:
    assert metadata_json(None) == "{}"
    assert metadata_json({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    with pytest.raises(errors.InvalidMetadata):
        metadata_json({"a": float("inf")})


def test_vector_literal() -> None:
    assert vector_literal([1, 2.5]) == "[1,2.5]"
    # Rounded to float4 as pgvector stores it, then written exactly.
    assert vector_literal([0.1]) == "[0.100000001]"
    with pytest.raises(errors.InvalidArgument):
        vector_literal([1e39])
    assert vector_literal(None) is None
    with pytest.raises(errors.InvalidArgument):
        vector_literal([])
