"""Context strategies on every backend: budgets, order, parts, coverage."""

from __future__ import annotations

import itertools

import pytest

from pymem import errors
from pymem.backends.base import MemoryBackend
from pymem.models import ContextRequest, NewMessage, NewSummary, RecallRequest, SessionSettings

T, S = "acme", "s-1"
TOPICS = ["tent", "pole", "invoice", "garden", "violin", "marathon", "passport", "bakery"]


def _conversation(backend: MemoryBackend, n: int = 60, tokens: int = 10) -> None:
    for i in range(1, n + 1):
        topic = TOPICS[i % len(TOPICS)]
        backend.append(
            T,
            S,
            NewMessage(
                "user" if i % 2 else "assistant",
                f"turn {i} talks about the {topic} and nothing else",
                tokens=tokens,
            ),
        )


@pytest.mark.parametrize("strategy", ["recent", "summary", "hybrid"])
def test_never_over_budget_and_in_order(backend: MemoryBackend, strategy: str) -> None:
    _conversation(backend)
    backend.add_summary(
        T, S, NewSummary(level=1, seq_from=1, seq_to=20, content="digest one", tokens=12)
    )
    backend.add_summary(
        T, S, NewSummary(level=1, seq_from=21, seq_to=40, content="digest two", tokens=12)
    )
    for budget, overhead in itertools.product([0, 7, 35, 100, 333, 1000], [0, 4]):
        window = backend.context(
            T,
            S,
            ContextRequest(
                budget=budget, query="violin passport", strategy=strategy, message_overhead=overhead
            ),
        )
        assert window.tokens <= budget
        parts = [i.part for i in window]
        assert parts == sorted(parts, key=lambda p: p != "summary"), "digests come first"
        seqs = [i.seq for i in window if i.part != "summary"]
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))


def test_hybrid_recalls_old_relevant_turns(backend: MemoryBackend) -> None:
    _conversation(backend)
    window = backend.context(
        T, S, ContextRequest(budget=120, query="Which violin did they mention?", strategy="hybrid")
    )
    recalled = [i for i in window if i.part == "recall"]
    recent = [i for i in window if i.part == "recent"]
    assert recalled and all("violin" in i.content for i in recalled[:1])
    assert all(i.score is not None and i.score > 0 for i in recalled)
    assert recent and recent[-1].seq == 60, "the newest turn is always there"
    assert max(i.seq for i in recalled) < min(i.seq for i in recent)


def test_hybrid_without_query_or_digests_is_recent(backend: MemoryBackend) -> None:
    _conversation(backend)
    hybrid = backend.context(T, S, ContextRequest(budget=200, strategy="hybrid"))
    recent = backend.context(T, S, ContextRequest(budget=200, strategy="recent"))
    assert [i.seq for i in hybrid] == [i.seq for i in recent], "unused shares flow on"


def test_summary_covers_every_dropped_turn(backend: MemoryBackend) -> None:
    _conversation(backend, n=80)
    for start in (1, 21, 41, 61):
        backend.add_summary(
            T,
            S,
            NewSummary(
                level=1, seq_from=start, seq_to=start + 19, content=f"digest of {start}", tokens=30
            ),
        )
    backend.add_summary(
        T, S, NewSummary(level=2, seq_from=1, seq_to=80, content="all of it", tokens=25)
    )
    for budget in (100, 200, 400, 800):
        window = backend.context(T, S, ContextRequest(budget=budget, strategy="summary"))
        digests = [i for i in window if i.part == "summary"]
        verbatim = {i.seq for i in window if i.part == "recent"}
        first_verbatim = min(verbatim) if verbatim else 81
        covered = set()
        for d in digests:
            info = next(x for x in backend.list_summaries(T, S) if x.content == d.content)
            covered |= set(range(info.seq_from, info.seq_to + 1))
        dropped = set(range(1, first_verbatim))
        assert dropped <= covered | verbatim, f"turns dropped without a digest at {budget}"
        assert window.tokens <= budget


def test_summary_prefers_fine_digests_when_they_fit(backend: MemoryBackend) -> None:
    _conversation(backend, n=80)
    for start in (1, 21, 41, 61):
        backend.add_summary(
            T,
            S,
            NewSummary(
                level=1, seq_from=start, seq_to=start + 19, content=f"digest of {start}", tokens=30
            ),
        )
    backend.add_summary(
        T, S, NewSummary(level=2, seq_from=1, seq_to=80, content="all of it", tokens=25)
    )
    coarse = backend.context(
        T, S, ContextRequest(budget=100, strategy="summary", summary_share=0.3)
    )
    assert [i.content for i in coarse if i.part == "summary"] == ["all of it"]
    # 450 tokens of recent turns reach back to turn 36: the digests of 1-20
    # and 21-40 replace the coarse one, the later ones would repeat verbatim turns.
    fine = backend.context(T, S, ContextRequest(budget=600, strategy="summary", summary_share=0.25))
    assert [i.content for i in fine if i.part == "summary"] == ["digest of 1", "digest of 21"]


