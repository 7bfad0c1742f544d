"""How PostgreSQL results become pymem values (shared by the async and sync backends)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar, cast

from psycopg.rows import RowFactory, RowMaker, class_row

from ..errors import UNREACHABLE_HINT, DatabaseUnavailable, first_line
from ..models import ContextItem, ContextRequest, ContextWindow

T = TypeVar("T")
R = TypeVar("R", covariant=True)


class _Tuple(Protocol[R]):
    _fields: tuple[str, ...]

    def _make(self, values: Iterable[Any]) -> R: ...


def _names(cursor: Any) -> tuple[str, ...]:
    """The result's column names, read from the result itself (building
    ``cursor.description`` looks up each column's type as well)."""
    result = cursor.pgresult
    if result is None:
        return ()
    return tuple([result.fname(i).decode() for i in range(result.nfields)])


def tuple_row(cls: type[R]) -> RowFactory[R]:
    """Rows as ``cls`` (a NamedTuple), matched to the result columns by name.

    The column names are checked against the fields once per result, so the
    fast positional build can never put a value in the wrong field.
    """
    maker = cast(_Tuple[R], cls)

    def factory(cursor: Any) -> RowMaker[R]:
        names = _names(cursor)
        if names != maker._fields:
            raise TypeError(f"{cls.__name__} expects columns {maker._fields}, got {names}")
        return maker._make

    return factory


def dataclass_row(cls: type[R]) -> RowFactory[R]:
    """Rows as ``cls`` (a dataclass), built from the values in column order when
    the result's columns are its fields in order (checked once per result),
    else by name (psycopg's class_row)."""
    every = dataclasses.fields(cls)  # type: ignore[arg-type]
    by_name = class_row(cls)
    if not all(f.init and not f.kw_only for f in every):
        return by_name  # some field cannot be given by position
    fields = tuple(f.name for f in every)

    def factory(cursor: Any) -> RowMaker[R]:
        if _names(cursor) == fields:
            return lambda values: cls(*values)
        return by_name(cursor)

    return factory


_FACTORIES: dict[type[Any], Any] = {}


def row_factory(row: type[T]) -> Any:
    """The row factory for ``row`` (made once per type); it serves sync and
    async cursors alike."""
    found = _FACTORIES.get(row)
    if found is None:
        found = _FACTORIES[row] = tuple_row(row) if hasattr(row, "_make") else dataclass_row(row)
    return found


def window(items: list[ContextItem], request: ContextRequest) -> ContextWindow:
    return ContextWindow(
        items=tuple(items),
        budget=request.budget,
        strategy=request.strategy,
        message_overhead=request.message_overhead,
    )


def open_failed(exc: Exception) -> DatabaseUnavailable:
    """The error for a pool that cannot reach its server, with the server's reason."""
    reason = first_line(exc)
    return DatabaseUnavailable(
        f"memory: cannot connect to PostgreSQL: {reason}", hint=UNREACHABLE_HINT
    )
