"""pymem benchmarks: every figure beside the raw round trip of the same run.

Starts a private PostgreSQL 15 (loopback TCP, fsync and synchronous_commit on),
installs pymem with `pymem.db.migrate`, and measures:

1. append latency: raw prepared INSERT, pymem (backend, tokens given), pymem
   Session.append (tiktoken counting included), langchain-postgres add_messages;
2. context(recent, 2000 tokens) on 1k and 10k-message sessions beside a raw
   "last 50 rows" read and langchain-postgres reading the session;
3. appends across 1,000 concurrent sessions (16 threads): throughput, lost and
   duplicated counts, beside raw INSERTs by the same threads;
4. pgbench, 8 clients over 1,000 sessions, 16 clients on 16 sessions (a
   random one per append) and 16 clients each on a session of its own:
   memory.append beside a raw INSERT and a minimal PL/pgSQL append;
5. the Redis tier; 6. security features;
7. client metrics off and on (Session.append and context);
8. retention under eight writers; 9. resilience: the cost of deadlines,
   retries and made idempotency keys, fail-fast latency, restart recovery.

Usage: python benchmarks/run.py [--quick] [--full] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymem import Memory, NewMessage  # noqa: E402
from pymem.backends.postgres import PostgresBackend  # noqa: E402
from pymem.backends.vectors import vector_param  # noqa: E402
from pymem.context.tokens import TiktokenCounter  # noqa: E402
from pymem.db.embedded import EmbeddedPostgres, find_pg_bin  # noqa: E402
from pymem.models import ContextRequest  # noqa: E402
from pymem.validation import vector_literal  # noqa: E402

TEXT = "Could you check on my order? It was supposed to arrive yesterday."
RAW_TABLE = """
create table if not exists bench_raw (
    tenant_id text not null, session_id text not null, seq bigint not null,
    role text not null, content text not null, tokens integer not null,
    created_at timestamptz not null default now(),
    primary key (tenant_id, session_id, seq)
)"""
RAW_INSERT = (
    "insert into bench_raw (tenant_id, session_id, seq, role, content, tokens) "
    "values (%s, %s, %s, %s, %s, %s)"
)
# A batch as one prepared statement: seqs from the first given, in array order.
RAW_BATCH_INSERT = (
    "insert into bench_raw (tenant_id, session_id, seq, role, content, tokens) "
    "select %s, %s, %s + m.i, m.role, m.content, m.tokens "
    "from unnest(%s::text[], %s::text[], %s::integer[])"
    " with ordinality as m (role, content, tokens, i)"
)
BATCH = 100  # messages per batch in the batch-append comparison


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "p50_ms": pct(ms, 50),
        "p99_ms": pct(ms, 99),
        "mean_ms": statistics.fmean(ms),
        "n": len(ms),
    }


def timed(fn: Callable[[int], Any], n: int, warmup: int = 50) -> list[float]:
    """Seconds per call of ``fn(i)`` for i in 0..n-1, after ``warmup`` calls."""
    return timed_in_turn([fn], n, warmup)[0]


def timed_in_turn(
    fns: Sequence[Callable[[int], Any]], n: int, warmup: int = 50
) -> list[list[float]]:
    """Like ``timed`` for several calls at once, taking turns call by call, so
    that the machine's drift over the run falls on each of them alike."""
    for i in range(warmup):
        for fn in fns:
            fn(-1 - i)
    out: list[list[float]] = [[] for _ in fns]
    for i in range(n):
        for fn, samples in zip(fns, out, strict=True):
            t0 = time.perf_counter()
            fn(i)
            samples.append(time.perf_counter() - t0)
    return out


def line(name: str, stats: dict[str, float], base: dict[str, float] | None = None) -> str:
    ratio = f"{stats['p50_ms'] / base['p50_ms']:6.2f}x" if base else "  (base)"
    return f"  {name:<46} p50 {stats['p50_ms']:8.3f} ms  p99 {stats['p99_ms']:8.3f} ms  {ratio}"


# -- 1. append latency ---------------------------------------------------------


