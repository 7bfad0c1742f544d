"""Pure-Python twins of the SQL ranking and assembly rules (for InMemoryBackend).

They follow memory.recall, memory._summary_cover and memory.context step by
step. Text matching differs on purpose: PostgreSQL stems words with its
english dictionary, this module only lowercases them and drops stopwords.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Final

from ..models import StoredMessage, Summary
from ..validation import parts_text

K1: Final = 1.2
B: Final = 0.75
RRF_K: Final = 60.0
# Sessions longer than EXACT_UPTO turns: frequencies sampled from the newest
# WINDOW turns, candidates from about BUDGET turns (as memory.recall).
EXACT_UPTO: Final = 1000
WINDOW: Final = 500
BUDGET: Final = 250
_WORD = re.compile(r"\w+")
_STOPWORDS_TEXT = """
a an and are as at be been but by do does did for from had has have he her him his how i
if in into is it its me my no not of on or our she so than that the their them then
there these they this to too us was we were what when where which who whom why will with
you your
"""
_HEDGES_TEXT = """
would like likely might may could think consider say said kind type thing something
probably possibly
"""
STOPWORDS: Final = frozenset(_STOPWORDS_TEXT.split())
# Words that phrase a question rather than name its subject.
HEDGES: Final = frozenset(_HEDGES_TEXT.split())


def search_text(m: StoredMessage) -> str:
    """What full-text search reads of a turn: its text, or its parts' text with
    tool names and argument values (memory._search_vector)."""
    return m.content if m.parts is None else parts_text(m.parts, searchable=True)


def tool_parts(m: StoredMessage) -> int:
    """A turn's tool calls or tool results (memory.messages.tool_parts)."""
    if m.parts is None:
        return 0
    return sum(1 for p in m.parts if p.get("type") in ("tool_call", "tool_result"))


def is_call(m: StoredMessage) -> bool:
    """An assistant turn with tool calls."""
    return m.role == "assistant" and tool_parts(m) > 0


def is_result(m: StoredMessage) -> bool:
    """A tool turn with tool results (a plain-text tool turn is not one)."""
    return m.role == "tool" and tool_parts(m) > 0


def complete_groups(
    rows: Sequence[StoredMessage], before: StoredMessage | None = None
) -> list[StoredMessage]:
    """Contiguous turns without broken tool groups (memory._tail): the call turns
    in a row and the results after them stay only if every call is answered;
    results before the first call are left out, and so is a group that starts
    at ``before``, the turn just before ``rows``."""
    groups: list[list[StoredMessage]] = []
    after_call = False
    for m in [before, *rows] if before is not None else rows:
        if is_result(m) or (is_call(m) and after_call):
            if groups:
                groups[-1].append(m)
        else:
            groups.append([m])
        after_call = is_call(m)
    kept: list[StoredMessage] = []
    for group in groups:
        if group[0] is before:
            continue
        asked, answered = _calls_and_results(group)
        for m in group:
            if (asked > 0 and answered == asked) if is_result(m) else asked in (0, answered):
                kept.append(m)
    return kept


def turn_group(messages: Sequence[StoredMessage], member: int) -> list[StoredMessage]:
    """The complete tool group of turn ``member`` (memory._turn_group); [] when
    some call is unanswered or the member has no call before it."""
    at = next((i for i, m in enumerate(messages) if m.seq == member), None)
    if at is None:
        return []
    head = None
    seen = False
    for i in range(at, -1, -1):
        m = messages[i]
        if is_result(m):
            if seen:
                break
            continue
        if not is_call(m):
            break
        head, seen = i, True
    if head is None:
        return []
    end = head + 1
    seen = False
    while end < len(messages):
        m = messages[end]
        seen = seen or is_result(m)
        if not (is_result(m) or (is_call(m) and not seen)):
            break
        end += 1
    group = list(messages[head:end])
    asked, answered = _calls_and_results(group)
    return group if answered == asked else []


def _calls_and_results(group: Sequence[StoredMessage]) -> tuple[int, int]:
    """The tool calls a group's turns make and the results they give."""
    return (
        sum(tool_parts(m) for m in group if is_call(m)),
        sum(tool_parts(m) for m in group if is_result(m)),
    )


def terms(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]


