"""Term statistics of long sessions: memory.count_terms and recall's use of them."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

WORDS = ["tent", "pole", "invoice", "garden", "violin", "marathon", "passport", "bakery"]

Conn = psycopg.Connection[Any]


def _fill(conn: Conn, session: str, first: int, last: int, tenant: str = "acme") -> None:
    """Turns `first`..`last`: a word that cycles, one whose frequency falls
    with the turn number, and a needle (quokka) in turn 40 only."""
    conn.execute(
        """
        select count(*) from memory.append_many(%(tenant)s, %(session)s, array(
            select row(case when i %% 2 = 0 then 'user' else 'assistant' end,
                       format('turn %%s about the %%s %%s%%s', i, (%(words)s::text[])[1 + i %% 8],
                              case when i %% (1 + i / 100) = 0 then 'lantern' else 'meeting' end,
                              case when i = 40 then ' and the quokka' else '' end),
                       10, '{}', null, null)::memory.message_input
              from generate_series(%(first)s::integer, %(last)s::integer) as i
             order by i))
        """,
        {"tenant": tenant, "session": session, "words": WORDS, "first": first, "last": last},
    )


def _drain(conn: Conn, session: str, max_turns: int = 20000, tenant: str = "acme") -> list[int]:
    chunks = []
    while turns := conn.execute(
        "select memory.count_terms(%s, %s, %s)", (tenant, session, max_turns)
    ).fetchone()[0]:  # type: ignore[index]
        chunks.append(turns)
    return chunks


def _stored(conn: Conn, session: str) -> dict[str, int]:
    rows = conn.execute(
        "select lexeme, turns from memory.session_terms "
        "where tenant_id = 'acme' and session_id = %s",
        (session,),
    ).fetchall()
    return dict(rows)


def _exact(conn: Conn, session: str) -> dict[str, int]:
    """Document frequencies by PostgreSQL's own ts_stat over the session's turns."""
    rows = conn.execute(
        "select word, ndoc from ts_stat(format("
        "'select search from memory.messages where tenant_id = %%L and session_id = %%L', "
        "'acme', %s::text))",
        (session,),
    ).fetchall()
    return dict(rows)


def _stats(conn: Conn, session: str) -> tuple[int, int, int] | None:
    row = conn.execute(
        "select first_seq, last_seq, turns from memory.term_stats "
        "where tenant_id = 'acme' and session_id = %s",
        (session,),
    ).fetchone()
    return None if row is None else tuple(row)  # type: ignore[return-value]


def _recall(conn: Conn, query: str, session: str = "s-1", **kw: object) -> list[int]:
    rows = conn.execute(
        "select seq from memory.recall('acme', %s, %s, before_seq => %s, max_rows => %s)",
        (session, query, kw.get("before_seq"), kw.get("max_rows", 10)),
    ).fetchall()
    return [r[0] for r in rows]


def test_counts_equal_the_turns_that_hold_each_lexeme(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _fill(conn, "s-1", 1, 1100)
        # In chunks of at most max_turns, oldest first.
        assert _drain(conn, "s-1", max_turns=400) == [400, 400, 300]
        assert _stats(conn, "s-1") == (1, 1100, 1100)
        assert _stored(conn, "s-1") == _exact(conn, "s-1")
        assert _stored(conn, "s-1")["quokka"] == 1
        # Later turns are added to the counts, not counted again.
        _fill(conn, "s-1", 1101, 1250)
        assert _drain(conn, "s-1") == [150]
        assert _stats(conn, "s-1") == (1, 1250, 1250)
        assert _stored(conn, "s-1") == _exact(conn, "s-1")
        assert _drain(conn, "s-1") == [], "up to date: nothing to do"


def test_appends_queue_counting_every_250_turns_of_an_uncapped_session(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _fill(conn, "s-1", 1, 749)
        _fill(conn, "capped", 1, 800)
        conn.execute("select memory.configure_session('acme', 'capped', max_messages => 5000)")
        _fill(conn, "capped", 801, 1000)
        jobs = conn.execute(
            "select session_id from memory.jobs where kind = 'count_terms'"
        ).fetchall()
        assert jobs == [("capped",)], "queued at 750 only: the cap came later"
        _fill(conn, "s-1", 750, 750)
        jobs = conn.execute(
            "select session_id, status from memory.jobs where kind = 'count_terms' order by 1"
        ).fetchall()
        assert jobs == [("capped", "queued"), ("s-1", "queued")]


def test_recall_with_statistics_ranks_as_counting_does(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _fill(conn, "s-1", 1, 1300)
        queries = ["the quokka at the meeting", "lantern violin", "tent pole", "lantern"]
        counted = {q: _recall(conn, q) for q in queries}
        earlier = _recall(conn, "lantern garden", before_seq=900)
        _drain(conn, "s-1")
        # Every word is either rare (counted exactly either way) or common
        # enough that neither path takes candidates from it: the same ranking.
        assert {q: _recall(conn, q) for q in queries} == counted
        assert _recall(conn, "lantern garden", before_seq=900) == earlier
        assert counted["the quokka at the meeting"][0] == 40


def test_statistics_far_behind_the_session_are_not_used(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _fill(conn, "s-1", 1, 1100)
        _drain(conn, "s-1")
        # Statistics that say "quokka" is in no turn: used, they would lose it.
        conn.execute("delete from memory.session_terms where lexeme = 'quokka'")
        assert 40 not in _recall(conn, "quokka")
        _fill(conn, "s-1", 1101, 1700)  # now 600 turns behind: recall counts instead
        assert _recall(conn, "quokka")[0] == 40


def test_removing_turns_removes_their_statistics(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for session in ("trimmed", "popped", "purged", "aged"):
            _fill(conn, session, 1, 1000)
            _drain(conn, session)
            assert _stats(conn, session) == (1, 1000, 1000)
        # Trimming to a cap.
        conn.execute("select memory.configure_session('acme', 'trimmed', max_messages => 900)")
        _fill(conn, "trimmed", 1001, 1001)
        assert _stats(conn, "trimmed") is None and _stored(conn, "trimmed") == {}
        # Counted again from the first turn kept.
        assert _drain(conn, "trimmed") == [900]
        assert _stats(conn, "trimmed") == (102, 1001, 900)
        assert _stored(conn, "trimmed") == _exact(conn, "trimmed")
        # Taking back the newest turn.
        conn.execute("select * from memory.pop_message('acme', 'popped')")
        assert _stats(conn, "popped") is None
        # Purging the session.
        conn.execute("select memory.delete_session('acme', 'purged')")
        conn.execute("select memory.purge_session('acme', 'purged')")
        assert _stats(conn, "purged") is None and _stored(conn, "purged") == {}
        # Retention by age.
        conn.execute("select memory.configure_tenant('acme', retention => '30 days')")
        conn.execute(
            "update memory.messages set created_at = created_at - interval '40 days' "
            "where tenant_id = 'acme' and session_id = 'aged' and seq <= 500"
        )
        conn.execute("select * from memory.maintain()")
        assert _stats(conn, "aged") is None
        assert _drain(conn, "aged") == [500]
        assert _stored(conn, "aged") == _exact(conn, "aged")


def test_content_encryption_drops_the_statistics(dsn: str) -> None:
    from pymem.security.keys import generate_master_key

    keyed = f"{dsn} options='-c pymem.master_key={generate_master_key()}'"
    with psycopg.connect(keyed, autocommit=True) as conn:
        _fill(conn, "s-1", 1, 800)
        _drain(conn, "s-1")
        assert _stored(conn, "s-1")
        conn.execute("select memory.configure_encryption('acme', 'content')")
        while conn.execute("select messages from memory.reencrypt('acme')").fetchone() != (0,):
            pass
        assert _stats(conn, "s-1") is None and _stored(conn, "s-1") == {}
        # Nothing to count in clear any more.
        _drain(conn, "s-1")
        assert _stored(conn, "s-1") == {}


def test_bad_arguments_are_refused(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.Error) as bad:
            conn.execute("select memory.count_terms('acme', 's-1', 0)")
        assert bad.value.sqlstate == "ME002"
        with pytest.raises(psycopg.Error) as bad:
            conn.execute("select memory.count_terms('acme', '')")
        assert bad.value.sqlstate == "ME006"
        assert conn.execute("select memory.count_terms('acme', 'missing')").fetchone() == (0,)


def test_counting_while_appends_go_on_misses_and_doubles_nothing(dsn: str) -> None:
    import threading

    done = threading.Event()

    def writer() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            for i in range(1, 1201):
                conn.execute(
                    "select memory.append('acme', 's-1', 'user', %s, 5)",
                    (f"turn {i} about the {WORDS[i % 8]} {'lantern' if i % 7 == 0 else ''}",),
                )
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    rounds = 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not done.is_set():
            _drain(conn, "s-1", max_turns=97)
            rounds += 1
        thread.join()
        _drain(conn, "s-1", max_turns=97)
        assert rounds > 3, "counted while the session grew"
        assert _stats(conn, "s-1") == (1, 1200, 1200)
        assert _stored(conn, "s-1") == _exact(conn, "s-1")
