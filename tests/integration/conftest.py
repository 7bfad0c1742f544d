from __future__ import annotations

from collections.abc import Iterator

import pytest

from pymem.backends.base import MemoryBackend
from pymem.backends.memory import InMemoryBackend
from pymem.backends.postgres import PostgresBackend
from pymem.backends.redis import RedisBackend
from pymem.tier.cache import CachedBackend, connect_redis


@pytest.fixture(params=["memory", "postgres", "postgres+redis", "redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[MemoryBackend]:
    """Every backend, so the same test proves the same contract on each."""
    if request.param == "memory":
        yield InMemoryBackend()
        return
    if request.param == "redis":
        standalone = RedisBackend.from_url(request.getfixturevalue("redis_url"))
        try:
            yield standalone
        finally:
            standalone.close()
        return
    dsn = request.getfixturevalue("dsn")
    pg = PostgresBackend(dsn, max_size=4).open()
    if request.param == "postgres+redis":
        cached = CachedBackend(pg, connect_redis(request.getfixturevalue("redis_url")))
        try:
            yield cached
        finally:
            cached.close()
        return
    try:
        yield pg
    finally:
        pg.close()
