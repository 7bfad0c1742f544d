"""memory.recall's smoothing along the conversation, score by score: a turn
adds 0.5 of its best direct neighbour's score and 0.3 of the best one two
turns away (the best, not the sum), within the session and before before_seq."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[Any]


def _session(conn: Conn, session: str, texts: dict[int, str], turns: int) -> None:
    """`turns` turns of chat; those in `texts` say what they say there."""
    for seq in range(1, turns + 1):
        conn.execute(
            "select memory.append('acme', %s, 'user', %s, 5)",
            (session, texts.get(seq, f"plain chat number {seq}")),
        )


def _scores(
    conn: Conn, session: str, query: str, before_seq: int | None = None
) -> dict[int, float]:
    rows = conn.execute(
        "select seq, score from memory.recall('acme', %s, %s, before_seq => %s, max_rows => 50)",
        (session, query, before_seq),
    ).fetchall()
    return {seq: score for seq, score in rows}


def test_neighbours_take_half_and_three_tenths_of_the_best_match(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _session(conn, "s-1", {4: "a quokka", 8: "quokka quokka quokka"}, turns=12)
        got = _scores(conn, "s-1", "quokka")
        four, eight = got[4], got[8]
        assert eight > four > 0  # more of the word in a turn as long: a higher BM25
        expected = {
            2: 0.3 * four,
            3: 0.5 * four,
            4: four,  # its neighbours matched nothing: its own score alone
            5: 0.5 * four,
            6: 0.3 * eight,  # two turns from both matches: the best one, not the sum
            7: 0.5 * eight,
            8: eight,
            9: 0.5 * eight,
            10: 0.3 * eight,
        }
        assert got == pytest.approx(expected)
        assert list(got) == sorted(expected, key=lambda s: (-expected[s], -s)), "best first"


def test_smoothing_stays_within_the_session_and_before_before_seq(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        _session(conn, "s-1", {1: "a quokka", 7: "quokka quokka quokka"}, turns=8)
        got = _scores(conn, "s-1", "quokka")
        assert set(got) == {1, 2, 3, 5, 6, 7, 8}, "no turn 0 or -1, no turn 9"
        # Before turn 7 the second match is not a candidate, nor a neighbour.
        earlier = _scores(conn, "s-1", "quokka", before_seq=7)
        assert earlier == pytest.approx({1: got[1], 2: 0.5 * got[1], 3: 0.3 * got[1]})
        # The same two turns a turn apart, in a session as long (the same idf
        # and lengths, so the same BM25): the turn between them takes the
        # better one's half, not the sum of both halves, and each match adds
        # 0.3 of the other.
        low, high = got[1], got[7]
        _session(conn, "s-2", {3: "a quokka", 5: "quokka quokka quokka"}, turns=8)
        assert _scores(conn, "s-2", "quokka") == pytest.approx(
            {
                1: 0.3 * low,
                2: 0.5 * low,
                3: low + 0.3 * high,
                4: 0.5 * high,
                5: high + 0.3 * low,
                6: 0.5 * high,
                7: 0.3 * high,
            }
        )
