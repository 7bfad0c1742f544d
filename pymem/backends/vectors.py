"""Embeddings sent to PostgreSQL in pgvector's binary form.

A 1,536-float embedding written as text cost the client about 2 ms (one
``repr`` per float) and the server a parse of every number; packed as
pgvector's binary input (two 16-bit integers, the dimension and a zero, then
big-endian float4s) it costs a few microseconds. The value is sent with no
type of its own: the query's ``::public.vector`` cast gives the parameter
its type, so no type lookup is needed on any connection.

Batches (``append_many``, ``set_embeddings``) send text
(:func:`pymem.validation.vector_literal`): their embeddings travel in one
``text[]``, which SQL unnests.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from psycopg import adapters
from psycopg.adapt import Dumper
from psycopg.pq import Format

from ..errors import InvalidArgument
from ..validation import float4_bytes


class VectorParam:
    """One embedding, packed in pgvector's binary input format."""

    __slots__ = ("data", "dimension")

    def __init__(self, data: bytes, dimension: int) -> None:
        self.data = data
        self.dimension = dimension

    def __repr__(self) -> str:
        return f"VectorParam(<{self.dimension} floats>)"


class _VectorDumper(Dumper):
    format = Format.BINARY
    oid = 0  # unknown: typed by the ::public.vector cast beside the placeholder

    def dump(self, obj: VectorParam) -> bytes:
        return obj.data


adapters.register_dumper(VectorParam, _VectorDumper)

# pgvector's limit; the text form meets the same one on the server.
MAX_DIMENSION = 16000


def vector_param(embedding: Sequence[float] | None) -> VectorParam | None:
    """``embedding`` packed for the server, or None; non-finite values raise."""
    if embedding is None:
        return None
    values = embedding if isinstance(embedding, list | tuple) else list(embedding)
    n = len(values)
    if n > MAX_DIMENSION:
        raise InvalidArgument(
            f"memory: embedding has {n} dimensions, pgvector stores at most {MAX_DIMENSION}",
            hint="use an embedding model of fewer dimensions",
        )
    return VectorParam(struct.pack(">hh", n, 0) + float4_bytes(values), n)
