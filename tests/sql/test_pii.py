"""PII detection and redaction in SQL, measured on a seeded labelled corpus."""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from pii_corpus import corpus, score

STRUCTURED = ("email", "card", "iban", "ip", "national_id", "secret")


def test_structured_kinds_are_found(dsn: str) -> None:
    with psycopg.connect(dsn) as conn:
        table = score(conn, corpus(700, seed=11))
    for kind in STRUCTURED:
        precision, recall, support = table[kind]
        assert support > 50
        assert recall >= 0.99, (kind, recall)
        assert precision >= 0.95, (kind, precision)
    assert table["phone"][1] >= 0.9


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        ("card 4111 1111 1111 1111 ok", {"card"}),
        ("card 4111 1111 1111 1112 is not one", set()),  # fails Luhn
        ("IBAN DE89 3704 0044 0532 0130 00", {"iban"}),
        ("IBAN DE89 3704 0044 0532 0130 01", set()),  # fails mod 97
        ("from 10.0.0.256 to 10.0.0.255", {"ip"}),
        ("key AKIAIOSFODNN7EXAMPLE leaked", {"secret"}),
        ("no personal data in 2024, order 55321, version 3.10.2", set()),
    ],
)
def test_scan_rules(dsn: str, text: str, kinds: set[str]) -> None:
    with psycopg.connect(dsn) as conn:
        found = {
            r[0] for r in conn.execute("select kind from memory.pii_scan(%s)", (text,)).fetchall()
        }
    assert found == kinds


def test_redact_mask_and_tag(dsn: str) -> None:
    text = "Mail ann@example.org, card 4111 1111 1111 1111."
    with psycopg.connect(dsn) as conn:

        def run(action: str) -> tuple[str, list[str]]:
            row = conn.execute("select * from memory.redact(%s, %s)", (text, action)).fetchone()
            assert row is not None
            return row[0], row[1]

        assert run("redact") == ("Mail [EMAIL], card [CARD].", ["card", "email"])
        masked, found = run("mask")
        assert masked.endswith("**** **** **** 1111.") and "ann@" not in masked
        assert found == ["card", "email"]
        assert run("tag") == (text, ["card", "email"])
        with pytest.raises(psycopg.Error) as caught:
            conn.execute("select * from memory.redact('x', 'shred')")
        assert caught.value.sqlstate == "ME002"