def bm25_smoothed(
    messages: Sequence[StoredMessage], query: str, before_seq: int | None
) -> list[tuple[int, float]]:
    """(seq, score) best first: BM25 smoothed along the conversation, as memory.recall."""
    wanted = {t for t in terms(query) if t not in HEDGES}
    if not wanted or not messages:
        return []
    docs = [Counter(terms(search_text(m))) for m in messages]
    n = len(messages)
    avgdl = max(sum(m.tokens for m in messages) / n, 1.0)
    if n <= EXACT_UPTO:
        df = {t: float(sum(1 for d in docs if t in d)) for t in wanted}
        scan = None
    else:
        df, scan = _long_session_frequencies(messages, docs, wanted, before_seq)
    idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items() if c}
    raw: dict[int, float] = {}
    for m, d in zip(messages, docs, strict=True):
        if before_seq is not None and m.seq >= before_seq:
            continue
        if scan is not None and not scan(m.seq, d):
            continue
        score = sum(
            idf[t] * d[t] * (K1 + 1) / (d[t] + K1 * (1 - B + B * m.tokens / avgdl))
            for t in idf
            if t in d
        )
        if score > 0:
            raw[m.seq] = score
    present = {m.seq for m in messages if before_seq is None or m.seq < before_seq}
    near = {s + o for s in raw for o in (-2, -1, 0, 1, 2)} & present
    smoothed = {
        s: raw.get(s, 0.0)
        + 0.5 * max(raw.get(s - 1, 0.0), raw.get(s + 1, 0.0))
        + 0.3 * max(raw.get(s - 2, 0.0), raw.get(s + 2, 0.0))
        for s in near
    }
    return sorted(smoothed.items(), key=lambda kv: (-kv[1], -kv[0]))


