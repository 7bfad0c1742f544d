"""The job queue and `pymem worker` against a real PostgreSQL."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psycopg
import pytest

from pymem import Memory, errors
from pymem.backends.postgres import PostgresBackend
from pymem.context.embed import HashingEmbedder
from pymem.context.summarize import ExtractiveSummarizer
from pymem.models import ClaimedJob, NewMessage, StoredMessage, Summary
from pymem.ops.worker import Worker

TOPICS = ["tent", "pole", "invoice", "garden", "violin", "marathon", "passport", "bakery"]


@pytest.fixture
def mem(dsn: str):  # type: ignore[no-untyped-def]
    with Memory.connect(dsn, max_size=8) as m:
        m.configure_recall(tenant="acme", summary_every_tokens=100)
        yield m


def _talk(mem: Memory, session: str, turns: int) -> None:
    chat = mem.session(session, tenant="acme")
    for i in range(turns):
        chat.append(
            "user" if i % 2 else "assistant",
            f"Turn {i}: we discussed the {TOPICS[i % 8]} at length. It was fine.",
        )


def _jobs(dsn: str) -> list[tuple[str, str, str, int]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute(  # type: ignore[return-value]
            "select session_id, kind, status, attempts from memory.jobs order by 1, 2"
        ).fetchall()


def test_append_queues_a_job_and_the_worker_writes_digests(mem: Memory, dsn: str) -> None:
    _talk(mem, "s", 60)  # ~16 tokens a turn: well over 100 unsummarized tokens
    assert _jobs(dsn) == [("s", "summarize", "queued", 0)]
    processed = Worker(mem, name="w1").drain()
    assert processed >= 1
    digests = mem.session("s", tenant="acme").summaries()
    level1 = [d for d in digests if d.level == 1]
    assert level1 and level1[0].seq_from == 1
    assert all(a.seq_to + 1 == b.seq_from for a, b in itertools.pairwise(level1))
    assert any(d.level == 2 for d in digests), "four level-1 digests roll up into level 2"
    info = mem.session("s", tenant="acme").info()
    assert info.summarized_upto == level1[-1].seq_to
    assert _jobs(dsn) == [("s", "summarize", "done", 0)]
    window = mem.session("s", tenant="acme").context(budget=300, strategy="summary")
    assert window.items[0].part == "summary" and window.tokens <= 300


def test_two_workers_share_the_queue_without_doing_a_job_twice(mem: Memory, dsn: str) -> None:
    sessions = [f"s{i}" for i in range(12)]
    for session in sessions:
        _talk(mem, session, 20)
    claims: Counter[tuple[str, str]] = Counter()
    lock = threading.Lock()

    class CountingWorker(Worker):
        def process(self, job: ClaimedJob) -> str:
            with lock:
                claims[(job.session_id, job.kind)] += 1
            return super().process(job)

    def run(name: str) -> int:
        return CountingWorker(mem, name=name).drain()

    with ThreadPoolExecutor(2) as pool:
        done = sum(pool.map(run, ["w-a", "w-b"]))
    assert done == len(sessions) == len(claims)
    assert set(claims.values()) == {1}, "no job claimed twice"
    assert {status for _, _, status, _ in _jobs(dsn)} == {"done"}, "none lost"
    for session in sessions:
        assert mem.session(session, tenant="acme").summaries()


def test_a_crashed_worker_loses_its_job_to_another(mem: Memory, dsn: str) -> None:
    _talk(mem, "s", 20)
    backend = mem.backend
    assert isinstance(backend, PostgresBackend)
    (job,) = backend.claim_jobs("crashing", lease=timedelta(milliseconds=300))
    # The crashing worker never completes. While its lease holds, nobody else gets the job.
    assert backend.claim_jobs("rescuer") == []
    time.sleep(0.4)
    (again,) = backend.claim_jobs("rescuer")
    assert (again.session_id, again.attempts) == (job.session_id, 2)
    assert Worker(mem, name="rescuer").process(again) == "done"
    with pytest.raises(errors.JobNotHeld):
        backend.complete_job(job, "crashing")  # the late worker cannot clobber it


def test_failures_back_off_then_park(mem: Memory, dsn: str) -> None:
    class Broken(ExtractiveSummarizer):
        def summarize(self, turns: list[StoredMessage], *, max_tokens: int) -> str:
            raise RuntimeError("model unavailable")

    _talk(mem, "s", 20)
    worker = Worker(mem, name="w", summarizer=Broken(), max_attempts=2)
    assert worker.run_once() == 1
    (row,) = _jobs(dsn)
    assert row[2] == "queued" and row[3] == 1
    with psycopg.connect(dsn) as conn:
        error, delay = conn.execute(
            "select last_error, run_after - now() from memory.jobs"
        ).fetchone()  # type: ignore[misc]
    assert "model unavailable" in error and delay > timedelta(0), "retried later, not at once"
    assert worker.run_once() == 0, "backoff: not due yet"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("update memory.jobs set run_after = now()")
    assert worker.run_once() == 1
    assert _jobs(dsn)[0][2] == "parked"
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert conn.execute("select memory.retry_job('acme', 's', 'summarize')").fetchone() == (
            True,
        )
    assert Worker(mem, name="healthy").drain() == 1
    assert _jobs(dsn)[0][2] == "done"


def test_embeddings_are_filled_in_the_background(mem: Memory, dsn: str) -> None:
    mem.configure_recall(tenant="acme", summary_every_tokens=None, embed_messages=True)
    chat = mem.session("e", tenant="acme")
    for text in ["we booked the violin lesson", "bread from the bakery", "a marathon in May"]:
        chat.append("user", text)
    assert _jobs(dsn) == [("e", "embed", "queued", 0)]
    embedder = HashingEmbedder(1536)
    assert Worker(mem, name="w", embedder=embedder).drain() == 1
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "select count(*) from memory.messages where embedding is null"
        ).fetchone() == (0,)
    (query,) = embedder.embed(["violin lesson"])
    found = chat.recall("violin", query_embedding=query)
    assert found[0].content == "we booked the violin lesson" and found[0].vector_rank == 1
    window = chat.context(budget=12, query="violin", query_embedding=query, strategy="hybrid")
    assert window.tokens <= 12


def test_long_sessions_get_term_statistics_in_the_background(mem: Memory, dsn: str) -> None:
    mem.configure_recall(tenant="acme", summary_every_tokens=None)
    chat = mem.session("long", tenant="acme")
    chat.append_many(
        [
            NewMessage("user" if i % 2 else "assistant", f"turn {i} about the {TOPICS[i % 8]}")
            for i in range(1, 751)
        ]
    )
    assert _jobs(dsn) == [("long", "count_terms", "queued", 0)]
    assert Worker(mem, name="w").drain() == 1
    with psycopg.connect(dsn) as conn:
        assert conn.execute(
            "select first_seq, last_seq from memory.term_stats where session_id = 'long'"
        ).fetchone() == (1, 750)
        assert conn.execute(
            "select turns from memory.session_terms where session_id = 'long' and lexeme = 'violin'"
        ).fetchone() == (94,)
    assert _jobs(dsn) == [("long", "count_terms", "done", 0)]


def test_notify_wakes_a_waiting_worker(mem: Memory) -> None:
    stop = threading.Event()
    worker = Worker(mem, name="listener")
    thread = threading.Thread(
        target=worker.run_forever, kwargs={"poll": timedelta(seconds=30), "stop": stop}
    )
    thread.start()
    try:
        time.sleep(0.3)  # it is now waiting on LISTEN with a 30 s poll
        _talk(mem, "wake", 20)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not mem.session("wake", tenant="acme").summaries():
            time.sleep(0.05)
        assert mem.session("wake", tenant="acme").summaries(), "woken by NOTIFY, not the poll"
    finally:
        stop.set()
        mem.session("wake2", tenant="acme").append("user", "x" * 1000)  # one more NOTIFY
        thread.join(timeout=35)
    assert not thread.is_alive()


def test_the_worker_needs_postgres() -> None:
    with pytest.raises(errors.PymemError, match="PostgreSQL"):
        Worker(Memory.in_memory())


def test_extractive_summaries_are_deterministic_and_bounded() -> None:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    turns = [
        StoredMessage(
            i, "user", f"Sentence about the {TOPICS[i % 8]} number {i}. Thanks!", 12, False, {}, now
        )
        for i in range(40)
    ]
    summarizer = ExtractiveSummarizer()
    first = summarizer.summarize(turns, max_tokens=60)
    assert first == summarizer.summarize(turns, max_tokens=60)
    assert 0 < summarizer.counter.count(first) <= 60 + first.count("\n") + 1
    lines = first.split("\n")
    assert sum("about the" in line for line in lines) > len(lines) / 2, "content beats filler"
    digests = [Summary(i, 1, i * 10 + 1, i * 10 + 10, first, 50, now) for i in range(3)]
    assert summarizer.counter.count(summarizer.combine(digests, max_tokens=30)) <= 33


def test_session_cadence_overrides_the_tenant(mem: Memory, dsn: str) -> None:
    chat = mem.session("quiet", tenant="acme")
    chat.append("user", "first")
    chat.configure(summary_every_tokens=100_000)
    _talk(mem, "quiet", 30)
    assert _jobs(dsn) == [], "no digest due at this session's cadence"
    with pytest.raises(errors.InvalidArgument):
        chat.configure(summary_every_tokens=10)
