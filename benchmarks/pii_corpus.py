"""A seeded, labelled corpus of personal data and near-misses, and its score.

Usage: python benchmarks/pii_corpus.py [--samples 2400] [--dsn DSN]
Prints precision and recall per kind of memory.pii_scan on the corpus.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
from collections import Counter
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

KINDS = ("email", "card", "iban", "ip", "national_id", "phone", "secret")
TEMPLATES = [
    "Please write to me at {} tomorrow.",
    "My details: {}",
    "ok so it's {} if you need it",
    "Note for the file - {} (confirmed).",
    "{}",
    "I think the one you want is {}, right?",
]


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _secret(rng: random.Random) -> str:
    alnum = string.ascii_letters + string.digits
    return rng.choice(
        [
            "sk-" + "".join(rng.choices(alnum, k=40)),
            "AKIA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16)),
            "ghp_" + "".join(rng.choices(alnum, k=36)),
            "xoxb-"
            + "".join(rng.choices(string.digits, k=12))
            + "-"
            + "".join(rng.choices(alnum, k=24)),
        ]
    )


def corpus(n: int, seed: int = 7) -> list[tuple[str, str | None]]:
    """(text, kind or None for a near-miss that holds no personal data)."""
    from faker import Faker

    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
    Faker.seed(seed)
    rng = random.Random(seed)
    makers = {
        "email": fake.email,
        "card": lambda: fake.credit_card_number(),
        "iban": fake.iban,
        "ip": lambda: fake.ipv4() if rng.random() < 0.6 else fake.ipv6(),
        "national_id": lambda: fake["en_US"].ssn(),
        "phone": lambda: (
            fake["en_US"].phone_number() if rng.random() < 0.5 else fake["en_GB"].phone_number()
        ),
        "secret": lambda: _secret(rng),
    }

    def near_miss() -> str:
        card = fake.credit_card_number()
        while _luhn_ok(card):
            card = card[:-1] + str((int(card[-1]) + 1) % 10)
        return rng.choice(
            [
                card,  # fails Luhn
                f"{rng.randint(256, 999)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.1",
                fake.date(),
                f"order #{rng.randint(1000, 99999)}",
                f"${rng.randint(1, 999)}.99",
                f"version {rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}",
                fake.sentence(),
                f"room {rng.randint(100, 999)}",
                fake.street_address(),
                "user at example dot com",
                f"{rng.randint(10, 99)} items",
            ]
        )

    out: list[tuple[str, str | None]] = []
    for i in range(n):
        if i % 5 == 4:
            out.append((rng.choice(TEMPLATES).format(near_miss()), None))
        else:
            kind = KINDS[i % len(KINDS)]
            out.append((rng.choice(TEMPLATES).format(makers[kind]()), kind))
    return out


def score(
    conn: psycopg.Connection[object], samples: list[tuple[str, str | None]]
) -> dict[str, tuple[float, float, int]]:
    """kind -> (precision, recall, support)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for text, kind in samples:
        found = {
            row[0]
            for row in conn.execute("select kind from memory.pii_scan(%s)", (text,)).fetchall()
        }
        if kind is not None:
            if kind in found:
                tp[kind] += 1
            else:
                fn[kind] += 1
        for other in found - {kind}:
            fp[other] += 1
    result = {}
    for kind in KINDS:
        p = tp[kind] / (tp[kind] + fp[kind]) if tp[kind] + fp[kind] else 1.0
        r = tp[kind] / (tp[kind] + fn[kind]) if tp[kind] + fn[kind] else 1.0
        result[kind] = (p, r, tp[kind] + fn[kind])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=2400)
    parser.add_argument("--dsn")
    args = parser.parse_args()
    samples = corpus(args.samples)

    def run(dsn: str) -> None:
        with psycopg.connect(dsn) as conn:
            table = score(conn, samples)
        print(f"{len(samples)} samples ({sum(1 for _, k in samples if k is None)} near-misses)")
        print(f"{'kind':<13}{'precision':>10}{'recall':>9}{'support':>9}")
        for kind, (p, r, n) in table.items():
            print(f"{kind:<13}{p:>10.3f}{r:>9.3f}{n:>9}")

    if args.dsn:
        run(args.dsn)
        return
    from pymem.db.embedded import EmbeddedPostgres

    with EmbeddedPostgres.temporary("pymem-pii-") as server:
        run(server.dsn())


if __name__ == "__main__":
    main()
