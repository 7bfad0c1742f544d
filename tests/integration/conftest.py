from __future__ import annotations

from collections.abc import Iterator

import pytest

from pymem.backends.base import MemoryBackend
from pymem.backends.memory import InMemoryBackend
from pymem.backends.postgres import PostgresBackend


@pytest.fixture(params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[MemoryBackend]:
    """Every backend, so the same test proves the same contract on each."""
    if request.param == "memory":
        yield InMemoryBackend()
        return
    dsn = request.getfixturevalue("dsn")
    pg = PostgresBackend(dsn, max_size=4).open()
    try:
        yield pg
    finally:
        pg.close()
