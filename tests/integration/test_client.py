"""Memory / Session, sync and async, as applications use them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from pymem import AsyncMemory, Memory, NewMessage, errors


@pytest.fixture(params=["memory", "postgres"])
def mem(request: pytest.FixtureRequest) -> Iterator[Memory]:
    if request.param == "memory":
        yield Memory.in_memory()
        return
    with Memory.connect(request.getfixturevalue("dsn"), max_size=4) as connected:
        yield connected


@pytest.fixture(params=["memory", "postgres"])
async def amem(request: pytest.FixtureRequest) -> AsyncIterator[AsyncMemory]:
    if request.param == "memory":
        yield AsyncMemory.in_memory()
        return
    connected = await AsyncMemory.connect(request.getfixturevalue("dsn"), max_size=4)
    async with connected:
        yield connected


def test_three_line_quickstart(mem: Memory) -> None:
    chat = mem.session("support-42", tenant="acme", user="u-7")
    chat.append("user", "My order arrived broken")
    window = chat.context(budget=2000, query="order problem")
    assert window.messages() == [{"role": "user", "content": "My order arrived broken"}]
    assert window.tokens == mem.counter.count("My order arrived broken") == 4


def test_tokens_are_counted_with_tiktoken(mem: Memory) -> None:
    chat = mem.session("s")
    text = "Tokenizers split text into pieces; pymem stores the exact count."
    chat.append("user", text)
    (stored,) = chat.messages()
    assert stored.tokens == mem.counter.count(text) and not stored.tokens_estimated
    assert chat.info().tenant_id == "default"


def test_messages_pages_through_everything(mem: Memory) -> None:
    chat = mem.session("long")
    chat.append_many([NewMessage("user", f"m{i}") for i in range(1, 1201)])
    everything = chat.messages(page_size=500)
    assert [m.seq for m in everything] == list(range(1, 1201))
    assert [m.content for m in chat.messages(last=2)] == ["m1199", "m1200"]
    assert [m.seq for m in chat.messages(after_seq=1195)] == [1196, 1197, 1198, 1199, 1200]


def test_session_lifecycle(mem: Memory) -> None:
    chat = mem.session("life", tenant="t", user="u")
    chat.append("user", "hello")
    chat.configure(max_messages=10, metadata={"channel": "web"})
    assert chat.info().metadata == {"channel": "web"}
    assert chat.extend(timedelta(days=1)) > chat.info().created_at
    assert [s.session_id for s in mem.sessions(tenant="t", user="u")] == ["life"]
    chat.delete()
    assert list(mem.sessions(tenant="t")) == []
    chat.restore()
    assert chat.purge() == 1
    with pytest.raises(errors.SessionNotFound):
        chat.info()


def test_sessions_iterates_all_pages(mem: Memory) -> None:
    for i in range(7):
        mem.session(f"s{i}", tenant="many").append("user", "x")
    assert len(list(mem.sessions(tenant="many", page_size=3))) == 7


def test_counter_can_be_chosen(dsn: str) -> None:
    with Memory.connect(dsn, counter="cl100k_base") as mem:
        assert mem.counter.name == "cl100k_base"


def test_connect_without_dsn_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYMEM_DSN", raising=False)
    with pytest.raises(errors.InvalidArgument, match="no PostgreSQL DSN") as caught:
        Memory.connect()
    assert "PYMEM_DSN" in caught.value.hint


def test_connect_to_nothing_is_database_unavailable() -> None:
    with pytest.raises(errors.DatabaseUnavailable) as caught:
        Memory.connect("host=127.0.0.1 port=1 dbname=x connect_timeout=1")
    assert "pymem doctor" in caught.value.hint


def test_unmigrated_database_says_to_migrate(empty_dsn: str) -> None:
    with Memory.connect(empty_dsn) as mem, pytest.raises(errors.SchemaNotInstalled) as caught:
        mem.session("s").append("user", "hi")
    assert "pymem migrate" in caught.value.hint


def test_connect_with_migrate_installs_schema(empty_dsn: str) -> None:
    with Memory.connect(empty_dsn, migrate=True) as mem:
        assert mem.session("s").append("user", "hi").seq == 1


def test_dsn_from_environment(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYMEM_DSN", dsn)
    monkeypatch.setenv("PYMEM_TENANT", "from-env")
    with Memory.connect() as mem:
        assert mem.session("s").append("user", "hi").seq == 1
        assert mem.stats()[0].tenant_id == "from-env"


async def test_async_twin(amem: AsyncMemory) -> None:
    chat = amem.session("a-1", tenant="acme", user="u")
    first = await chat.append("user", "async hello", idempotency_key="k")
    again = await chat.append("user", "async hello", idempotency_key="k")
    assert (first.seq, again.duplicate) == (1, True)
    await chat.append_many([NewMessage("assistant", "hi!"), NewMessage("user", "bye")])
    window = await chat.context(budget=1000)
    assert [m["content"] for m in window.messages()] == ["async hello", "hi!", "bye"]
    assert [m.seq for m in await chat.messages(last=1)] == [3]
    assert [s.session_id async for s in amem.sessions(tenant="acme")] == ["a-1"]
    assert (await chat.info()).message_count == 3
    await chat.delete()
    with pytest.raises(errors.SessionDeleted):
        await chat.context(budget=10)
    await chat.restore()
    assert await chat.purge() == 3


async def test_async_concurrent_appends(amem: AsyncMemory) -> None:
    chat = amem.session("burst")
    results = await asyncio.gather(*(chat.append("user", f"m{i}") for i in range(50)))
    assert sorted(r.seq for r in results) == list(range(1, 51))
