"""How PostgreSQL results become pymem values (shared by the async and sync backends)."""

from __future__ import annotations

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


def tuple_row(cls: type[R]) -> RowFactory[R]:
    """Rows as ``cls`` (a NamedTuple), matched to the result columns by name.

    The column names are checked against the fields once per result, so the
    fast positional build can never put a value in the wrong field.
    """
    maker = cast(_Tuple[R], cls)

    def factory(cursor: Any) -> RowMaker[R]:
        names = tuple(c.name for c in cursor.description or ())
        if names != maker._fields:
            raise TypeError(f"{cls.__name__} expects columns {maker._fields}, got {names}")
        return maker._make

    return factory


def row_factory(row: type[T]) -> Any:
    """The row factory for ``row``; it serves sync and async cursors alike."""
    return tuple_row(row) if hasattr(row, "_make") else class_row(row)


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
