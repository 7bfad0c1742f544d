"""Deadlines: a call blocked by another transaction's lock ends in time, with a
typed timeout error and a hint, in the sync and the async API."""

from __future__ import annotations

import asyncio
import threading
import time

import psycopg
import pytest

from pymem import AsyncMemory, Memory, deadline
from pymem.resilience.watchdog import GRACE

SLACK = 0.3


def _lock_session(dsn: str, held: threading.Event, release: threading.Event) -> None:
    with psycopg.connect(dsn) as conn:
        conn.execute(
            "select from memory.sessions where tenant_id = 'acme' and session_id = 's' for update"
        )
        held.set()
        release.wait(30)


def test_a_call_blocked_by_a_lock_ends_at_its_deadline(dsn: str) -> None:
    with Memory.connect(dsn, max_size=2) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "first", tokens=1)
        held, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_lock_session, args=(dsn, held, release))
        holder.start()
        try:
            assert held.wait(10)
            started = time.monotonic()
            with pytest.raises(TimeoutError) as caught, deadline(0.5):
                chat.append("user", "blocked", tokens=1)
            took = time.monotonic() - started
        finally:
            release.set()
            holder.join()
        assert took < 0.5 + GRACE + SLACK, took
        assert "pg_stat_activity" in (caught.value.hint or "")  # type: ignore[attr-defined]
        # The connection still works, with the store's own deadline again.
        assert chat.append("user", "after", tokens=1).seq == 2
        assert [m.content for m in chat.messages()] == ["first", "after"]


def test_without_a_deadline_a_call_waits_for_the_lock(dsn: str) -> None:
    with Memory.connect(dsn, max_size=2, deadline=0.5) as mem:
        chat = mem.session("s", tenant="acme")
        chat.append("user", "first", tokens=1)
        held, release = threading.Event(), threading.Event()
        holder = threading.Thread(target=_lock_session, args=(dsn, held, release))
        holder.start()
        assert held.wait(10)
        threading.Timer(1.0, release.set).start()  # longer than the store's deadline
        with deadline(None):
            assert chat.append("user", "waited", tokens=1).seq == 2
        holder.join()


def test_the_async_api_ends_a_blocked_call_at_its_deadline(dsn: str) -> None:
    async def scenario() -> float:
        async with await AsyncMemory.connect(dsn, max_size=2, deadline=0.5) as mem:
            chat = mem.session("s", tenant="acme")
            await chat.append("user", "first", tokens=1)
            held, release = threading.Event(), threading.Event()
            holder = threading.Thread(target=_lock_session, args=(dsn, held, release))
            holder.start()
            try:
                assert await asyncio.to_thread(held.wait, 10)
                started = time.monotonic()
                with pytest.raises(TimeoutError):
                    await chat.append("user", "blocked", tokens=1)
                return time.monotonic() - started
            finally:
                release.set()
                holder.join()

    assert asyncio.run(scenario()) < 0.5 + GRACE + SLACK
