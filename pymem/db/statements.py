"""Split a file of SQL into its statements, as psql does.

``pymem migrate`` sends the ``sql/`` files one statement at a time: Citus
propagates DDL (functions, policies, triggers) to its workers statement by
statement and refuses several of them inside one multi-statement query.

A semicolon ends a statement unless it is inside a comment, a quoted string
or identifier, a dollar-quoted body, or a ``BEGIN ATOMIC ... END`` function
body (whose CASE ... END pairs are counted, as psql counts them).
"""

from __future__ import annotations

import re
from typing import Final

_DOLLAR_TAG: Final = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_WORD: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def split_sql(text: str) -> list[str]:
    """The statements of ``text``, each without its semicolon; empty ones dropped."""
    statements: list[str] = []
    start = 0
    i = 0
    n = len(text)
    atomic_depth = 0  # inside BEGIN ATOMIC: 1 + the CASE blocks open
    previous_word = ""
    while i < n:
        char = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            i = _skip_block_comment(text, i)
        elif char == "'":
            escapes = i > 0 and text[i - 1] in "eE" and not _is_word_char(text, i - 2)
            i = _skip_quoted(text, i, "'", backslash=escapes)
        elif char == '"':
            i = _skip_quoted(text, i, '"', backslash=False)
        elif (
            char == "$" and (match := _DOLLAR_TAG.match(text, i)) and not _is_word_char(text, i - 1)
        ):
            tag = match.group(0)
            end = text.find(tag, match.end())
            i = n if end < 0 else end + len(tag)
        elif char == ";" and atomic_depth == 0:
            _keep(statements, text[start:i])
            start = i + 1
            i += 1
            previous_word = ""
        elif (word := _WORD.match(text, i)) and not _is_word_char(text, i - 1):
            lowered = word.group(0).lower()
            if previous_word == "begin" and lowered == "atomic" and atomic_depth == 0:
                atomic_depth = 1
            elif atomic_depth and lowered == "case":
                atomic_depth += 1
            elif atomic_depth and lowered == "end":
                atomic_depth -= 1
            previous_word = lowered
            i = word.end()
        else:
            i += 1
    _keep(statements, text[start:])
    return statements


def _keep(statements: list[str], statement: str) -> None:
    if _has_code(statement):
        statements.append(statement.strip())


def _has_code(statement: str) -> bool:
    """Whether a piece holds more than whitespace and comments."""
    stripped = re.sub(r"--[^\n]*", "", statement)
    stripped = re.sub(r"/\*.*?\*/", "", stripped, flags=re.DOTALL)
    return bool(stripped.strip())


def _is_word_char(text: str, index: int) -> bool:
    return index >= 0 and (text[index].isalnum() or text[index] in "_$")


def _skip_quoted(text: str, i: int, quote: str, *, backslash: bool) -> int:
    """The index after the quoted string or identifier that starts at ``i``."""
    i += 1
    while i < len(text):
        if backslash and text[i] == "\\":
            i += 2
            continue
        if text[i] == quote:
            if text.startswith(quote * 2, i):  # a doubled quote stands for one
                i += 2
                continue
            return i + 1
        i += 1
    return i


def _skip_block_comment(text: str, i: int) -> int:
    """The index after the (possibly nested) block comment that starts at ``i``."""
    depth = 0
    while i < len(text):
        if text.startswith("/*", i):
            depth += 1
            i += 2
        elif text.startswith("*/", i):
            depth -= 1
            i += 2
            if depth == 0:
                return i
        else:
            i += 1
    return i