def test_level_one_digests_must_continue(backend: MemoryBackend) -> None:
    _conversation(backend, n=10)
    backend.add_summary(T, S, NewSummary(level=1, seq_from=1, seq_to=4, content="a", tokens=1))
    with pytest.raises(errors.SummaryRangeInvalid):
        backend.add_summary(
            T, S, NewSummary(level=1, seq_from=6, seq_to=8, content="gap", tokens=1)
        )
    with pytest.raises(errors.SummaryRangeInvalid):
        backend.add_summary(
            T, S, NewSummary(level=2, seq_from=1, seq_to=9, content="bad", tokens=1)
        )
    assert backend.session_info(T, S).summarized_upto == 4


def test_shares_are_validated(backend: MemoryBackend) -> None:
    _conversation(backend, n=3)
    with pytest.raises(errors.InvalidArgument):
        backend.context(
            T, S, ContextRequest(budget=10, strategy="hybrid", summary_share=0.7, recent_share=0.5)
        )
    with pytest.raises(errors.InvalidArgument):
        backend.context(T, S, ContextRequest(budget=10, strategy="hybrid", recent_share=-0.1))


def test_recall_ranks_rare_words_first(backend: MemoryBackend) -> None:
    _conversation(backend)
    backend.append(T, S, NewMessage("user", "my quokka photo from the zoo", tokens=6))
    found = backend.recall(T, S, RecallRequest("show the quokka", max_rows=3))
    assert found[0].content == "my quokka photo from the zoo"
    assert found[0].text_rank == 1 and found[0].vector_rank is None
    assert backend.recall(T, S, RecallRequest("show the quokka", before_seq=61)) == [] or all(
        f.seq < 61 for f in backend.recall(T, S, RecallRequest("show the quokka", before_seq=61))
    )


def test_recall_fuses_embeddings(backend: MemoryBackend) -> None:
    from pymem.context.embed import HashingEmbedder

    embedder = HashingEmbedder(1536)
    texts = ["the violin lesson went well", "we bought bread", "the cello is out of tune"]
    for text, vector in zip(texts, embedder.embed(texts), strict=True):
        backend.append(T, S, NewMessage("user", text, tokens=6, embedding=vector))
    (query_vector,) = embedder.embed(["violin lesson"])
    found = backend.recall(T, S, RecallRequest("violin", query_embedding=query_vector, max_rows=3))
    assert found[0].content == "the violin lesson went well"
    assert found[0].text_rank == 1 and found[0].vector_rank == 1
    with pytest.raises(errors.EmbeddingDimensionMismatch):
        backend.recall(T, S, RecallRequest("violin", query_embedding=[0.1] * 3))


def test_digests_start_at_the_oldest_kept_turn_after_trimming(backend: MemoryBackend) -> None:
    _conversation(backend, n=10)
    backend.configure_session(T, S, SessionSettings(max_messages=4))
    backend.append(T, S, NewMessage("user", "one more", tokens=1))  # trims turns 1..7
    with pytest.raises(errors.SummaryRangeInvalid):
        backend.add_summary(
            T, S, NewSummary(level=1, seq_from=1, seq_to=9, content="gone", tokens=1)
        )
    backend.add_summary(T, S, NewSummary(level=1, seq_from=8, seq_to=9, content="kept", tokens=1))
    assert backend.session_info(T, S).summarized_upto == 9


def _long_session(backend: MemoryBackend, n: int, needle_at: int) -> None:
    """n turns on one recurring topic; turn `needle_at` also names a quokka,
    turn 20 says "budget" three times."""

    def text(i: int) -> str:
        if i == needle_at:
            return "the quokka keeper joined the project meeting about the budget"
        if i == 20:
            return "budget budget budget"
        return f"the project meeting about the budget, point {i}"

    turns = [
        NewMessage("user" if i % 2 else "assistant", text(i), tokens=10) for i in range(1, n + 1)
    ]
    for start in range(0, n, 500):
        backend.append_many(T, S, turns[start : start + 500])


def test_recall_in_a_long_session_finds_an_old_rare_word(backend: MemoryBackend) -> None:
    # Over 1,000 turns, frequencies are sampled from the newest turns and
    # candidates come from the rarest terms: an old rare word is still found.
    _long_session(backend, 1200, needle_at=40)
    found = backend.recall(T, S, RecallRequest("the quokka at the project meeting", max_rows=5))
    assert found[0].seq == 40 and "quokka" in found[0].content
    assert {f.seq for f in found} <= {38, 39, 40, 41, 42}, "the turn and its neighbours"
    window = backend.context(
        T, S, ContextRequest(budget=200, query="quokka budget", strategy="hybrid")
    )
    assert 40 in {i.seq for i in window if i.part == "recall"}


def test_recall_in_a_long_session_of_common_words_ranks_the_newest(
    backend: MemoryBackend,
) -> None:
    # When every word of the query is in most turns, none tells the turns
    # apart: candidates are the newest 500 turns (before before_seq).
    _long_session(backend, 1500, needle_at=40)
    found = backend.recall(T, S, RecallRequest("project budget", max_rows=20))
    assert len(found) == 20 and all(f.seq > 1000 for f in found)
    # The work stays bounded: turn 20, the best match for "budget" in the
    # whole session, is older than the newest 500 turns and is not scanned.
    assert 20 not in {f.seq for f in backend.recall(T, S, RecallRequest("budget", max_rows=50))}
    earlier = backend.recall(T, S, RecallRequest("project budget", before_seq=700, max_rows=20))
    assert len(earlier) == 20 and all(f.seq < 700 for f in earlier)
