from __future__ import annotations

import re
from pathlib import Path

import pytest

from pymem.db.queries import QUERIES, parse_queries

ROOT = Path(__file__).parents[2]


def test_parse_rejects_duplicates_and_empty_blocks() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        parse_queries("-- name: a\nselect 1;\n-- name: a\nselect 2;")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- name: a\n-- only a comment\n")
    with pytest.raises(ValueError, match="before the first"):
        parse_queries("select 1;\n-- name: a\nselect 2;")


def test_parse_keeps_bodies_and_drops_comments() -> None:
    parsed = parse_queries(
        "-- top comment\n\n-- name: one\n-- doc\nselect 1;\n-- name: two\nselect\n  2;\n"
    )
    assert parsed == {"one": "select 1;", "two": "select\n  2;"}


def test_every_defined_query_is_used_and_every_used_query_defined() -> None:
    source = "\n".join(p.read_text() for p in (ROOT / "pymem").rglob("*.py"))
    used = set(re.findall(r'QUERIES\["([a-z_]+)"\]', source))
    used |= set(re.findall(r'_(?:rows|scalar|tuples)\(\s*"([a-z_]+)"', source))
    defined = set(QUERIES)
    assert used - defined == set(), "used but not defined in queries.sql"
    # schema_version is read by tooling, everything else by the backends
    assert defined - used <= {"schema_version", "maintain"}
