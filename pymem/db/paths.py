"""Where the SQL that builds the database lives: in a wheel or in a checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parents[1]


def _locate(packaged: str, checkout: str) -> Path:
    inside = _PACKAGE / packaged
    if inside.is_dir():
        return inside
    beside = _PACKAGE.parent / checkout
    if beside.is_dir():
        return beside
    raise FileNotFoundError(f"pymem: cannot find {checkout}/ (looked in {inside} and {beside})")


def migrations_dir() -> Path:
    """The yoyo migrations folder (``migrations/``)."""
    return _locate("_migrations", "migrations")


def sql_dir() -> Path:
    """The repeatable definitions folder (``sql/``)."""
    return _locate("_sql", "sql")


def sql_files() -> list[Path]:
    """The ``sql/`` files in the order they are applied."""
    return sorted(sql_dir().glob("*.sql"))
