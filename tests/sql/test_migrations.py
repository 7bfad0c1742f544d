"""Migrations and sql/: the database they build is the one the code expects."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import psycopg
import pytest

from pymem.db.migrate import apply_sql, migrate, pending_migrations, rollback
from pymem.db.paths import migrations_dir

from .snapshot import snapshot

HERE = Path(__file__).parent


def _snapshot(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return snapshot(conn)


def _expected() -> list[str]:
    return (HERE / "expected_schema.txt").read_text().splitlines()


def test_schema_matches_snapshot(dsn: str) -> None:
    assert _snapshot(dsn) == _expected(), "run `make schema-snapshot` and review the diff"


def _ids() -> tuple[str, ...]:
    folder = migrations_dir()
    return tuple(
        sorted(
            p.stem
            for p in [*folder.glob("pymem_*.sql"), *folder.glob("pymem_*.py")]
            if not p.name.endswith(".rollback.sql")
        )
    )


def test_up_down_up_on_an_empty_database(empty_dsn: str) -> None:
    first = migrate(empty_dsn)
    assert first.applied == _ids()
    assert _snapshot(empty_dsn) == _expected()
    assert pending_migrations(empty_dsn) == []

    back = rollback(empty_dsn)
    assert back.rolled_back == tuple(reversed(_ids()))
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select to_regnamespace('memory')").fetchone() == (None,)

    again = migrate(empty_dsn)
    assert again.applied == first.applied
    assert _snapshot(empty_dsn) == _expected()


def test_each_migration_rolls_back_alone_then_forward(empty_dsn: str) -> None:
    migrate(empty_dsn)
    for expected in reversed(_ids()):
        back = rollback(empty_dsn, steps=1)
        assert back.rolled_back == (expected,)
        with psycopg.connect(empty_dsn) as conn:
            # sql/ matches the newest schema only: its functions are gone until migrate.
            assert conn.execute("select to_regprocedure('memory.stats(text)')").fetchone() == (
                None,
            )
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select to_regnamespace('memory')").fetchone() == (None,)
    migrate(empty_dsn)
    assert _snapshot(empty_dsn) == _expected()


def test_migrate_twice_and_sql_reapplied_change_nothing(dsn: str) -> None:
    before = _snapshot(dsn)
    report = migrate(dsn)
    assert report.applied == () and report.partitions_created == ()
    with psycopg.connect(dsn, autocommit=True) as conn:
        apply_sql(conn)
        apply_sql(conn)
    assert _snapshot(dsn) == before


def test_migrate_keeps_data(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select memory.append('t', 's', 'user', 'survives', 1)")
    migrate(dsn)
    with psycopg.connect(dsn) as conn:
        row = conn.execute("select content from memory.history('t', 's')").fetchone()
    assert row == ("survives",)


def test_every_migration_has_a_rollback_and_a_header() -> None:
    folder = migrations_dir()
    forward = sorted(p for p in folder.glob("*.sql") if not p.name.endswith(".rollback.sql"))
    assert forward, "no migrations found"
    for path in forward:
        assert path.name.startswith("pymem_"), path.name
        assert (folder / path.name.replace(".sql", ".rollback.sql")).exists(), path.name
        assert path.read_text().startswith("-- "), f"{path.name} needs a header comment"
    # Migrations that must run outside a transaction (concurrent index builds)
    # are Python: a docstring header, and every step with its rollback.
    for path in sorted(folder.glob("pymem_*.py")):
        module = ast.parse(path.read_text())
        assert ast.get_docstring(module), f"{path.name} needs a header docstring"
        steps = [
            node
            for node in ast.walk(module)
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "step"
        ]
        assert steps and all(len(s.args) == 2 for s in steps), f"{path.name}: step(apply, rollback)"


def test_released_migrations_are_frozen() -> None:
    folder = migrations_dir()
    pinned = dict(
        reversed(line.split())
        for line in (HERE / "released_migrations.sha256").read_text().splitlines()
        if line.strip()
    )
    for name, digest in pinned.items():
        actual = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert actual == digest, f"{name} was released and must not change: add a new migration"


def test_every_function_is_documented_and_pins_search_path(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        undocumented = conn.execute(
            "select p.oid::regprocedure::text from pg_proc as p "
            "where p.pronamespace = 'memory'::regnamespace "
            "and obj_description(p.oid, 'pg_proc') is null"
        ).fetchall()
        # Inlinable SQL helpers (language sql, immutable or stable, invoker)
        # may not pin it: a pinned setting stops inlining. Nor may a volatile
        # invoker helper whose body is in SQL-standard form (`return ...`),
        # which is bound to its functions and operators when created, so the
        # caller's search_path cannot redirect it. Procedures that commit may
        # not either; they must be security invoker instead. Everything else
        # does.
        unpinned = conn.execute(
            "select p.oid::regprocedure::text from pg_proc as p "
            "join pg_language as l on l.oid = p.prolang "
            "where p.pronamespace = 'memory'::regnamespace "
            "and not coalesce(p.proconfig::text like '%search_path=%', false) "
            "and p.prokind <> 'p' "
            "and (p.prosecdef or l.lanname <> 'sql' "
            "     or (p.provolatile = 'v' and p.prosqlbody is null))"
        ).fetchall()
        definer_procedures = conn.execute(
            "select p.oid::regprocedure::text from pg_proc as p "
            "where p.pronamespace = 'memory'::regnamespace and p.prokind = 'p' "
            "and (p.prosecdef or p.proconfig is not null)"
        ).fetchall()
    assert undocumented == [], "every function needs `comment on function`"
    assert unpinned == [], "every function pins search_path"
    assert definer_procedures == [], "procedures are security invoker and set nothing"


def test_sql_reference_is_up_to_date(dsn: str) -> None:
    from pymem.db.sqlref import ERROR_MEANINGS, render

    with psycopg.connect(dsn) as conn:
        rendered = render(conn)
    committed = (Path(__file__).parents[2] / "docs" / "sql-reference.md").read_text()
    assert rendered == committed, "run `make docs` and commit docs/sql-reference.md"
    from pymem.errors import sql_error_codes

    assert set(ERROR_MEANINGS) == set(sql_error_codes())


def test_embedding_dimension_is_chosen_at_migration(empty_dsn: str) -> None:
    from pymem import Memory, errors

    migrate(empty_dsn, embedding_dim=8)
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("select embedding_dim from memory.settings").fetchone() == (8,)
        index = conn.execute(
            "select pg_get_indexdef('memory.messages_embedding_idx'::regclass)"
        ).fetchone()
    assert index is not None and "vector(8)" in index[0]
    migrate(empty_dsn, embedding_dim=16)  # already chosen: a later run keeps it
    with Memory.connect(empty_dsn) as mem:
        chat = mem.session("s")
        chat.append("user", "eight numbers", embedding=[0.1] * 8)
        with pytest.raises(errors.EmbeddingDimensionMismatch):
            chat.append("user", "too many", embedding=[0.1] * 16)
        assert chat.recall("numbers", query_embedding=[0.1] * 8)[0].vector_rank == 1
