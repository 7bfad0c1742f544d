"""Render docs/sql-reference.md from the function comments in schema ``memory``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jinja2
import psycopg

from ..errors import error_for_sqlstate, sql_error_codes

_VOLATILITY = {"i": "immutable", "s": "stable", "v": "volatile"}

ERROR_MEANINGS = {
    "ME001": "session not found",
    "ME002": "invalid argument",
    "ME003": "session is soft-deleted",
    "ME004": "unknown context strategy",
    "ME005": "budget missing or negative",
    "ME006": "invalid identifier (empty, over 255 characters, control characters)",
    "ME007": "embedding dimension differs from the configured one",
    "ME008": "content over the size limit, or message over the token cap",
    "ME009": "metadata not a JSON object, or too large",
    "ME010": "unknown role",
    "ME011": "idempotency key already used for another message",
    "ME012": "session belongs to another user",
    "ME013": "job no longer held by this worker (lease expired)",
    "ME014": "summary range does not continue or span the existing digests",
    "ME016": "the audit log is append-only",
    "ME017": "the transaction does not act for this tenant (unset, another, or not granted)",
    "ME018": "master key missing, malformed or not the one that wrapped the data key",
    "ME019": "personal data that the tenant's policy blocks",
    "ME020": "the session expired (its expires_at has passed)",
    "ME021": "pg_cron is not loaded, or lives in another database (cron.database_name)",
    "ME022": "a message part that cannot be stored (unknown type or field, no call id, ...)",
}


@dataclass(frozen=True, slots=True)
class FunctionDoc:
    name: str
    arguments: str
    result: str | None  # None: a procedure (CALL)
    comment: str
    volatility: str
    security: str


def _format_args(arguments: str) -> str:
    parts = [p.strip() for p in re.split(r",\s*(?![^()]*\))", arguments) if p.strip()]
    if len(parts) <= 2:
        return ", ".join(parts)
    return "\n    " + ",\n    ".join(parts) + "\n"


def function_docs(conn: psycopg.Connection[Any]) -> list[FunctionDoc]:
    rows = conn.execute(
        """
        select p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
               coalesce(obj_description(p.oid, 'pg_proc'), ''), p.provolatile::text,
               p.prosecdef
          from pg_proc as p
         where p.pronamespace = 'memory'::regnamespace
           and left(p.proname, 1) <> '_'
         order by p.proname, p.oid::regprocedure::text
        """
    ).fetchall()
    return [
        FunctionDoc(
            name=name,
            arguments=_format_args(args),
            result=result,
            comment=comment.strip(),
            volatility=_VOLATILITY.get(vol, vol),
            security="definer" if secdef else "invoker",
        )
        for name, args, result, comment, vol, secdef in rows
    ]


def render(conn: psycopg.Connection[Any]) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(resources.files("pymem.db") / "templates")),
        keep_trailing_newline=True,
        autoescape=False,
    )
    errors = []
    for code in sorted(sql_error_codes()):
        exc = error_for_sqlstate(code)
        errors.append((code, ERROR_MEANINGS.get(code, ""), exc.__name__ if exc else ""))
    template = env.get_template("sql_reference.md.j2")
    return template.render(functions=function_docs(conn), errors=errors)
