"""Messages made of parts, as a SQL client sees them: the documented JSON shape,
typed errors for bad parts, personal data inside parts, sealing, search, and
windows that keep tool calls with their results (a property over random
transcripts)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymem.errors import error_for_sqlstate
from tests.transcripts import steps, transcript

CALL = {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}
RESULT = {"type": "tool_result", "call_id": "call_1", "content": "12 C"}


def _append(conn: psycopg.Connection[Any], role: str, parts: Any, session: str = "s") -> int:
    row = conn.execute(
        "select seq from memory.append('t', %s, %s, null, parts => %s::jsonb)",
        (session, role, json.dumps(parts)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_psql_appends_a_tool_call_and_reads_it_back(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'Weather in Oslo?')")
        _append(conn, "assistant", [CALL])
        _append(conn, "tool", [RESULT])
        rows = conn.execute(
            "select seq, role, content, parts, name from memory.history('t', 's')"
        ).fetchall()
        window = conn.execute(
            "select seq, parts from memory.context('t', 's', 1000) order by seq"
        ).fetchall()
        stored = conn.execute(
            "select structured, tool_parts from memory.messages order by seq"
        ).fetchall()
    assert rows[0] == (1, "user", "Weather in Oslo?", None, None)
    assert rows[1] == (2, "assistant", "", [CALL], None)
    assert rows[2] == (3, "tool", "12 C", [{**RESULT, "is_error": False}], None)
    assert [r[1] for r in window] == [None, [CALL], [{**RESULT, "is_error": False}]]
    assert stored == [(False, 0), (True, 1), (True, 1)]


BAD_PARTS = {
    "unknown type": ("user", [{"type": "audio", "url": "x"}], "ME022"),
    "unknown field": ("user", [{"type": "text", "text": "a", "colour": "red"}], "ME022"),
    "result without call id": ("tool", [{"type": "tool_result", "content": "x"}], "ME022"),
    "blank call id": ("tool", [{"type": "tool_result", "call_id": "", "content": "x"}], "ME022"),
    "arguments not an object": ("assistant", [{**CALL, "arguments": '{"a": 1}'}], "ME022"),
    "call in a user turn": ("user", [CALL], "ME022"),
    "text in a tool turn": ("tool", [{"type": "text", "text": "x"}], "ME022"),
    "result in an assistant turn": ("assistant", [RESULT], "ME022"),
    "no reference": ("user", [{"type": "image"}], "ME022"),
    "two references": ("user", [{"type": "file", "url": "u", "file_id": "f"}], "ME022"),
    "bytes as a data URL": (
        "user",
        [{"type": "image", "url": "data:image/png;base64,AA"}],
        "ME022",
    ),
    "not an array": ("user", {"type": "text", "text": "a"}, "ME022"),
    "empty": ("user", [], "ME022"),
    "part not an object": ("user", ["hello"], "ME022"),
    "over the size limit": ("user", [{"type": "text", "text": "x" * 4194305}], "ME008"),
    "unknown role": ("robot", [{"type": "text", "text": "a"}], "ME010"),
}


@pytest.mark.parametrize("case", list(BAD_PARTS))
def test_bad_parts_are_refused_with_a_hint_and_nothing_is_written(dsn: str, case: str) -> None:
    role, parts, code = BAD_PARTS[case]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'before')")
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(
                "select * from memory.append_many('t', 's', array["
                "row('user', 'fine', null, '{}', null, null, null, null)::memory.turn_input, "
                "row(%s, null, null, '{}', null, null, %s::jsonb, null)::memory.turn_input])",
                (role, json.dumps(parts)),
            )
        count = conn.execute("select count(*) from memory.messages").fetchone()
    assert caught.value.sqlstate == code
    assert caught.value.diag.message_hint
    mapped = error_for_sqlstate(code)
    assert mapped is not None
    assert count == (1,)


def test_content_and_parts_together_are_refused(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, pytest.raises(psycopg.Error) as caught:
        conn.execute(
            "select memory.append('t', 's', 'user', 'text', parts => %s::jsonb)",
            (json.dumps([{"type": "text", "text": "text"}]),),
        )
    assert caught.value.sqlstate == "ME002"


def test_personal_data_inside_parts_is_redacted_but_ids_are_kept(dsn: str) -> None:
    call = {
        "type": "tool_call",
        "id": "call_ann@example.org",  # an id is never rewritten
        "name": "send_mail",
        "arguments": {"to": ["ann@example.org"], "body": {"text": "card 4111 1111 1111 1111"}},
    }
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('select memory.configure_pii(\'t\', \'{"email": "redact", "card": "mask"}\')')
        _append(conn, "assistant", [call])
        parts, metadata = conn.execute(
            "select parts, metadata from memory.history('t', 's')"
        ).fetchone() or (None, None)
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("select memory.configure_pii('t', '{\"email\": \"block\"}')")
            _append(conn, "tool", [{"type": "tool_result", "call_id": "c", "content": "bob@x.org"}])
    assert parts == [
        {
            **call,
            "arguments": {"to": ["[EMAIL]"], "body": {"text": "card **** **** **** 1111"}},
        }
    ]
    assert metadata["pii"] == ["card", "email"]
    assert caught.value.sqlstate == "ME019"


def test_search_finds_tool_names_and_argument_values(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'hello there')")
        _append(conn, "assistant", [{**CALL, "arguments": {"city": "Trondheim", "days": 3}}])
        _append(conn, "tool", [{"type": "tool_result", "call_id": "call_1", "content": "sleet"}])
        found = {
            q: [
                r[0]
                for r in conn.execute(
                    "select seq from memory.recall('t', 's', %s) where score > 0.5", (q,)
                )
            ]
            for q in ("trondheim", "weather", "sleet")
        }
    assert 2 in found["trondheim"] and 2 in found["weather"]
    assert 3 in found["sleet"]


def test_parts_are_sealed_and_keep_their_search_after_reencryption(dsn: str) -> None:
    from pymem.security.keys import generate_master_key

    key = generate_master_key()
    keyed = f"{dsn} options='-c pymem.master_key={key}'"
    with psycopg.connect(keyed, autocommit=True) as conn:
        conn.execute("select memory.configure_encryption('t', 'content_with_search')")
        _append(conn, "assistant", [{**CALL, "arguments": {"city": "Zanzibar"}}])
        raw = conn.execute("select content, sealed is not null from memory.messages").fetchone()
        conn.execute("select memory.rotate_key('t')")
        while conn.execute("select messages from memory.reencrypt('t')").fetchone() != (0,):
            pass
        parts = conn.execute("select parts from memory.history('t', 's')").fetchone()
        found = conn.execute("select seq from memory.recall('t', 's', 'zanzibar')").fetchall()
    assert raw == (None, True)
    assert parts == ([{**CALL, "arguments": {"city": "Zanzibar"}}],)
    assert found == [(1,)]


# -- windows stay valid for the model APIs ---------------------------------------------


def _write(conn: psycopg.Connection[Any], drawn: list[tuple[Any, ...]]) -> None:
    """The transcript as a SQL client appends it."""
    for m in transcript(drawn):
        parts = m.parts_json()
        conn.execute(
            "select memory.append('t', 'p', %s, %s, %s, parts => %s::jsonb)",
            (m.role, None if parts else m.content, m.tokens, json.dumps(parts) if parts else None),
        )


def _check_valid(rows: list[tuple[Any, ...]], budget: int, overhead: int) -> None:
    turns = [r for r in rows if r[0] != "summary"]
    assert sum(r[3] + overhead for r in rows) <= budget
    if turns:
        assert (turns[0][1], turns[0][2] is None) != ("tool", False), "never a result first"
    open_calls: set[str] = set()
    calling = False  # the previous turn made calls (none answered yet)
    for _, role, parts, _ in turns:
        if role == "tool" and parts is not None:
            (result,) = parts
            assert result["call_id"] in open_calls, "a result follows its call"
            open_calls.discard(result["call_id"])
            calling = False
            continue
        calls = {p["id"] for p in parts or [] if p["type"] == "tool_call"}
        if calls and calling:  # parallel calls stored one turn each
            open_calls |= calls
            continue
        assert not open_calls, "every call is answered before the next turn"
        open_calls, calling = calls, bool(calls)
    assert not open_calls


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    drawn=st.lists(steps(40), min_size=1, max_size=25),
    budget=st.integers(0, 400),
    overhead=st.integers(0, 4),
    strategy=st.sampled_from(["recent", "summary", "hybrid"]),
)
def test_every_window_keeps_tool_calls_with_all_their_results(
    dsn: str, drawn: list[tuple[Any, ...]], budget: int, overhead: int, strategy: str
) -> None:
    with psycopg.connect(dsn) as conn:
        _write(conn, drawn)
        rows = conn.execute(
            "select part, role, parts, tokens from memory.context('t', 'p', %s, 'turn ok f',"
            " strategy => %s, message_overhead => %s) order by part = 'summary' desc, seq",
            (budget, strategy, overhead),
        ).fetchall()
        conn.rollback()
    _check_valid(rows, budget, overhead)
