"""What one code path made true: the async API has every feature of the sync one,
the standalone Redis store is public, the worker invalidates cached windows,
pages carry their cursor, and a retried append gives back every counter."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta

import psycopg
import pytest

from pymem import AsyncMemory, Memory, errors
from pymem.ops.worker import Worker
from pymem.tier.cache import CachedBackend
from pymem.tier.cache_async import AsyncCachedBackend
from pymem.tier.limits import Limit, RateLimited, RateLimits


async def test_async_memory_has_the_redis_tier_and_rate_limits(dsn: str, redis_url: str) -> None:
    limits = RateLimits(per_session=Limit(3, timedelta(minutes=1)))
    mem = await AsyncMemory.connect(dsn, redis=redis_url, rate_limits=limits, max_size=2)
    async with mem:
        assert isinstance(mem.backend, AsyncCachedBackend)
        chat = mem.session("s", tenant="acme")
        for text in ("one", "two", "three"):
            await chat.append("user", text)
        with pytest.raises(RateLimited):
            await chat.append("user", "four")
        first = await chat.context(budget=100)
        second = await chat.context(budget=100)
        assert first == second and [i.content for i in first] == ["one", "two", "three"]
        assert mem.backend.cache_stats.hits == 1


async def test_pymem_redis_is_read_by_the_async_api(
    dsn: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYMEM_REDIS", redis_url)
    mem = await AsyncMemory.connect(dsn, max_size=2)
    async with mem:
        assert isinstance(mem.backend, AsyncCachedBackend)


def test_memory_redis_builds_the_standalone_store(redis_url: str) -> None:
    with Memory.redis(redis_url) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "kept in Redis alone")
        assert [m.content for m in chat.messages()] == ["kept in Redis alone"]


async def test_async_memory_redis_builds_the_standalone_store(redis_url: str) -> None:
    async with AsyncMemory.redis(redis_url) as mem:
        chat = mem.session("s", tenant="acme")
        await chat.append("user", "kept in Redis alone")
        assert [i.content for i in await chat.context(budget=50)] == ["kept in Redis alone"]


def test_memory_redis_without_a_url_says_how(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYMEM_REDIS", raising=False)
    with pytest.raises(errors.PymemError, match="no Redis URL"):
        Memory.redis()


def test_the_worker_invalidates_the_windows_it_changes(dsn: str, redis_url: str) -> None:
    with Memory.connect(dsn, redis=redis_url, max_size=4) as mem:
        mem.configure_recall(tenant="acme", summary_every_tokens=100)
        chat = mem.session("s", tenant="acme")
        for i in range(40):
            chat.append("user", f"Turn {i}: the violin and the passport were discussed.")
        before = chat.context(budget=300, strategy="summary")
        assert "summary" not in {i.part for i in before}
        assert chat.context(budget=300, strategy="summary") == before  # now cached
        assert Worker(mem, name="w").drain() >= 1
        after = chat.context(budget=300, strategy="summary")
        assert after.items[0].part == "summary"


def test_a_page_carries_the_cursor_of_the_next(dsn: str) -> None:
    with Memory.connect(dsn, max_size=2) as mem:
        chat = mem.session("s", tenant="acme")
        for i in range(25):
            chat.append("user", f"m{i}", tokens=1)
        first = chat.page(size=10)
        assert [m.seq for m in first] == list(range(1, 11)) and first.next_after == 10
        last = chat.page(after_seq=20, size=10)
        assert [m.seq for m in last] == [21, 22, 23, 24, 25] and last.next_after is None
        assert len(chat.messages(page_size=10)) == 25


def test_a_retried_append_gives_back_every_counter(dsn: str) -> None:
    """Two appends with one key race: the loser gives back seq, counts and
    unsummarized tokens, so the session's counters equal what is stored."""
    key, text = "pay-1", "charge the card"
    holder = psycopg.connect(dsn, autocommit=False)
    holder.execute("select set_config('pymem.tenant', 'acme', true)")
    holder.execute(
        "select memory.append('acme', 's', 'user', %s, 7, idempotency_key => %s)", (text, key)
    )
    outcome: list[tuple[int, bool]] = []

    def racer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(
                "select r.seq, r.duplicate from set_config('pymem.tenant', 'acme', true) t, "
                "memory.append('acme', 's', 'user', %s, 7, idempotency_key => %s) r",
                (text, key),
            ).fetchone()
            assert row is not None
            outcome.append((row[0], row[1]))

    thread = threading.Thread(target=racer)
    thread.start()
    thread.join(timeout=1.0)
    assert thread.is_alive(), "the racer waits for the session row lock"
    holder.commit()
    holder.close()
    thread.join(timeout=10)
    assert outcome == [(1, True)]
    with psycopg.connect(dsn) as conn:
        counters = conn.execute(
            "select last_seq, message_count, token_count, unsummarized_tokens "
            "from memory.sessions where tenant_id = 'acme' and session_id = 's'"
        ).fetchone()
    assert counters == (1, 1, 7, 7)


def test_demo_reads_pymem_dsn(dsn: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pymem", "demo"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "120", "PYMEM_DSN": dsn},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Connecting to" in done.stdout and "embedded" not in done.stdout.split("ready")[0]


def test_the_sync_tier_is_the_generated_twin(dsn: str, redis_url: str) -> None:
    with Memory.connect(dsn, redis=redis_url, max_size=2) as mem:
        assert isinstance(mem.backend, CachedBackend)