def _long_session_frequencies(
    messages: Sequence[StoredMessage],
    docs: Sequence[Counter[str]],
    wanted: set[str],
    before_seq: int | None,
) -> tuple[dict[str, float], Callable[[int, Counter[str]], bool]]:
    """Document frequencies and the candidate test of a long session, as memory.recall.

    A term frequent among the newest WINDOW turns gets an estimate; the others
    are counted (exact up to BUDGET). Candidates hold the rarest exactly
    counted selective terms within BUDGET, else they are the newest turns."""
    n = len(messages)
    last = messages[-1].seq
    ceiling = last if before_seq is None else min(last, before_seq - 1)
    newest = [d for m, d in zip(messages, docs, strict=True) if ceiling - WINDOW < m.seq <= ceiling]
    seen = max(len(newest), 1)
    df: dict[str, float] = {}
    exact: dict[str, bool] = {}
    for t in sorted(wanted):
        sampled = sum(1 for d in newest if t in d)
        counted = sum(1 for d in docs if t in d) if sampled * n <= BUDGET * seen else BUDGET + 1
        count = min(counted, BUDGET + 1)  # memory.recall stops counting there
        exact[t] = count <= BUDGET
        df[t] = float(count) if exact[t] else max(count, sampled * n / seen)
    df = {t: c for t, c in df.items() if c > 0}
    idf = {t: math.log(1 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
    least = math.log(1 + (n * 0.8 + 0.5) / (n * 0.2 + 0.5))
    best = max(idf.values(), default=0.0)
    chosen: set[str] = set()
    running = 0.0
    for rank, t in enumerate(sorted(df, key=lambda t: (df[t], t))):
        running += df[t]
        selective = idf[t] >= least or idf[t] >= best
        if exact[t] and selective and (running <= BUDGET or rank == 0):
            chosen.add(t)
    if chosen:
        return df, lambda seq, d: any(t in d for t in chosen)
    return df, lambda seq, d: ceiling - WINDOW < seq <= ceiling and any(t in d for t in df)


def cosine_ranking(
    vectors: dict[int, list[float]], query: Sequence[float], before_seq: int | None
) -> list[int]:
    def distance(v: list[float]) -> float:
        dot = sum(a * b for a, b in zip(v, query, strict=True))
        norm = math.sqrt(sum(a * a for a in v)) * math.sqrt(sum(b * b for b in query))
        return 1 - dot / norm if norm else 1.0

    eligible = [
        (distance(v), s) for s, v in vectors.items() if before_seq is None or s < before_seq
    ]
    return [s for _, s in sorted(eligible)]


def fuse(
    text: list[tuple[int, float]], vector: list[int]
) -> list[tuple[int, float, int | None, int | None]]:
    """(seq, score, text_rank, vector_rank), best first, as memory.recall fuses them."""
    text_rank = {s: i + 1 for i, (s, _) in enumerate(text)}
    vector_rank = {s: i + 1 for i, s in enumerate(vector)}
    bm25 = dict(text)
    out = []
    for seq in set(text_rank) | set(vector_rank):
        if vector:
            score = sum(1 / (RRF_K + r[seq]) for r in (text_rank, vector_rank) if seq in r)
        else:
            score = bm25[seq]
        out.append((seq, score, text_rank.get(seq), vector_rank.get(seq)))
    out.sort(key=lambda x: (-x[1], -x[0]))
    return out


def summary_cover(summaries: Sequence[Summary], upto: int, budget: int) -> list[Summary]:
    """The digests memory._summary_cover picks for turns 1..upto within ``budget``."""
    if budget <= 0 or upto < 1:
        return []
    relevant = [d for d in summaries if d.seq_from <= upto]
    maximal = [
        d
        for d in relevant
        if not any(
            p.level > d.level and p.seq_from <= d.seq_from and p.seq_to >= d.seq_to
            for p in summaries
        )
    ]
    cover: list[Summary] = []
    cost = 0
    for d in sorted(maximal, key=lambda x: -x.seq_to):
        if cost + d.tokens > budget:
            break
        cover.append(d)
        cost += d.tokens
    changed = True
    while changed:
        changed = False
        for best in sorted((d for d in cover if d.level > 1), key=lambda x: -x.seq_to):
            children = [
                c
                for c in summaries
                if c.level == best.level - 1
                and c.seq_from >= best.seq_from
                and c.seq_to <= best.seq_to
                and c.seq_from <= upto
            ]
            delta = sum(c.tokens for c in children) - best.tokens
            if children and cost + delta <= budget:
                cover = [d for d in cover if d.summary_id != best.summary_id] + children
                cost += delta
                changed = True
                break
    return sorted(cover, key=lambda d: d.seq_from)


def fit_cover(cover: Sequence[Summary], budget: int, overhead: int) -> list[Summary]:
    """The newest digests of ``cover`` that fit ``budget`` with their overhead."""
    if sum(d.tokens + overhead for d in cover) <= budget:
        return list(cover)
    kept: list[Summary] = []
    used = 0
    for d in sorted(cover, key=lambda x: -x.seq_to):
        if used + d.tokens + overhead > budget:
            break
        kept.append(d)
        used += d.tokens + overhead
    return sorted(kept, key=lambda d: d.seq_from)


def fit_recalled(
    found: Sequence[tuple[StoredMessage, float, int | None, int | None]],
    budget: int,
    overhead: int,
    messages: Sequence[StoredMessage] = (),
) -> list[tuple[StoredMessage, float]]:
    """Recalled turns, best first, that fit ``budget`` (memory._context_recall): a
    tool call or result comes with its whole group from ``messages``, or not at all."""
    picked: list[tuple[StoredMessage, float]] = []
    seen: set[int] = set()
    used = 0
    for message, score, _, _ in found:
        if message.seq in seen:
            continue
        if is_result(message) or is_call(message):
            group = turn_group(messages, message.seq)
        else:
            group = [message]
        cost = sum(m.tokens + overhead for m in group)
        if not group or seen.intersection(m.seq for m in group) or used + cost > budget:
            continue
        picked.extend((m, score) for m in group)
        seen.update(m.seq for m in group)
        used += cost
        if budget - used < overhead + 1:
            break
    return picked


MARKER_TOKENS: Final = 16  # what a shortening marker is counted as (memory._window_cost)


def window_cost(m: StoredMessage, newest_call: int | None, shorten: int | None) -> int:
    """The tokens a turn costs in a window (memory._window_cost)."""
    if (
        shorten is not None
        and is_result(m)
        and m.tokens > shorten + MARKER_TOKENS
        and m.seq < (newest_call or 0)
    ):
        return shorten + MARKER_TOKENS
    return m.tokens


def shortened(m: StoredMessage, keep: int) -> StoredMessage:
    """A tool result turn cut to about ``keep`` tokens with a marker (memory._shortened)."""
    marker = f"\n[pymem: {m.tokens - keep} of this result's {m.tokens} tokens left out]"
    parts = []
    for part in m.parts or []:
        if part.get("type") == "tool_result":
            text = part["content"]
            part = {**part, "content": text[: len(text) * keep // m.tokens] + marker}
        parts.append(part)
    return m._replace(content=parts_text(parts), parts=parts, tokens=keep + MARKER_TOKENS)


def tail(
    messages: Sequence[StoredMessage],
    budget: int,
    overhead: int,
    taken: frozenset[int] = frozenset(),
    shorten: int | None = None,
) -> list[StoredMessage]:
    """The newest contiguous turns that fit, skipping (and not charging) ``taken``,
    without broken tool groups (memory._tail); with ``shorten``, older long tool
    results are cut rather than left out."""
    newest_call = None  # only shortening needs it
    if shorten is not None:
        newest_call = next((m.seq for m in reversed(messages) if is_call(m)), None)
    picked = []
    used = 0
    before = None
    for m in reversed(messages):
        if m.seq in taken:
            picked.append(m)
            continue
        cost = window_cost(m, newest_call, shorten)
        if used + cost + overhead > budget:
            before = m
            break
        used += cost + overhead
        picked.append(m if cost == m.tokens else shortened(m, cost - MARKER_TOKENS))
    picked.reverse()
    return [m for m in complete_groups(picked, before) if m.seq not in taken]
