"""Workers claiming from one queue: every due job is claimed once, across tenants."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import psycopg


def _queue(dsn: str, tenants: int, sessions: int) -> set[tuple[str, str, str]]:
    jobs = {
        (f"t{t}", f"s{s}", kind)
        for t in range(tenants)
        for s in range(sessions)
        for kind in ("summarize", "embed")
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.cursor().executemany(
            "insert into memory.jobs (tenant_id, session_id, kind) values (%s, %s, %s)",
            sorted(jobs),
        )
    return jobs


def _claim_all(dsn: str, worker: str, start: threading.Barrier) -> list[tuple[str, str, str]]:
    claimed: list[tuple[str, str, str]] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        start.wait()
        while True:
            rows = conn.execute(
                "select tenant_id, session_id, kind from memory.claim_jobs(%s, max_jobs => 3)",
                (worker,),
            ).fetchall()
            if not rows:
                # Nothing left, or every candidate held by another worker's
                # claim: look once more before stopping.
                rows = conn.execute(
                    "select tenant_id, session_id, kind from memory.claim_jobs(%s, max_jobs => 3)",
                    (worker,),
                ).fetchall()
                if not rows:
                    return claimed
            claimed += [(r[0], r[1], r[2]) for r in rows]


def test_concurrent_workers_claim_each_job_once(dsn: str) -> None:
    jobs = _queue(dsn, tenants=12, sessions=10)
    workers = 6
    start = threading.Barrier(workers)
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda w: _claim_all(dsn, f"w{w}", start), range(workers)))
    counts = Counter(job for claimed in results for job in claimed)
    assert set(counts) == jobs  # none left behind
    assert max(counts.values()) == 1  # none claimed twice
    assert sum(1 for claimed in results if claimed) > 1  # the workers really competed
    with psycopg.connect(dsn) as conn:
        left = conn.execute("select count(*) from memory.jobs where status <> 'running'")
        assert left.fetchone() == (0,)


def test_a_job_claimed_by_a_worker_is_not_due_for_another(dsn: str) -> None:
    _queue(dsn, tenants=1, sessions=1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        first = conn.execute("select kind from memory.claim_jobs('w1', max_jobs => 5)").fetchall()
        again = conn.execute("select kind from memory.claim_jobs('w2', max_jobs => 5)").fetchall()
    assert sorted(first) == [("embed",), ("summarize",)]
    assert again == []


def _digest_job(conn: psycopg.Connection[object]) -> str | None:
    row = conn.execute(
        "select status from memory.jobs"
        " where tenant_id = 'acme' and session_id = 's' and kind = 'summarize'"
    ).fetchone()
    return None if row is None else str(row[0])


def test_a_digest_is_asked_for_each_time_the_cadence_is_passed(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "insert into memory.tenants (tenant_id, summary_every_tokens) values ('acme', 100)"
        )

        def append(turns: int) -> None:
            for _ in range(turns):
                conn.execute("select memory.append('acme', 's', 'user', 'ten tokens', 10)")

        append(9)  # 90 unsummarized tokens
        assert _digest_job(conn) is None
        append(1)  # 100: the cadence is reached
        assert _digest_job(conn) == "queued"
        # A worker finished as if its check ran before these appends committed:
        # the appends between two multiples ask for nothing (they would only
        # find the job), the next multiple asks again.
        conn.execute("update memory.jobs set status = 'done' where kind = 'summarize'")
        append(9)  # 190
        assert _digest_job(conn) == "done"
        append(1)  # 200
        assert _digest_job(conn) == "queued"
        # One message that passes several multiples at once asks once.
        conn.execute("update memory.jobs set status = 'done' where kind = 'summarize'")
        conn.execute("select memory.append('acme', 's', 'user', 'a long one', 250)")  # 450
        assert _digest_job(conn) == "queued"
