"""Evidence recall on LoCoMo conversations: which evidence turns reach the context.

For every question with evidence, pymem is asked for a context of a given
token budget (o200k_base counts) with the question as the query; the score is
the share of evidence turns present verbatim in that context. A plain Okapi
BM25 over turns (k1 1.2, b 0.75; a quarter of the budget kept for the newest
turns, the rest filled by rank) is computed in the same run as the baseline.

Usage:
  python benchmarks/locomo.py [DATA_DIR] [--budgets 1000 2000 4000]
                              [--strategies recent summary hybrid] [--dsn DSN] [--cv]
                              [--embedder MODEL]

--cv judges the hybrid window's tunable shares (summary_share, recent_share)
by leave-one-conversation-out cross-validation: for each conversation, the
shares are chosen on the other conversations (best mean recall over the five
categories) and scored on the held-out one; the pooled held-out recall is
printed beside the defaults' recall on the same conversations. A setting
that only looks better on the conversations it was chosen on shows no gain.

--embedder MODEL embeds every turn and question with a sentence-transformers
model (a name or a folder, loaded offline), so that the hybrid window fuses
BM25 with pgvector's cosine ranking; the private database is migrated with
the model's dimension. Without it no embedding model is used.

DATA_DIR holds NN.json files in the LoCoMo format (default: ../shared/data/locomo).
Without --dsn a private PostgreSQL is started and removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pymem import Memory, NewMessage  # noqa: E402
from pymem.context.tokens import TiktokenCounter  # noqa: E402
from pymem.db.embedded import EmbeddedPostgres  # noqa: E402
from pymem.db.migrate import migrate  # noqa: E402

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}


@dataclass
class Turn:
    dia_id: str
    role: str
    content: str
    date: str
    tokens: int = 0


@dataclass
class Conversation:
    name: str
    turns: list[Turn] = field(default_factory=list)
    questions: list[tuple[str, int, list[str]]] = field(default_factory=list)


class Vectors:
    """Embeddings of turns and questions by a sentence-transformers model, or none."""

    def __init__(self, model: str | None) -> None:
        self.model = model
        self._by_text: dict[str, list[float]] = {}
        self._encoder: Any = None
        if model:
            from sentence_transformers import SentenceTransformer

            self._encoder = SentenceTransformer(model, device="cpu")

    @property
    def dimension(self) -> int | None:
        if self._encoder is None:
            return None
        return int(self._encoder.get_sentence_embedding_dimension())

    def prepare(self, texts: list[str]) -> float:
        """Embed ``texts`` once (normalised); returns the seconds it took."""
        if self._encoder is None:
            return 0.0
        t0 = time.perf_counter()
        todo = sorted(set(texts) - self._by_text.keys())
        vectors = self._encoder.encode(todo, batch_size=64, normalize_embeddings=True)
        self._by_text.update(zip(todo, (v.tolist() for v in vectors), strict=True))
        return time.perf_counter() - t0

    def get(self, text: str) -> list[float] | None:
        return self._by_text.get(text) if self._encoder is not None else None


def load(data_dir: Path) -> list[Conversation]:
    conversations = []
    for path in sorted(data_dir.glob("*.json")):
        raw = json.loads(path.read_text())
        conv = Conversation(name=path.stem)
        speaker_a = raw["speaker_a"]
        k = 1
        while f"session_{k}" in raw:
            date = raw.get(f"session_{k}_date_time", "")
            for turn in raw[f"session_{k}"]:
                text = f"{turn['speaker']}: {turn['text']}"
                if turn.get("blip_caption"):
                    text += f" [shares a photo: {turn['blip_caption']}]"
                role = "user" if turn["speaker"] == speaker_a else "assistant"
                conv.turns.append(Turn(turn["dia_id"], role, text, date))
            k += 1
        for qa in raw["qa"]:
            evidence = [
                e.strip()
                for item in qa.get("evidence", [])
                for e in re.split(r"[;,]", item)
                if e.strip()
            ]
            if evidence:
                conv.questions.append((qa["question"], int(qa["category"]), evidence))
        conversations.append(conv)
    return conversations


# -- the baseline: plain BM25 over turns -----------------------------------------


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def bm25_context(conv: Conversation, question: str, budget: int) -> set[str]:
    turns = conv.turns
    recent_budget = budget // 4
    picked: set[str] = set()
    used = 0
    for turn in reversed(turns):
        if used + turn.tokens > recent_budget:
            break
        used += turn.tokens
        picked.add(turn.dia_id)
    docs = [Counter(_words(t.content)) for t in turns]
    lengths = [sum(d.values()) for d in docs]
    avgdl = sum(lengths) / len(lengths)
    df: Counter[str] = Counter()
    for d in docs:
        df.update(d.keys())
    n = len(docs)
    scores = []
    for i, d in enumerate(docs):
        s = 0.0
        for w in set(_words(question)):
            if w in d:
                idf = math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5))
                tf = d[w]
                s += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * lengths[i] / avgdl))
        scores.append((s, i))
    for s, i in sorted(scores, reverse=True):
        if s <= 0:
            break
        turn = turns[i]
        if turn.dia_id in picked or used + turn.tokens > budget:
            continue
        used += turn.tokens
        picked.add(turn.dia_id)
    return picked


# -- pymem ------------------------------------------------------------------------


def ingest(mem: Memory, conv: Conversation, vectors: Vectors) -> dict[int, str]:
    session = mem.session(f"locomo-{conv.name}", tenant="locomo")
    batch = [
        NewMessage(
            t.role,
            t.content,
            tokens=t.tokens,
            metadata={"dia_id": t.dia_id, "date": t.date},
            embedding=vectors.get(t.content),
        )
        for t in conv.turns
    ]
    seq_to_dia = {}
    for start in range(0, len(batch), 500):
        for result, turn in zip(
            session.append_many(batch[start : start + 500]),
            conv.turns[start : start + 500],
            strict=True,
        ):
            seq_to_dia[result.seq] = turn.dia_id
    return seq_to_dia


def summarize_all(mem: Memory) -> int:
    """Drain the summary queue with the offline extractive summarizer."""
    from pymem.ops.worker import Worker

    return Worker(mem, name="locomo").drain()


# -- leave-one-conversation-out cross-validation of the hybrid shares ----------------

# (summary_share, recent_share); (None, None) is memory.context's default.
SHARE_GRID: list[tuple[float | None, float | None]] = [
    (None, None),
    *[(s, r) for s in (0.0, 0.05, 0.2) for r in (0.05, 0.1, 0.2)],
    (0.1, 0.05),
    (0.1, 0.2),
]

Hits = dict[str, dict[int, dict[tuple[float | None, float | None], Counter[int]]]]


def _grid_hits(
    mem: Memory,
    convs: list[Conversation],
    maps: dict[str, dict[int, str]],
    budgets: list[int],
    vectors: Vectors,
) -> tuple[Hits, dict[str, Counter[int]]]:
    """Evidence turns found per conversation, budget and share setting, by category."""
    hits: Hits = {}
    totals: dict[str, Counter[int]] = {}
    for conv in convs:
        chat = mem.session(f"locomo-{conv.name}", tenant="locomo")
        seq_to_dia = maps[conv.name]
        per_budget: dict[int, dict[tuple[float | None, float | None], Counter[int]]] = {
            b: defaultdict(Counter) for b in budgets
        }
        total: Counter[int] = Counter()
        for question, category, evidence in conv.questions:
            wanted = set(evidence)
            total[category] += len(wanted)
            for budget in budgets:
                for shares in SHARE_GRID:
                    window = chat.context(
                        budget=budget,
                        query=question,
                        query_embedding=vectors.get(question),
                        strategy="hybrid",
                        summary_share=shares[0],
                        recent_share=shares[1],
                    )
                    got = {seq_to_dia[i.seq] for i in window if i.part != "summary"}
                    per_budget[budget][shares][category] += len(wanted & got)
        hits[conv.name] = per_budget
        totals[conv.name] = total
    return hits, totals


def _macro(found: Counter[int], total: Counter[int]) -> float:
    """Mean recall over the categories (each category counts the same)."""
    cats = [c for c in CATEGORIES if total[c]]
    return sum(found[c] / total[c] for c in cats) / len(cats)


def _pooled_macro(
    hits: Hits,
    totals: dict[str, Counter[int]],
    names: list[str],
    budget: int,
    shares: tuple[float | None, float | None],
) -> float:
    found: Counter[int] = Counter()
    total: Counter[int] = Counter()
    for name in names:
        found.update(hits[name][budget][shares])
        total.update(totals[name])
    return _macro(found, total)


def cross_validate(
    mem: Memory,
    convs: list[Conversation],
    maps: dict[str, dict[int, str]],
    budgets: list[int],
    vectors: Vectors,
) -> dict[str, Any]:
    hits, totals = _grid_hits(mem, convs, maps, budgets, vectors)
    names = [c.name for c in convs]
    out: dict[str, Any] = {}
    print(
        "\nleave-one-conversation-out: shares chosen on the other conversations, "
        "scored on the held-out one"
    )
    print(
        f"{'budget':>7}  {'setting':<9}{'overall':>9}"
        + "".join(f"{CATEGORIES[c]:>13}" for c in sorted(CATEGORIES))
        + "   macro"
    )
    for budget in budgets:
        pooled: dict[str, Counter[int]] = {"default": Counter(), "cv": Counter()}
        total: Counter[int] = Counter()
        chosen = {}
        for held in names:
            train = [n for n in names if n != held]

            best = max(
                SHARE_GRID,
                key=lambda shares: (
                    _pooled_macro(hits, totals, train, budget, shares),
                    shares == (None, None),  # a tie keeps the default
                ),
            )
            chosen[held] = best
            pooled["cv"].update(hits[held][budget][best])
            pooled["default"].update(hits[held][budget][(None, None)])
            total.update(totals[held])
        row_out = {}
        for label in ("default", "cv"):
            found = pooled[label]
            overall = sum(found[c] for c in CATEGORIES) / sum(total[c] for c in CATEGORIES)
            row = {c: found[c] / total[c] for c in CATEGORIES if total[c]}
            row_out[label] = {
                "overall": overall,
                "macro": _macro(found, total),
                **{CATEGORIES[c]: v for c, v in row.items()},
            }
            print(
                f"{budget:>7}  {label:<9}{overall:>9.3f}"
                + "".join(f"{row.get(c, 0):>13.3f}" for c in sorted(CATEGORIES))
                + f"   {_macro(found, total):.3f}"
            )
        print(
            "         chosen: "
            + ", ".join(
                f"{n} {'default' if s == (None, None) else f'{s[0]}/{s[1]}'}"
                for n, s in chosen.items()
            )
        )
        row_out["chosen"] = {n: list(s) for n, s in chosen.items()}
        out[str(budget)] = row_out
    return out


def evaluate(args: argparse.Namespace, dsn: str, vectors: Vectors) -> dict[str, Any]:
    convs = load(args.data)
    counter = TiktokenCounter("o200k_base")
    for conv in convs:
        for turn in conv.turns:
            turn.tokens = counter.count(turn.content)
    n_q = sum(len(c.questions) for c in convs)
    print(
        f"{len(convs)} conversations, {sum(len(c.turns) for c in convs)} turns, "
        f"{n_q} questions with evidence"
    )
    if vectors.model:
        took = vectors.prepare(
            [t.content for c in convs for t in c.turns]
            + [q for c in convs for q, _, _ in c.questions]
        )
        print(f"embeddings: {vectors.model} ({vectors.dimension} dimensions) in {took:.1f}s")

    found: dict[tuple[str, int], Counter[int]] = defaultdict(Counter)
    total: Counter[int] = Counter()
    latencies: dict[str, list[float]] = defaultdict(list)
    with Memory.connect(dsn, counter="o200k_base", max_size=2) as mem:
        maps = {c.name: ingest(mem, c, vectors) for c in convs}
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("vacuum analyze memory.messages")  # as autovacuum would
        t0 = time.perf_counter()
        jobs = summarize_all(mem)
        print(f"summaries: {jobs} jobs in {time.perf_counter() - t0:.1f}s")
        for conv in convs:
            chat = mem.session(f"locomo-{conv.name}", tenant="locomo")
            seq_to_dia = maps[conv.name]
            for question, category, evidence in conv.questions:
                wanted = set(evidence)
                for budget in args.budgets:
                    total_key = budget
                    for strategy in args.strategies:
                        t1 = time.perf_counter()
                        window = chat.context(
                            budget=budget,
                            query=question,
                            # Only hybrid ranks by it: the others' latency stays theirs.
                            query_embedding=vectors.get(question) if strategy == "hybrid" else None,
                            strategy=strategy,
                        )
                        latencies[strategy].append(time.perf_counter() - t1)
                        got = {seq_to_dia[i.seq] for i in window if i.part != "summary"}
                        hits = len(wanted & got)
                        found[(strategy, budget)][category] += hits
                        found[(strategy, budget)][0] += hits
                    got = bm25_context(conv, question, budget)
                    hits = len(wanted & got)
                    found[("bm25-baseline", budget)][category] += hits
                    found[("bm25-baseline", budget)][0] += hits
                    if total_key == args.budgets[0]:
                        total[category] += len(wanted)
                        total[0] += len(wanted)

    results: dict[str, Any] = {"evidence_turns": dict(total), "recall": {}}
    header = f"{'strategy':<15}{'budget':>7}{'overall':>9}" + "".join(
        f"{CATEGORIES[c]:>13}" for c in sorted(CATEGORIES)
    )
    print("\nevidence recall (share of evidence turns present verbatim in the context)")
    print(header)
    for strategy in [*args.strategies, "bm25-baseline"]:
        for budget in args.budgets:
            hits = found[(strategy, budget)]
            row = {c: hits[c] / total[c] for c in total if total[c]}
            results["recall"][f"{strategy}@{budget}"] = row
            print(
                f"{strategy:<15}{budget:>7}{row[0]:>9.3f}"
                + "".join(f"{row.get(c, 0):>13.3f}" for c in sorted(CATEGORIES))
            )
    if args.cv:
        with Memory.connect(dsn, counter="o200k_base", max_size=2) as mem:
            results["cross_validation"] = cross_validate(mem, convs, maps, args.budgets, vectors)
    for strategy, values in latencies.items():
        values.sort()
        p50 = values[len(values) // 2] * 1000
        p99 = values[int(len(values) * 0.99)] * 1000
        print(
            f"latency {strategy:<8} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms "
            f"(sessions of ~{len(convs[0].turns)} turns)"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("data", nargs="?", type=Path, default=ROOT.parent / "shared/data/locomo")
    parser.add_argument("--budgets", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--strategies", nargs="+", default=["recent", "summary", "hybrid"])
    parser.add_argument("--dsn", help="use this database instead of a private one")
    parser.add_argument(
        "--cv", action="store_true", help="cross-validate the hybrid shares (see above)"
    )
    parser.add_argument(
        "--embedder", metavar="MODEL", help="a sentence-transformers model for embeddings"
    )
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/locomo.json")
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"no data folder {args.data}")
    vectors = Vectors(args.embedder)
    if args.dsn:
        results = evaluate(args, args.dsn, vectors)
    else:
        with EmbeddedPostgres.temporary("pymem-locomo-", migrated=False) as server:
            migrate(server.dsn(), embedding_dim=vectors.dimension)
            results = evaluate(args, server.dsn(), vectors)
    results["embedder"] = vectors.model
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
