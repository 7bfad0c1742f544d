"""split_sql: a file of SQL into statements, as psql splits it."""

from __future__ import annotations

import json

import pytest
from pglast.parser import parse_sql_json

from pymem.db.paths import sql_files
from pymem.db.statements import split_sql


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("select 1; select 2", ["select 1", "select 2"]),
        ("select 'a;b'; select 'it''s;'", ["select 'a;b'", "select 'it''s;'"]),
        (r"select E'\';'; select 2", [r"select E'\';'", "select 2"]),
        ('select 1 as "x;y"; select 2;', ['select 1 as "x;y"', "select 2"]),
        (
            "-- a; comment\nselect 1; /* b; /* nested; */ c; */ select 2;",
            ["-- a; comment\nselect 1", "/* b; /* nested; */ c; */ select 2"],
        ),
        (
            "create function f() returns int language sql as $fn$ select 1; $fn$; select 2",
            ["create function f() returns int language sql as $fn$ select 1; $fn$", "select 2"],
        ),
        ("select $a$ $b$; $b$ ; $a$; select 2", ["select $a$ $b$; $b$ ; $a$", "select 2"]),
        ("select a$b; select 2", ["select a$b", "select 2"]),
        (
            "create function f(x int) returns int language sql begin atomic"
            " select case when x > 0 then 1 else 2 end; select 3; end; select 4",
            [
                "create function f(x int) returns int language sql begin atomic"
                " select case when x > 0 then 1 else 2 end; select 3; end",
                "select 4",
            ],
        ),
        (";; -- only a comment\n;", []),
    ],
)
def test_statements_end_at_semicolons_outside_quotes_bodies_and_comments(
    text: str, expected: list[str]
) -> None:
    assert split_sql(text) == expected


def test_every_sql_file_splits_as_postgresql_parses_it() -> None:
    for path in sql_files():
        text = path.read_text(encoding="utf-8")
        statements = split_sql(text)
        parsed = json.loads(parse_sql_json(text))["stmts"]
        assert len(statements) == len(parsed), path.name
        for statement in statements:
            assert len(json.loads(parse_sql_json(statement))["stmts"]) == 1, statement[:80]
