"""The async API is a twin of the sync API: same public names and parameters."""

from __future__ import annotations

import inspect

import pytest

from pymem import AsyncMemory, AsyncSession, Memory, Session
from pymem.backends.base import AsyncMemoryBackend, MemoryBackend
from pymem.backends.postgres import AsyncPostgresBackend, PostgresBackend


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, callable)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(
    ("sync", "async_"),
    [
        (Memory, AsyncMemory),
        (Session, AsyncSession),
        (MemoryBackend, AsyncMemoryBackend),
        (PostgresBackend, AsyncPostgresBackend),
    ],
)
def test_twins_have_the_same_signatures(sync: type, async_: type) -> None:
    sync_api, async_api = _public(sync), _public(async_)
    assert set(sync_api) == set(async_api)
    for name, signature in sync_api.items():
        other = async_api[name]
        assert list(signature.parameters) == list(other.parameters), name
        for param in signature.parameters:
            assert signature.parameters[param].default == other.parameters[param].default, (
                name,
                param,
            )


@pytest.mark.parametrize(("sync", "async_"), [(Memory, AsyncMemory), (Session, AsyncSession)])
def test_twins_share_docstrings(sync: type, async_: type) -> None:
    for name in _public(sync):
        assert inspect.getdoc(getattr(sync, name)) == inspect.getdoc(getattr(async_, name)), name
