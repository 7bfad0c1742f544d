"""Load ``queries.sql`` once into named, literal query strings."""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import LiteralString

_NAME = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s*$")


def parse_queries(text: str) -> dict[str, str]:
    """Split a file of ``-- name: x`` blocks into ``{name: sql}``.

    Comment lines are dropped from each body. Raises ValueError on a duplicate
    name, an empty body, or SQL before the first name.
    """
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        match = _NAME.match(line.strip())
        if match:
            name = match.group("name")
            if name in queries:
                raise ValueError(f"queries.sql:{lineno}: duplicate query name {name!r}")
            current = queries[name] = []
        elif line.strip().startswith("--") or not line.strip():
            continue
        elif current is None:
            raise ValueError(f"queries.sql:{lineno}: SQL before the first '-- name:'")
        else:
            current.append(line)
    result = {name: "\n".join(body).strip() for name, body in queries.items()}
    empty = [name for name, body in result.items() if not body]
    if empty:
        raise ValueError(f"queries.sql: empty queries: {', '.join(empty)}")
    return result


def _load() -> Mapping[str, LiteralString]:
    text = resources.files("pymem.db").joinpath("queries.sql").read_text(encoding="utf-8")
    # The file ships inside the package: its text is as literal as source code.
    return MappingProxyType(parse_queries(text))


QUERIES: Mapping[str, LiteralString] = _load()
