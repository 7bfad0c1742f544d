from __future__ import annotations

import re
from pathlib import Path

import pytest

from pymem import errors

ROOT = Path(__file__).parents[2]


def _codes_in_sql() -> set[str]:
    text = "\n".join(p.read_text() for p in (ROOT / "sql").glob("*.sql"))
    return set(re.findall(r"errcode = '(ME\d{3})'", text))


def test_every_sql_error_code_is_mapped() -> None:
    assert _codes_in_sql() <= errors.sql_error_codes()


def test_every_mapped_code_is_raised_somewhere() -> None:
    assert errors.sql_error_codes() <= _codes_in_sql()


@pytest.mark.parametrize("code", sorted(errors.sql_error_codes()))
def test_mapped_errors_are_pymem_errors_with_a_hint(code: str) -> None:
    cls = errors.error_for_sqlstate(code)
    assert cls is not None and issubclass(cls, errors.PymemError)
    err = cls("memory: boom", hint="do this")
    assert str(err) == f"memory: boom (hint: do this) [correlation id {err.correlation_id}]"


def test_caller_mistakes_are_value_errors() -> None:
    for cls in (
        errors.InvalidArgument,
        errors.InvalidRole,
        errors.InvalidBudget,
        errors.UnknownStrategy,
        errors.EmbeddingDimensionMismatch,
    ):
        assert issubclass(cls, ValueError)
    assert issubclass(errors.SessionNotFound, LookupError)
    assert issubclass(errors.DatabaseUnavailable, ConnectionError)


def test_default_hints() -> None:
    assert errors.SessionNotFound("x").hint
    assert errors.InvalidRole("x").hint


def test_troubleshooting_explains_every_error_code() -> None:
    from pathlib import Path

    from pymem.errors import sql_error_codes

    guide = (Path(__file__).parents[2] / "docs" / "troubleshooting.md").read_text()
    missing = [code for code in sorted(sql_error_codes()) if f"| `{code}` |" not in guide]
    assert missing == [], "docs/troubleshooting.md needs a row for each"
    for name in ("DeadlineExceeded", "DatabaseCircuitOpen", "InsecureTransport", "LockTimeout"):
        assert f"| `{name}` |" in guide
