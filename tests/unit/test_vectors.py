"""Embeddings packed in pgvector's binary input format."""

from __future__ import annotations

import math
import struct

import pytest

from pymem import errors
from pymem.backends.vectors import MAX_DIMENSION, vector_param


def test_packs_dimension_zero_and_big_endian_float4s() -> None:
    packed = vector_param([1, 2.5, -0.125])
    assert packed is not None and packed.dimension == 3
    assert packed.data == b"\x00\x03\x00\x00" + struct.pack(">3f", 1.0, 2.5, -0.125)
    assert vector_param((0.5,)) is not None  # any sequence
    assert vector_param(iter([0.5, 0.25])).dimension == 2  # type: ignore[arg-type, union-attr]
    assert vector_param(None) is None


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [1.0, math.nan],
        [math.inf, 1.0],
        [-math.inf, math.inf],
        [1e39],  # beyond float4
        ["0.5"],
        [None],
    ],
)
def test_rejects_what_pgvector_cannot_store(bad: list[object]) -> None:
    with pytest.raises(errors.InvalidArgument, match="finite numbers") as caught:
        vector_param(bad)  # type: ignore[arg-type]
    assert caught.value.hint


def test_rejects_more_dimensions_than_pgvector_stores() -> None:
    vector_param([0.0] * MAX_DIMENSION)
    with pytest.raises(errors.InvalidArgument, match="at most 16000"):
        vector_param([0.0] * (MAX_DIMENSION + 1))