def bench_append(dsn: str, n: int) -> dict[str, Any]:
    print(f"\n[1] append latency, {n} sequential appends on one connection")
    backend = PostgresBackend(dsn, max_size=1).open()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RAW_TABLE)
        conn.execute(MIN_APPEND)
        # The raw INSERT, the least a function-based append can do (the
        # pgbench section's minimal PL/pgSQL append) and pymem's append,
        # taken in turn call by call.
        raw_times, minimal_times, direct_times = timed_in_turn(
            [
                lambda i: conn.execute(
                    RAW_INSERT, ("t", "raw", i + 100, "user", TEXT, 14), prepare=True
                ),
                lambda i: conn.execute(
                    "select bench_min_append('t', 'bench-minimal', %s)", (TEXT,), prepare=True
                ),
                lambda i: backend.append("t", "bench-direct", NewMessage("user", TEXT, tokens=14)),
            ],
            n,
        )
        raw, minimal, direct = summary(raw_times), summary(minimal_times), summary(direct_times)
    vector = [random.Random(7).uniform(-1, 1) for _ in range(1536)]
    embedded = summary(
        timed(
            lambda i: backend.append(
                "t", "bench-vector", NewMessage("user", TEXT, tokens=14, embedding=vector)
            ),
            n // 2,
        )
    )
    as_text = summary(timed(lambda i: vector_literal(vector), n // 2))
    as_binary = summary(timed(lambda i: vector_param(vector), n // 2))
    backend.close()
    with Memory.connect(dsn, max_size=1) as mem:
        chat = mem.session("bench-client", tenant="t")
        client = summary(timed(lambda i: chat.append("user", TEXT), n))
        keyed = summary(timed(lambda i: chat.append("user", TEXT, idempotency_key=f"k{i}"), n))
    raw_batch, batched, batched_keyed = batch_append(dsn, max(10, n // 10))
    lc = langchain_append(dsn, n)
    print(line("raw prepared INSERT (psycopg)", raw))
    print(line("minimal PL/pgSQL append (psycopg, no pymem)", minimal, raw))
    print(line("pymem backend.append (tokens given)", direct, raw))
    print(line("pymem Session.append (tiktoken + append)", client, raw))
    print(line("pymem Session.append with idempotency key", keyed, raw))
    print(line("pymem backend.append, 1,536-float embedding", embedded, raw))
    print(
        f"  encoding that embedding in the client: binary {as_binary['p50_ms'] * 1000:.0f} us "
        f"(as sent), text {as_text['p50_ms'] * 1000:.0f} us (batches)"
    )
    if lc:
        print(line("langchain-postgres add_messages (1 message)", lc, raw))
    print(line(f"raw INSERT of {BATCH} rows (one statement)", raw_batch))
    print(line(f"pymem backend.append_many, {BATCH} messages", batched, raw_batch))
    print(line(f"  the same with {BATCH} idempotency keys", batched_keyed, raw_batch))
    print(
        f"  per message: raw {raw_batch['p50_ms'] * 1000 / BATCH:.0f} us, "
        f"pymem {batched['p50_ms'] * 1000 / BATCH:.0f} us "
        f"(one append: {direct['p50_ms'] * 1000:.0f} us)"
    )
    return {
        "raw_insert": raw,
        "minimal_plpgsql_append": minimal,
        "raw_insert_batch": raw_batch,
        "pymem_append_many_batch": batched,
        "pymem_append_many_batch_keyed": batched_keyed,
        "batch_size": BATCH,
        "pymem_backend": direct,
        "pymem_session": client,
        "pymem_session_idempotent": keyed,
        "pymem_backend_embedding_1536": embedded,
        "embedding_encode_binary": as_binary,
        "embedding_encode_text": as_text,
        "langchain_postgres": lc,
    }


def batch_append(dsn: str, n: int) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Batches of BATCH plain messages: one raw prepared INSERT of the rows
    beside backend.append_many (stored in one insert under one session lock),
    and the same batches with an idempotency key per message (as the
    LangGraph integration sends them), the two taken in turn."""
    roles = ["user" if i % 2 else "assistant" for i in range(BATCH)]
    contents = [f"{TEXT} ({i})" for i in range(BATCH)]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(RAW_TABLE)
        raw = summary(
            timed(
                lambda i: conn.execute(
                    RAW_BATCH_INSERT,
                    ("t", "raw-batch", (i + 10) * BATCH, roles, contents, [14] * BATCH),
                    prepare=True,
                ),
                n,
            )
        )
    messages = [NewMessage(r, c, tokens=14) for r, c in zip(roles, contents, strict=True)]
    # Fresh keys for every call (made before the clock starts).
    keyed = {
        i: [replace(m, idempotency_key=f"lc:{i}:{k}") for k, m in enumerate(messages)]
        for i in range(-50, n)
    }
    backend = PostgresBackend(dsn, max_size=1).open()
    batched, with_keys = timed_in_turn(
        [
            lambda i: backend.append_many("t", "bench-batch", messages),
            lambda i: backend.append_many("t", "bench-batch-keyed", keyed[i]),
        ],
        n,
    )
    backend.close()
    return raw, summary(batched), summary(with_keys)


def langchain_append(dsn: str, n: int) -> dict[str, float] | None:
    try:
        from langchain_core.messages import HumanMessage
        from langchain_postgres import PostgresChatMessageHistory
    except ImportError:
        print("  (langchain-postgres not installed: skipped)")
        return None
    with psycopg.connect(dsn, autocommit=True) as conn:
        PostgresChatMessageHistory.create_tables(conn, "lc_history")
        history = PostgresChatMessageHistory("lc_history", str(uuid.uuid4()), sync_connection=conn)
        return summary(timed(lambda i: history.add_messages([HumanMessage(TEXT)]), n))


# -- 2. context ----------------------------------------------------------------


def bench_context(dsn: str, sizes: list[int], n: int) -> dict[str, Any]:
    print(
        f"\n[2] context(2000 tokens) vs raw last-50 read, {n} reads each (hybrid: {n // 2}), "
        "synthetic turns with a Zipf vocabulary"
    )
    results: dict[str, Any] = {}
    # Each kind of session's name and queries by size, asked again in turn below.
    asked: dict[str, dict[int, tuple[str, list[str]]]] = {"Zipf": {}, "topic": {}}
    backend = PostgresBackend(dsn, max_size=1).open()
    for size in sizes:
        session = f"ctx-{size}"
        _fill(backend, session, synthetic_turns(size, seed=size))
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("vacuum analyze memory.messages")  # as autovacuum would
            last50 = summary(
                timed(
                    lambda i, s=session: conn.execute(
                        "select seq, role, content, tokens from memory.messages "
                        "where tenant_id = %s and session_id = %s order by seq desc limit 50",
                        ("t", s),
                        prepare=True,
                    ).fetchall(),
                    n,
                )
            )
        recent = summary(
            timed(lambda i, s=session: backend.context("t", s, ContextRequest(budget=2000)), n)
        )
        queries = synthetic_queries(200, seed=size)
        asked["Zipf"][size] = (session, queries)
        # Without a worker, a session over 1,000 turns has no term statistics.
        uncounted = _hybrid(backend, session, queries, n // 2) if size > 1000 else None
        _count_terms(backend, session)
        hybrid = _hybrid(backend, session, queries, n // 2)
        lc = langchain_read(dsn, size, max(5, n // 50))
        print(f"  session of {size:,} messages")
        print(line("  raw last-50 read (prepared SELECT)", last50))
        print(line("  pymem context(recent, 2000)", recent, last50))
        print(line("  pymem context(hybrid, 2000, query)", hybrid, last50))
        if uncounted:
            print(line("  the same without term statistics (no worker)", uncounted, last50))
        if lc:
            print(line("  langchain-postgres get_messages (whole session)", lc, last50))
        results[str(size)] = {
            "raw_last50": last50,
            "pymem_recent_2000": recent,
            "pymem_hybrid_2000": hybrid,
            "pymem_hybrid_2000_without_term_stats": uncounted,
            "langchain_get_messages": lc,
        }
    print("  sessions on one recurring topic (300-word vocabulary: the query's words recur)")
    for size in sizes:
        session = f"topic-{size}"
        _fill(backend, session, synthetic_turns(size, seed=size, vocabulary=300))
        _count_terms(backend, session)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("vacuum analyze memory.messages")
        queries = synthetic_queries(200, seed=size, vocabulary=300, ranks=(5, 150))
        asked["topic"][size] = (session, queries)
        topic = _hybrid(backend, session, queries, n // 2)
        print(
            line(
                f"  pymem context(hybrid), {size:,} topic turns",
                topic,
                results[str(size)]["raw_last50"],
            )
        )
        results[str(size)]["pymem_hybrid_2000_topic"] = topic
    first, last = str(sizes[0]), str(sizes[-1])
    for key, what in (("pymem_hybrid_2000", "Zipf"), ("pymem_hybrid_2000_topic", "topic")):
        grown = results[last][key]["p50_ms"] / results[first][key]["p50_ms"]
        print(f"  hybrid p50 at {sizes[-1]:,} turns / at {sizes[0]:,} ({what}): {grown:5.2f}x")
    # The same two sessions again, in turn, query by query: the runs above are
    # minutes apart, and these machines drift by tens of percent in minutes.
    for what, by_size in asked.items():
        small, large = map(
            summary,
            timed_in_turn(
                [_hybrid_call(backend, *by_size[size]) for size in (sizes[0], sizes[-1])],
                n // 2,
            ),
        )
        grown = large["p50_ms"] / small["p50_ms"]
        results[f"hybrid_in_turn_{what.lower()}"] = {first: small, last: large, "ratio": grown}
        print(
            f"  the same in turn, query by query ({what}): {small['p50_ms']:.2f} / "
            f"{large['p50_ms']:.2f} ms, {grown:5.2f}x"
        )
    backend.close()
    return results


def _fill(backend: PostgresBackend, session: str, texts: list[str]) -> None:
    for start in range(0, len(texts), 1000):
        backend.append_many(
            "t",
            session,
            [
                NewMessage("user" if i % 2 else "assistant", t, tokens=COUNTER.count(t))
                for i, t in enumerate(texts[start : start + 1000], start=start)
            ],
        )


def _count_terms(backend: PostgresBackend, session: str) -> None:
    """The term statistics a running worker keeps ('count_terms' jobs)."""
    while backend.count_terms("t", session):
        pass


def _hybrid_call(
    backend: PostgresBackend, session: str, queries: list[str]
) -> Callable[[int], object]:
    """Call i: a hybrid window of 2,000 tokens with the i-th query (round robin)."""

    def ask(i: int) -> object:
        return backend.context(
            "t",
            session,
            ContextRequest(budget=2000, query=queries[i % len(queries)], strategy="hybrid"),
        )

    return ask


def _hybrid(backend: PostgresBackend, session: str, queries: list[str], n: int) -> dict[str, float]:
    return summary(timed(_hybrid_call(backend, session, queries), n))


def langchain_read(dsn: str, size: int, n: int) -> dict[str, float] | None:
    try:
        from langchain_core.messages import HumanMessage
        from langchain_postgres import PostgresChatMessageHistory
    except ImportError:
        return None
    with psycopg.connect(dsn, autocommit=True) as conn:
        PostgresChatMessageHistory.create_tables(conn, "lc_history")
        history = PostgresChatMessageHistory("lc_history", str(uuid.uuid4()), sync_connection=conn)
        for start in range(0, size, 1000):
            history.add_messages(
                [HumanMessage(f"{TEXT} ({i})") for i in range(start, min(size, start + 1000))]
            )
        return summary(timed(lambda i: history.get_messages(), n, warmup=2))


COUNTER = TiktokenCounter()


def _vocabulary(size: int, rng: random.Random) -> list[str]:
    consonants, vowels = "bcdfghjklmnprstvz", "aeiou"
    words: set[str] = set()
    while len(words) < size:
        n = rng.randint(2, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n)))
    return sorted(words)


def synthetic_turns(n: int, seed: int, vocabulary: int = 5000) -> list[str]:
    """Chat-like turns over a vocabulary (5,000 words by default) with Zipf frequencies."""
    rng = random.Random(seed)
    vocab = _vocabulary(vocabulary, rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    turns = []
    for _ in range(n):
        words = rng.choices(vocab, weights, k=rng.randint(6, 40))
        turns.append(" ".join(words).capitalize() + ".")
    return turns


def synthetic_queries(
    n: int, seed: int, vocabulary: int = 5000, ranks: tuple[int, int] = (20, 2000)
) -> list[str]:
    """Five words each, drawn from the vocabulary's ranks [lo, hi)."""
    rng = random.Random(seed + 1)
    vocab = _vocabulary(vocabulary, random.Random(seed))
    return [" ".join(rng.sample(vocab[ranks[0] : ranks[1]], 5)) + "?" for _ in range(n)]


# -- 3. many sessions ----------------------------------------------------------


def bench_sessions(
    server: EmbeddedPostgres, sessions: int, per_session: int, threads: int
) -> dict[str, Any]:
    dsn = server.dsn()
    total = sessions * per_session
    print(f"\n[3] {total:,} appends over {sessions:,} concurrent sessions, {threads} threads")
    work = [(s, k) for k in range(per_session) for s in range(sessions)]
    chunks = [work[i::threads] for i in range(threads)]

    backend = PostgresBackend(dsn, min_size=threads, max_size=threads).open()
    acked: list[tuple[str, int, str]] = []
    lock = threading.Lock()

    def pymem_worker(chunk: list[tuple[int, int]]) -> None:
        mine = []
        for s, k in chunk:
            content = f"s{s}-m{k}-{uuid.uuid4().hex[:6]}"
            r = backend.append("many", f"s{s}", NewMessage("user", content, tokens=5))
            mine.append((f"s{s}", r.seq, content))
        with lock:
            acked.extend(mine)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(pymem_worker, chunks))
    pymem_s = time.perf_counter() - t0
    server_pids = _server_pids(server)
    client_mb, server_mb = _pss_mb([os.getpid()]), _pss_mb(server_pids)
    backend.close()

    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "select session_id, seq, content from memory.messages where tenant_id = 'many'"
        ).fetchall()
    stored = set(rows)
    lost = len(set(acked) - stored)
    duplicated = sum(n - 1 for n in Counter(c for _, _, c in rows).values())
    per = Counter(s for s, _, _ in rows)
    gaps = sum(
        1 for s in per if sorted(q for x, q, _ in rows if x == s) != list(range(1, per[s] + 1))
    )

    def raw_worker(chunk: list[tuple[int, int]]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for s, k in chunk:
                conn.execute(RAW_INSERT, ("many", f"s{s}", k, "user", TEXT, 5), prepare=True)

    def minimal_worker(chunk: list[tuple[int, int]]) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for s, _ in chunk:
                conn.execute(
                    "select bench_min_append('many-minimal', %s, %s)",
                    (f"s{s}", TEXT),
                    prepare=True,
                )

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(raw_worker, chunks))
    raw_s = time.perf_counter() - t0
    # The least a function-based append can do, through the same threads
    # and connections without pymem's client: the floor of the ratio.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(MIN_APPEND)
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(minimal_worker, chunks))
    minimal_s = time.perf_counter() - t0
    pymem_rate, raw_rate, minimal_rate = total / pymem_s, total / raw_s, total / minimal_s
    print(f"  raw INSERT                 {raw_rate:8.0f} appends/s  (base)")
    print(
        f"  minimal PL/pgSQL append    {minimal_rate:8.0f} appends/s  "
        f"{minimal_rate / raw_rate:5.2f}x   (psycopg, no pymem: the floor)"
    )
    print(
        f"  pymem append               {pymem_rate:8.0f} appends/s  "
        f"{pymem_rate / raw_rate:5.2f}x   lost {lost}, duplicated {duplicated}, "
        f"sessions with gaps {gaps}"
    )
    print(
        f"  memory after the pymem run (proportional set size): client {client_mb:.0f} MB, "
        f"server {server_mb:.0f} MB over {len(server_pids)} processes"
    )
    return {
        "client_pss_mb": client_mb,
        "server_pss_mb": server_mb,
        "appends": total,
        "sessions": sessions,
        "threads": threads,
        "pymem_per_s": pymem_rate,
        "raw_insert_per_s": raw_rate,
        "minimal_plpgsql_append_per_s": minimal_rate,
        "lost": lost,
        "duplicated": duplicated,
        "sessions_with_gaps": gaps,
    }


def _server_pids(server: EmbeddedPostgres) -> list[int]:
    """The postmaster and its children (backends, checkpointer, walwriter, ...)."""
    postmaster = int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])
    children = Path(f"/proc/{postmaster}/task/{postmaster}/children").read_text().split()
    return [postmaster, *map(int, children)]


def _pss_mb(pids: list[int]) -> float:
    """Proportional set size in MB: shared pages (shared_buffers) counted once in all."""
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for row in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if row.startswith("Pss:"):
                    total_kb += int(row.split()[1])
    return total_kb / 1024


# -- 4. pgbench ----------------------------------------------------------------

# The least a correct append can do: bump the session counter under its row
# lock and insert the message into the same partitioned table. No checks,
# caps, idempotency or tenant bookkeeping: the floor pymem is measured against.
MIN_APPEND = """
create or replace function bench_min_append(tenant text, session text, body text)
returns bigint language plpgsql as $fn$
declare v_seq bigint;
begin
    insert into memory.sessions as s (tenant_id, session_id, last_seq) values (tenant, session, 1)
    on conflict (tenant_id, session_id) do update set last_seq = s.last_seq + 1
    returning s.last_seq into v_seq;
    insert into memory.messages (tenant_id, session_id, seq, role, content, tokens)
    values (tenant, session, v_seq, 'user', body, 14);
    return v_seq;
end $fn$"""


def bench_pgbench(server: EmbeddedPostgres, seconds: int, rounds: int = 3) -> dict[str, Any]:
    pgbench = find_pg_bin() / "pgbench"
    if not pgbench.exists():
        print("\n[4] pgbench not found: skipped")
        return {}
    share = max(2, seconds // rounds)
    print(
        f"\n[4] pgbench, {rounds} alternating rounds of {share}s per script, medians "
        "(no Python in the loop; CPU: the whole machine's busy time per transaction)"
    )
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(MIN_APPEND)
    out: dict[str, Any] = {}
    # 8 clients over 1,000 sessions; 16 clients on 16 sessions of one tenant,
    # each transaction on a random one of them (two clients may want the same
    # session row: appends to one session serialize), then each client on a
    # session of its own.
    for clients, sessions, own in ((8, 1000, False), (16, 16, False), (16, 16, True)):
        pick = "\\set s :client_id + 1\n" if own else f"\\set s random(1, {sessions})\n"
        tag = "o" if own else ""
        scripts = {
            "raw_insert": "\\set s random(1, 1000000000)\n"
            "insert into bench_raw (tenant_id, session_id, seq, role, content, tokens)"
            f" values ('pgb', 'raw', :s, 'user', '{TEXT}', 14) "
            "on conflict do nothing;\n",
            "minimal_plpgsql_append": pick
            + f"select bench_min_append('pgb{sessions}{tag}', 'm' || :s, '{TEXT}');\n",
            "memory_append": pick
            + f"select memory.append('pgb{sessions}{tag}', 's' || :s, 'user', '{TEXT}', 14);\n",
        }
        # Rounds alternate the scripts, so that the machine's drift over a
        # minute (these hosts are shared) falls on all three alike.
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in scripts}
        for _ in range(rounds):
            for name, body in scripts.items():
                runs[name].append(_pgbench(pgbench, server, body, clients, share))
        tps = {name: statistics.median(r[0] for r in rs) for name, rs in runs.items()}
        cpu = {name: statistics.median(r[1] for r in rs) for name, rs in runs.items()}
        base = tps["raw_insert"] or 1.0
        how = "each on its own session" if own else f"on {sessions:,} sessions"
        print(f"  {clients} clients {how} of one tenant")
        print(
            f"    raw INSERT                       {tps['raw_insert']:8.0f} tps  (base)"
            f"           CPU {cpu['raw_insert']:5.0f} us/txn"
        )
        print(
            f"    minimal PL/pgSQL append          {tps['minimal_plpgsql_append']:8.0f} tps  "
            f"{tps['minimal_plpgsql_append'] / base:5.2f}x"
            f"           CPU {cpu['minimal_plpgsql_append']:5.0f} us/txn"
        )
        print(
            f"    memory.append                    {tps['memory_append']:8.0f} tps  "
            f"{tps['memory_append'] / base:5.2f}x  "
            f"({tps['memory_append'] / (tps['minimal_plpgsql_append'] or 1):.2f}x the minimal)"
            f"  CPU {cpu['memory_append']:5.0f} us/txn"
            f" ({cpu['memory_append'] / (cpu['minimal_plpgsql_append'] or 1):.2f}x)"
        )
        key = f"{clients}_clients_{sessions}_sessions" + ("_own" if own else "")
        out[key] = {"tps": tps, "cpu_us_per_txn": cpu}
    out["function_time_us"] = _function_times(pgbench, server, rounds)
    return out


def _function_times(pgbench: Path, server: EmbeddedPostgres, rounds: int) -> dict[str, float]:
    """Server time spent inside each append function per call, one client on
    one session (track_functions): the function's own work, without the round
    trip, the commit or other clients. It moves a few microseconds between
    runs where whole-transaction figures move by tens."""
    functions = {
        "minimal_plpgsql_append": (
            "bench_min_append",
            f"select bench_min_append('pgbf', 'm1', '{TEXT}');\n",
        ),
        "memory_append": (
            "append",
            f"select memory.append('pgbf', 's1', 'user', '{TEXT}', 14);\n",
        ),
    }
    per_call: dict[str, list[float]] = {name: [] for name in functions}
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        for _ in range(rounds):
            for name, (function, body) in functions.items():
                conn.execute("select pg_stat_reset()")
                _pgbench(pgbench, server, body, 1, transactions=3000,
                         options="-c track_functions=pl")  # fmt: skip
                per_call[name].append(_function_time(conn, function))
    times = {name: statistics.median(t) for name, t in per_call.items()}
    minimal, pymem = times["minimal_plpgsql_append"], times["memory_append"]
    print(
        f"  one client, server time inside the function per call (track_functions): "
        f"minimal {minimal:.0f} us, memory.append {pymem:.0f} us ({pymem / (minimal or 1):.2f}x)"
    )
    return times


def _function_time(conn: psycopg.Connection[Any], function: str) -> float:
    """Microseconds per call of ``function`` since the last stats reset, once
    the pgbench backends' statistics have reached the shared counters (an
    error when they never do, rather than a figure of 0)."""
    for _ in range(50):
        row = conn.execute(
            "select sum(total_time) * 1000 / nullif(sum(calls), 0) from pg_stat_user_functions"
            " where funcname = %s",
            (function,),
        ).fetchone()
        if row and row[0] is not None:
            return float(row[0])
        time.sleep(0.1)
    raise RuntimeError(
        f"no call of {function} reached pg_stat_user_functions within 5 s: "
        "pgbench's sessions ran without track_functions, or failed"
    )


def _busy_jiffies() -> int:
    """The machine's busy time so far (user, nice, system, irq, softirq), in clock ticks."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7))


def _pgbench(
    pgbench: Path,
    server: EmbeddedPostgres,
    body: str,
    clients: int,
    seconds: int = 0,
    *,
    transactions: int = 0,
    options: str = "",
) -> tuple[float, float]:
    """Transactions per second of one pgbench script (prepared statements), run
    for ``seconds`` or ``transactions`` per client, and the machine's busy CPU
    time per transaction in microseconds. ``options``: server settings for the
    pgbench sessions (PGOPTIONS)."""
    workdir = Path(tempfile.mkdtemp(prefix="pymem-pgbench-"))
    workdir.chmod(0o755)
    script = workdir / "script.sql"
    script.write_text(body)
    script.chmod(0o644)
    cmd = [
        str(pgbench), "-n", "-M", "prepared", "-c", str(clients), "-j", "2",
        *(["-t", str(transactions)] if transactions else ["-T", str(seconds)]),
        "-f", str(script), "-h", "127.0.0.1", "-p", str(server.port),
        "-U", "pymem", server.dbname,
    ]  # fmt: skip
    env = {**os.environ, "PGOPTIONS": options} if options else None
    busy = _busy_jiffies()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    busy = _busy_jiffies() - busy
    shutil.rmtree(workdir, ignore_errors=True)
    tps, txns = 0.0, 0
    for row in done.stdout.splitlines():
        if row.startswith("tps ="):
            tps = float(row.split("=")[1].split()[0])
        elif row.startswith("number of transactions actually processed"):
            txns = int(row.split(":")[1].split("/")[0])
    cpu_us = busy * 1e6 / os.sysconf("SC_CLK_TCK") / txns if txns else 0.0
    return tps, cpu_us


# -- 5. the Redis tier -------------------------------------------------------------


def start_redis() -> tuple[subprocess.Popen[bytes], int, Path]:
    import redis as redis_py

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="pymem-bench-redis-"))
    proc = subprocess.Popen(
        [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            redis_py.Redis(port=port).ping()
            break
        except redis_py.ConnectionError:
            time.sleep(0.02)
    return proc, port, workdir


def bench_redis_tier(dsn: str, n: int) -> dict[str, Any]:
    import redis as redis_py

    from pymem.tier.cache import CachedBackend, connect_redis

    proc, port, workdir = start_redis()
    url = f"redis://127.0.0.1:{port}/0"
    print(f"\n[5] the Redis tier (redis-server on loopback, hiredis parser), {n} calls each")
    try:
        raw = redis_py.Redis(port=port)
        texts = synthetic_turns(10_000, seed=7)
        raw.rpush("bench:list", *texts[-50:])
        lrange = summary(timed(lambda i: raw.lrange("bench:list", -50, -1), n))
        pg = PostgresBackend(dsn, max_size=2).open()
        tier = CachedBackend(PostgresBackend(dsn, max_size=2).open(), connect_redis(url))
        for start in range(0, len(texts), 1000):
            pg.append_many(
                "t",
                "tier",
                [
                    NewMessage("user", t, tokens=COUNTER.count(t))
                    for t in texts[start : start + 1000]
                ],
            )
        queries = synthetic_queries(20, seed=7)
        pg_recent = summary(
            timed(lambda i: pg.context("t", "tier", ContextRequest(budget=2000)), n)
        )
        hit_recent = summary(
            timed(lambda i: tier.context("t", "tier", ContextRequest(budget=2000)), n)
        )
        pg_hybrid = summary(
            timed(
                lambda i: pg.context(
                    "t",
                    "tier",
                    ContextRequest(budget=2000, query=queries[i % 20], strategy="hybrid"),
                ),
                n // 2,
            )
        )
        hit_hybrid = summary(
            timed(
                lambda i: tier.context(
                    "t",
                    "tier",
                    ContextRequest(budget=2000, query=queries[i % 20], strategy="hybrid"),
                ),
                n // 2,
            )
        )
        pg_append = summary(
            timed(lambda i: pg.append("t", "app-pg", NewMessage("user", TEXT, tokens=14)), n)
        )
        tier_append = summary(
            timed(lambda i: tier.append("t", "app-tier", NewMessage("user", TEXT, tokens=14)), n)
        )
        sized = _cache_hits_beside_a_hand_written_cache(dsn, url, raw, n)
        stats = tier.cache_stats
        print(line("raw Redis LRANGE of 50 turns", lrange))
        print(line("cache hit: context(recent, 2000)", hit_recent, lrange))
        print(line("PostgreSQL: context(recent, 2000)", pg_recent, lrange))
        print(line("cache hit: context(hybrid, 2000, query)", hit_hybrid, lrange))
        print(line("PostgreSQL: context(hybrid, 2000, query)", pg_hybrid, lrange))
        print(line("append, PostgreSQL alone", pg_append))
        print(line("append with the tier (invalidation)", tier_append, pg_append))
        print(
            f"  cached windows: {stats.raw_bytes:,} bytes of MessagePack stored in "
            f"{stats.stored_bytes:,} (zstd, {stats.compression_ratio:.2f}x)"
        )
        for size, (hand, hit, session_hit) in sized.items():
            print(line(f"hand-written cache, {size} messages (GET + json.loads)", hand))
            print(line(f"cache hit, {size}-message window (backend)", hit, hand))
            print(line(f"cache hit, {size}-message window (Session.context)", session_hit, hand))
        pg.close()
        tier.close()
        return {
            "raw_lrange_50": lrange,
            "hit_recent": hit_recent,
            "pg_recent": pg_recent,
            "hit_hybrid": hit_hybrid,
            "pg_hybrid": pg_hybrid,
            "append_pg": pg_append,
            "append_tier": tier_append,
            "compression_ratio": stats.compression_ratio,
            **{
                f"window_{size}": {"hand_written": hand, "hit": hit, "session_hit": session_hit}
                for size, (hand, hit, session_hit) in sized.items()
            },
        }
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _cache_hits_beside_a_hand_written_cache(
    dsn: str, url: str, raw: Any, n: int
) -> dict[int, tuple[dict[str, float], dict[str, float], dict[str, float]]]:
    """For windows of 50 and 300 messages: a hand-written cache of the window (its
    chat messages as one JSON string: GET + json.loads), pymem's cache hit at the
    backend, and through Session.context (metrics and spans off)."""
    from pymem import Memory
    from pymem.tier.cache import CachedBackend, connect_redis

    texts = synthetic_turns(300, seed=11)
    counted = [COUNTER.count(t) for t in texts]
    tier = CachedBackend(PostgresBackend(dsn, max_size=2).open(), connect_redis(url))
    tier.append_many(
        "t",
        "sized",
        [
            NewMessage("user" if i % 2 else "assistant", t, tokens=c)
            for i, (t, c) in enumerate(zip(texts, counted, strict=True))
        ],
    )
    out = {}
    with Memory.connect(dsn, redis=url) as mem:
        session = mem.session("sized", tenant="t")
        for size in (50, 300):
            request = ContextRequest(budget=sum(counted[-size:]))
            window = tier.context("t", "sized", request)
            assert len(window) == size, len(window)
            raw.set(f"bench:window:{size}", json.dumps(window.messages()))
            # In turn, call by call: the hand-written read alone moved from
            # 0.07 to 0.18 ms between runs, more than pymem's hit differs from it.
            hand, hit, session_hit = map(
                summary,
                timed_in_turn(
                    [
                        lambda i, k=f"bench:window:{size}": json.loads(raw.get(k)),
                        lambda i, r=request: tier.context("t", "sized", r),
                        lambda i, b=request.budget: session.context(budget=b),
                    ],
                    n,
                ),
            )
            out[size] = (hand, hit, session_hit)
    tier.close()
    return out


# -- 6. security: roles, encryption, personal data policy ----------------------------


def bench_security(dsn: str, n: int) -> dict[str, Any]:
    print(f"\n[6] security features, {n} appends / {n // 2} reads each, same server")
    from pymem.security.keys import generate_master_key, with_master_key

    class Keys:
        key = bytes.fromhex(generate_master_key())

        def master_key(self) -> bytes:
            return self.key

        def previous_master_key(self) -> bytes | None:
            return None

    keys = Keys()
    with psycopg.connect(with_master_key(dsn, keys), autocommit=True) as conn:
        conn.execute(RAW_TABLE)
        raw = summary(
            timed(
                lambda i: conn.execute(
                    RAW_INSERT, ("t", "raw6", i + 100, "user", TEXT, 14), prepare=True
                ),
                n,
            )
        )
        conn.execute("select set_config('pymem.tenant', 'sealed', false)")
        conn.execute("select memory.configure_encryption('sealed', 'content_with_search')")
        conn.execute("select set_config('pymem.tenant', 'redacting', false)")
        conn.execute("select memory.configure_pii('redacting', '{\"default\": \"redact\"}')")
        conn.execute("select set_config('pymem.tenant', '', false)")
        with contextlib.suppress(psycopg.errors.DuplicateObject):
            conn.execute("create role pymem_bench_app login in role pymem_app")
    app_dsn = make_conninfo(dsn, user="pymem_bench_app")
    out: dict[str, Any] = {"raw_insert": raw}
    cases = [
        ("plain tenant, superuser", dsn, "plain"),
        ("plain tenant, pymem_app login", app_dsn, "plain-app"),
        ("personal data policy: redact", dsn, "redacting"),
        ("sealed tenant (content_with_search)", dsn, "sealed"),
    ]
    print(line("raw prepared INSERT (psycopg)", raw))
    pii_text = TEXT + " Mail ann@example.org or call +44 20 7946 0958."
    for label, url, tenant in cases:
        backend = PostgresBackend(with_master_key(url, keys), max_size=1).open()
        text = pii_text if tenant == "redacting" else TEXT
        stats = summary(
            timed(
                lambda i, b=backend, t=tenant, x=text: b.append(
                    t, "s6", NewMessage("user", x, tokens=14)
                ),
                n,
            )
        )
        out[f"append_{tenant}"] = stats
        print(line(f"append: {label}", stats, raw))
        backend.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        last50 = summary(
            timed(
                lambda i: conn.execute(
                    "select * from bench_raw where tenant_id = 't' and session_id = 'raw6' "
                    "order by seq desc limit 50",
                    prepare=True,
                ).fetchall(),
                n // 2,
            )
        )
    print(line("raw last-50 read (prepared SELECT)", last50))
    out["raw_last50"] = last50
    # Context on 1,000 synthetic turns per tenant (the same turns for both).
    texts = synthetic_turns(1000, seed=6)
    queries = synthetic_queries(64, seed=6)
    backend = PostgresBackend(with_master_key(dsn, keys), max_size=1).open()
    for tenant in ("plain", "sealed"):
        backend.append_many(
            tenant,
            "ctx6",
            [NewMessage("user", text, tokens=COUNTER.count(text)) for text in texts],
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("vacuum analyze memory.messages")
    for tenant in ("plain", "sealed"):
        for strategy in ("recent", "hybrid"):
            stats = summary(
                timed(
                    lambda i, t=tenant, st=strategy: backend.context(
                        t,
                        "ctx6",
                        ContextRequest(budget=2000, query=queries[i % len(queries)], strategy=st),
                    ),
                    n // 2,
                )
            )
            out[f"context_{strategy}_{tenant}"] = stats
            print(line(f"context({strategy}, 2000), {tenant}, 1k turns", stats, last50))
    backend.close()
    return out


# -- 7. telemetry ----------------------------------------------------------------


def bench_telemetry(dsn: str, n: int) -> dict[str, Any]:
    """Session.append and context(recent): telemetry off, metrics on, metrics and tracing on,
    in interleaved rounds."""
    from opentelemetry.sdk.trace import TracerProvider
    from prometheus_client import CollectorRegistry

    from pymem.telemetry.metrics import ClientMetrics
    from pymem.telemetry.tracing import Tracing

    print(f"\n[7] telemetry cost: Session calls with telemetry off / on, {n} calls each")
    provider = TracerProvider()  # spans are made and ended (the SDK's cost), then dropped
    stores = {
        "off": Memory.connect(dsn, max_size=1),
        "metrics": Memory.connect(dsn, max_size=1, metrics=ClientMetrics(CollectorRegistry())),
        "traced": Memory.connect(
            dsn,
            max_size=1,
            metrics=ClientMetrics(CollectorRegistry()),
            tracing=Tracing(provider),
        ),
    }
    try:
        for label, mem in stores.items():
            chat = mem.session(f"tele-{label}", tenant="t")
            for _ in range(60):
                chat.append("user", TEXT, tokens=14)
        # Call by call in turn, so that the machine's drift hits every store alike.
        chats = {label: mem.session(f"tele-{label}", tenant="t") for label, mem in stores.items()}
        samples: dict[str, list[float]] = {}
        calls = {
            "append": lambda c: c.append("user", TEXT, tokens=14),
            "context": lambda c: c.context(budget=2000),
        }
        labels = list(chats)
        for i in range(n + 50):
            turn = labels[i % len(labels) :] + labels[: i % len(labels)]  # no store always first
            for op, call in calls.items():
                for label in turn:
                    chat = chats[label]
                    t0 = time.perf_counter()
                    call(chat)
                    if i >= 50:  # warm-up
                        samples.setdefault(f"{op}_{label}", []).append(time.perf_counter() - t0)
        out = {name: summary(values) for name, values in samples.items()}
    finally:
        for mem in stores.values():
            mem.close()
        provider.shutdown()
    for op in ("append", "context"):
        off = out[f"{op}_off"]
        print(line(f"{op}, telemetry off", off))
        for label, title in (("metrics", "metrics on"), ("traced", "metrics + tracing on")):
            on = out[f"{op}_{label}"]
            print(line(f"{op}, {title}", on, off))
            added_us = (on["p50_ms"] - off["p50_ms"]) * 1000
            print(f"    p50 added: {added_us:+.1f} us ({on['p50_ms'] / off['p50_ms'] - 1:+.1%})")
    return out


# -- 8. retention under writers ---------------------------------------------------


def _append_for(dsn: str, session: str, stop: threading.Event) -> list[float]:
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            t0 = time.perf_counter()
            conn.execute("select memory.append('ret', %s, 'user', 'new turn', 3)", (session,))
            out.append(time.perf_counter() - t0)
    return out


def _writers_during(dsn: str, sessions: list[str], work: Callable[[], Any]) -> list[float]:
    stop = threading.Event()
    with ThreadPoolExecutor(len(sessions)) as pool:
        futures = [pool.submit(_append_for, dsn, s, stop) for s in sessions]
        try:
            work()
        finally:
            stop.set()
        return [x for f in futures for x in f.result()]


def bench_retention(dsn: str, turns: int) -> dict[str, Any]:
    """RELIABILITY T12: 8 writers' append latency alone, during retention by row deletes,
    and during a partition drop (all in one run: ratios to the writers alone)."""
    print(f"\n[8] retention under 8 writers ({turns} old turns per session)")
    out: dict[str, Any] = {}

    def sessions(phase: str) -> list[str]:
        return [f"{phase}-{i}" for i in range(8)]

    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("select memory.configure_tenant('ret', retention => '30 days')")

        def seed(phase: str, when: str) -> None:
            for s in sessions(phase):
                admin.execute(
                    "select count(*) from memory.append_many('ret', %s, array("
                    "select row('user', 'old turn ' || g, 3, '{}', null, null)"
                    "::memory.message_input from generate_series(1, %s) as g))",
                    (s, turns),
                )
            admin.execute(
                "update memory.messages set created_at = %s::timestamptz "
                "where tenant_id = 'ret' and content like 'old turn %%'",
                (when,),
            )
            admin.execute("select * from memory.maintain_partitions()")

        def maintain(in_steps: bool = False) -> None:
            time.sleep(0.5)
            started = time.perf_counter()
            if in_steps:
                row = admin.execute("call memory.maintain_in_steps()").fetchone()
                removed = row[3] if row else 0
            else:
                row = admin.execute("select messages_removed from memory.maintain()").fetchone()
                removed = row[0] if row else 0
            out.setdefault("maintain_s", []).append(time.perf_counter() - started)
            out.setdefault("removed", []).append(removed)
            time.sleep(0.5)

        alone = _writers_during(dsn, sessions("alone"), lambda: time.sleep(2))
        # A tenant without retention keeps the old partition: row deletes.
        admin.execute("select memory.append('keeper', 'k', 'user', 'kept', 1)")
        seed("rows", "2020-01-10")
        admin.execute(
            "update memory.messages set created_at = '2020-01-10' where tenant_id = 'keeper'"
        )
        rows = _writers_during(dsn, sessions("rows"), maintain)
        # The same, committed step by step (memory.maintain_in_steps).
        seed("steps", "2020-01-10")
        steps = _writers_during(dsn, sessions("steps"), lambda: maintain(in_steps=True))
        # Every tenant with retention: whole partitions are dropped.
        admin.execute("select memory.configure_tenant('keeper', retention => '30 days')")
        seed("drop", "2020-03-10")
        dropped = _writers_during(dsn, sessions("drop"), maintain)
    base = summary(alone)
    out.update(
        alone=base,
        row_deletes=summary(rows),
        row_deletes_in_steps=summary(steps),
        partition_drop=summary(dropped),
    )
    print(line("8 writers alone", base))
    print(line("8 writers, retention deleting rows", out["row_deletes"], base))
    print(
        line("8 writers, the same in steps (maintain_in_steps)", out["row_deletes_in_steps"], base)
    )
    print(line("8 writers, retention dropping a partition", out["partition_drop"], base))
    for label, seconds, removed in zip(
        ("row deletes", "row deletes in steps", "partition drop"),
        out["maintain_s"],
        out["removed"],
        strict=True,
    ):
        print(f"    maintain with {label}: {removed} turns removed in {seconds * 1000:.0f} ms")
    return out


# -- 9. resilience: what safety costs, failing fast, recovering --------------------


def _recovery(fault: Callable[[EmbeddedPostgres], None]) -> dict[str, float]:
    """Four writers on a private cluster; ``fault`` at 1 s. Returns the slowest
    call (the stall writers saw) and the time from the server's return to the
    next acknowledged append."""
    with EmbeddedPostgres.temporary("pymem-bench-restart-", tcp=True) as server:
        acked: list[float] = []
        slowest = [0.0]
        errors = [0]
        stop = threading.Event()

        def writer(w: int) -> None:
            with Memory.connect(server.dsn(), max_size=1) as mem:
                chat = mem.session("s", tenant="t")
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        chat.append("user", TEXT, tokens=14)
                        acked.append(time.monotonic())
                    except Exception:
                        errors[0] += 1
                    slowest[0] = max(slowest[0], time.perf_counter() - t0)
                    time.sleep(0.002)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        down = time.monotonic()
        fault(server)
        back = time.monotonic()
        while not [a for a in acked if a > back] and time.monotonic() - back < 60:
            time.sleep(0.002)
        first = min(a for a in acked if a > back)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join()
    return {
        "down_s": back - down,
        "recovery_s": first - back,
        "slowest_call_s": slowest[0],
        "errors": errors[0],
    }


def _kill_postmaster(server: EmbeddedPostgres) -> None:
    server.kill()
    server.start()


def _restart(server: EmbeddedPostgres) -> None:
    server.stop("immediate")
    server.start()


def bench_resilience(dsn: str, n: int) -> dict[str, Any]:
    """The cost of deadlines, retries and made idempotency keys on the fast path;
    fail-fast latency while the breaker is open; recovery after a restart."""
    from pymem import DatabaseCircuitOpen
    from pymem.resilience import CircuitBreaker

    print(f"\n[9] resilience ({n} calls each; recovery: 4 writers, 3 runs per fault)")
    out: dict[str, Any] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        out["raw_roundtrip"] = summary(timed(lambda i: conn.execute("select 1", prepare=True), n))
        plain = "select * from memory.append('t', 'sql-plain', 'user', %s, 14)"
        keyed = (
            "select * from memory.append('t', 'sql-keyed', 'user', %s, 14, idempotency_key => %s)"
        )
        out["sql_append"] = summary(timed(lambda i: conn.execute(plain, (TEXT,), prepare=True), n))
        out["sql_append_keyed"] = summary(
            timed(lambda i: conn.execute(keyed, (TEXT, uuid.uuid4().hex), prepare=True), n)
        )
        call = "select * from memory.append('t', 'sql-call', 'user', %s, 14, call_key => %s)"
        out["sql_append_call_key"] = summary(
            timed(lambda i: conn.execute(call, (TEXT, uuid.uuid4().hex), prepare=True), n)
        )
    backend = PostgresBackend(dsn, max_size=1).open()
    out["backend_append"] = summary(
        timed(lambda i: backend.append("t", "b", NewMessage("user", TEXT, tokens=14)), n)
    )
    backend.close()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=timedelta(hours=1))
    refused = PostgresBackend(dsn, max_size=1, breaker=breaker).open()
    breaker.failure()  # open: every call is refused at once

    def fail_fast(i: int) -> None:
        with contextlib.suppress(DatabaseCircuitOpen):
            refused.append("t", "b", NewMessage("user", TEXT, tokens=14))

    out["fail_fast"] = summary(timed(fail_fast, n))
    refused.close()
    base = out["raw_roundtrip"]
    print(line("raw round trip (select 1)", base))
    print(line("memory.append in SQL, no key", out["sql_append"], base))
    print(line("memory.append in SQL, idempotency key", out["sql_append_keyed"], base))
    print(line("memory.append in SQL, call key", out["sql_append_call_key"], base))
    print(line("backend.append (call key, deadline, retries)", out["backend_append"], base))
    print(line("a call refused while the breaker is open", out["fail_fast"], base))
    for name, fault in (
        ("restart -m immediate", _restart),
        ("kill -9 postmaster", _kill_postmaster),
    ):
        runs = [_recovery(fault) for _ in range(3)]
        out[name] = runs
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"  {name:<22} server down {med['down_s']:.2f} s, next append "
            f"{med['recovery_s'] * 1000:.0f} ms after its return, slowest call "
            f"{med['slowest_call_s']:.2f} s, errors {sum(r['errors'] for r in runs)} "
            f"(medians of 3)"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument("--full", action="store_true", help="also a 100k-message session")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/latest.json")
    parser.add_argument(
        "--only",
        choices=[
            "append",
            "context",
            "sessions",
            "pgbench",
            "redis_tier",
            "security",
            "telemetry",
            "retention",
            "resilience",
        ],
        help="run one section",
    )
    args = parser.parse_args()
    n = 300 if args.quick else 2000
    with EmbeddedPostgres.temporary(
        "pymem-bench-",
        tcp=True,
        settings={"max_connections": "100", "shared_buffers": "256MB"},
    ) as server:
        run_all(args, server, n)


def run_all(args: argparse.Namespace, server: EmbeddedPostgres, n: int) -> None:
    dsn = server.dsn()
    with psycopg.connect(dsn, autocommit=True) as conn:
        version = conn.execute("show server_version").fetchone()
        conn.execute(RAW_TABLE)  # every section's raw baseline, whichever runs alone
    print(
        f"pymem benchmarks — PostgreSQL {version[0] if version else '?'} on loopback, "
        f"fsync on, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "postgres": version[0] if version else None,
        "cores": os.cpu_count(),
    }
    sizes = [1000, 10000] + ([100000] if args.full else [])
    sections: dict[str, Callable[[], Any]] = {
        "append": lambda: bench_append(dsn, n),
        "context": lambda: bench_context(dsn, sizes, n // 2),
        "sessions": lambda: bench_sessions(server, 1000, 3 if args.quick else 10, 16),
        "pgbench": lambda: bench_pgbench(server, 5 if args.quick else 15),
        "redis_tier": lambda: bench_redis_tier(dsn, n),
        "security": lambda: bench_security(dsn, n),
        "telemetry": lambda: bench_telemetry(dsn, n),
        "retention": lambda: bench_retention(dsn, 500 if args.quick else 5000),
        "resilience": lambda: bench_resilience(dsn, n),
    }
    for name, run in sections.items():
        if args.only in (None, name):
            results[name] = run()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nresults written to {args.json}")


if __name__ == "__main__":
    main()
