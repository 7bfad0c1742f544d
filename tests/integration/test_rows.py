"""Result rows as pymem values (pymem.backends.rows), against a real server:
positional builds only when the columns are the fields in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg
import pytest

from pymem.backends.rows import dataclass_row, row_factory, tuple_row


@dataclass(frozen=True)
class Pair:
    a: int
    b: str


@dataclass(frozen=True)
class Tagged:
    a: int
    b: str = field(kw_only=True)


class Row(NamedTuple):
    a: int
    b: str


def _rows(dsn: str, query: str, factory: Any) -> list[Any]:
    with psycopg.connect(dsn) as conn, conn.cursor(row_factory=factory) as cur:
        cur.execute(query)
        return cur.fetchall()


def test_dataclass_rows_by_position_by_name_and_keyword(dsn: str) -> None:
    assert _rows(dsn, "select 1 as a, 'x' as b", dataclass_row(Pair)) == [Pair(1, "x")]
    # Columns in another order: matched by name, never by position.
    assert _rows(dsn, "select 'x' as b, 1 as a", dataclass_row(Pair)) == [Pair(1, "x")]
    # A keyword-only field: always by name.
    assert _rows(dsn, "select 1 as a, 'x' as b", dataclass_row(Tagged)) == [Tagged(1, b="x")]


def test_named_tuple_rows_refuse_other_columns(dsn: str) -> None:
    assert _rows(dsn, "select 1 as a, 'x' as b", tuple_row(Row)) == [Row(1, "x")]
    with pytest.raises(TypeError, match="expects columns"):
        _rows(dsn, "select 'x' as b, 1 as a", tuple_row(Row))


def test_row_factories_are_made_once_per_type() -> None:
    assert row_factory(Pair) is row_factory(Pair)
    assert row_factory(Row) is row_factory(Row)
