"""Embeddings reach PostgreSQL intact: one message's and a query's in binary,
append_many's and set_embeddings' as text, through the sync and the async
backend."""

from __future__ import annotations

import random
import struct

import psycopg
import pytest

from pymem import errors
from pymem.backends.postgres import PostgresBackend
from pymem.backends.postgres_async import AsyncPostgresBackend
from pymem.models import NewMessage, RecallRequest

T, S = "acme", "vectors"


def _as_float4(values: list[float]) -> list[float]:
    return list(struct.unpack(f"{len(values)}f", struct.pack(f"{len(values)}f", *values)))


def _stored(dsn: str) -> dict[int, list[float]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select seq, embedding::real[] from memory.messages "
            "where tenant_id = %s and session_id = %s and embedding is not null",
            (T, S),
        ).fetchall()
    return {seq: _as_float4(values) for seq, values in rows}


def _vectors(n: int, seed: int) -> list[list[float]]:
    rng = random.Random(seed)
    return [[rng.uniform(-1, 1) for _ in range(1536)] for _ in range(n)]


def test_sync_single_and_batch_store_the_same_floats(dsn: str) -> None:
    one, *batch = _vectors(3, seed=1)
    backend = PostgresBackend(dsn, max_size=2).open()
    try:
        backend.append(T, S, NewMessage("user", "single", tokens=1, embedding=one))
        backend.append_many(
            T,
            S,
            [NewMessage("user", f"batch {i}", tokens=1, embedding=v) for i, v in enumerate(batch)],
        )
        stored = _stored(dsn)
        assert stored[1] == _as_float4(one)
        assert [stored[2], stored[3]] == [_as_float4(v) for v in batch]
        # The query vector arrives as sent: the message's own vector ranks it first.
        found = backend.recall(T, S, RecallRequest("", query_embedding=batch[1], max_rows=3))
        assert [f.seq for f in found][:1] == [3] and found[0].vector_rank == 1
        with pytest.raises(errors.InvalidArgument, match="finite"):
            backend.append(T, S, NewMessage("user", "x", tokens=1, embedding=[float("nan")] * 1536))
        with pytest.raises(errors.EmbeddingDimensionMismatch):
            backend.append(T, S, NewMessage("user", "x", tokens=1, embedding=[0.5] * 3))
        assert len(_stored(dsn)) == 3  # nothing half-written
    finally:
        backend.close()


async def test_async_single_append_and_query(dsn: str) -> None:
    (one, other) = _vectors(2, seed=2)
    backend = await AsyncPostgresBackend(dsn, max_size=2).open()
    try:
        await backend.append(T, S, NewMessage("user", "async one", tokens=1, embedding=one))
        await backend.append(T, S, NewMessage("user", "async two", tokens=1, embedding=other))
        assert _stored(dsn) == {1: _as_float4(one), 2: _as_float4(other)}
        found = await backend.recall(T, S, RecallRequest("", query_embedding=other, max_rows=2))
        assert [f.seq for f in found] == [2, 1]
        assert await backend.set_embeddings(T, S, [1], [other]) == 1
        assert _stored(dsn) == {1: _as_float4(other), 2: _as_float4(other)}
    finally:
        await backend.close()


def test_set_embeddings_stores_each_vector_or_none(dsn: str) -> None:
    backend = PostgresBackend(dsn, max_size=2).open()
    try:
        for i in range(3):
            backend.append(T, S, NewMessage("user", f"turn {i}", tokens=1))
        vectors = _vectors(2, seed=3)
        assert backend.set_embeddings(T, S, [3, 1], vectors) == 2
        assert _stored(dsn) == {3: _as_float4(vectors[0]), 1: _as_float4(vectors[1])}
        assert backend.set_embeddings(T, S, [], []) == 0
        with pytest.raises(errors.EmbeddingDimensionMismatch):
            backend.set_embeddings(T, S, [1, 2], [vectors[0], [0.5] * 3])
        with pytest.raises(errors.EmbeddingDimensionMismatch):
            backend.set_embeddings(T, S, [2], [[0.5] * 3])  # the server's ME007
        with pytest.raises(errors.InvalidArgument, match="finite"):
            backend.set_embeddings(T, S, [2], [[float("inf")] + [0.5] * 1535])
        with pytest.raises(errors.InvalidArgument, match="same length"):
            backend.set_embeddings(T, S, [1, 2, 3], vectors)
        assert set(_stored(dsn)) == {1, 3}  # nothing half-written
    finally:
        backend.close()
