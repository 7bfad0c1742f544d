"""The rules of scripts/async_to_sync.py, on small inputs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "async_to_sync.py"
_SPEC = importlib.util.spec_from_file_location("async_to_sync", _PATH)
assert _SPEC is not None and _SPEC.loader is not None
generator = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(generator)


def test_keywords_go_and_names_follow_the_map() -> None:
    source = (
        "class AsyncMemory:\n"
        '    """Wraps an AsyncPostgresBackend."""\n'
        "    async def close(self) -> None:\n"
        "        async with self.lock:\n"
        "            await self.backend.aclose()\n"
        "        async for row in self.rows():\n"
        "            pass\n"
    )
    assert generator.transform(source) == (
        "class Memory:\n"
        '    """Wraps an PostgresBackend."""\n'
        "    def close(self) -> None:\n"
        "        with self.lock:\n"
        "            self.backend.close()\n"
        "        for row in self.rows():\n"
        "            pass\n"
    )


def test_awaitable_subscripts_lose_their_wrapper() -> None:
    source = "x: Callable[[], Awaitable[dict[str, int]]]\n"
    assert generator.transform(source) == "x: Callable[[], dict[str, int]]\n"


def test_directives_replace_or_drop_a_line() -> None:
    source = (
        "import asyncio  # sync: drop\n    await asyncio.to_thread(f, x)  # sync: f(x)\n".replace(
            "    ", "", 1
        )
    )
    assert generator.transform(source) == "f(x)\n"


def test_module_names_change_in_code_but_not_in_docstrings() -> None:
    source = '"""pymem.backends.postgres_async is the source."""\nfrom .postgres_async import X\n'
    assert generator.transform(source) == (
        '"""pymem.backends.postgres_async is the source."""\nfrom .postgres import X\n'
    )


def test_async_code_without_a_twin_is_refused() -> None:
    with pytest.raises(SystemExit, match="asyncio"):
        generator.transform("asyncio.sleep(1)\n")
