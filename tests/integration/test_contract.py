"""The backend contract: every backend passes these same tests."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pymem import errors
from pymem.backends.base import MemoryBackend
from pymem.models import ContextRequest, NewMessage, SessionQuery, SessionSettings, TenantSettings

T, S = "acme", "s-1"


def _fill(backend: MemoryBackend, n: int, session: str = S, tokens: int = 10) -> None:
    for i in range(1, n + 1):
        backend.append(
            T, session, NewMessage("user" if i % 2 else "assistant", f"message {i}", tokens=tokens)
        )


def test_append_assigns_gapless_seq(backend: MemoryBackend) -> None:
    results = [backend.append(T, S, NewMessage("user", f"m{i}", tokens=1)) for i in range(5)]
    assert [r.seq for r in results] == [1, 2, 3, 4, 5]
    assert all(not r.duplicate for r in results)
    assert results[0].created_at.tzinfo is not None
    info = backend.session_info(T, S)
    assert (info.last_seq, info.message_count, info.token_count) == (5, 5, 5)


def test_history_pages_are_stable(backend: MemoryBackend) -> None:
    _fill(backend, 25)
    first = backend.history(T, S, after_seq=0, page_size=10)
    assert [m.seq for m in first] == list(range(1, 11))
    backend.append(T, S, NewMessage("user", "late arrival", tokens=2))
    second = backend.history(T, S, after_seq=first[-1].seq, page_size=10)
    assert [m.seq for m in second] == list(range(11, 21))
    rest = backend.history(T, S, after_seq=20, page_size=100)
    assert [m.seq for m in rest] == [21, 22, 23, 24, 25, 26]
    assert rest[-1].content == "late arrival"


def test_last_messages_in_conversation_order(backend: MemoryBackend) -> None:
    _fill(backend, 8)
    assert [m.seq for m in backend.last_messages(T, S, 3)] == [6, 7, 8]
    assert [m.seq for m in backend.last_messages(T, S, 100)] == list(range(1, 9))


def test_stored_message_round_trips(backend: MemoryBackend) -> None:
    meta = {"source": "web", "nested": {"n": [1, 2.5, None, True]}, "ünï": "çødé"}
    backend.append(T, S, NewMessage("tool", "résumé ✓ 🙂\nline two", tokens=7, metadata=meta))
    (stored,) = backend.history(T, S)
    assert stored.content == "résumé ✓ 🙂\nline two"
    assert stored.role == "tool"
    assert stored.metadata == meta
    assert (stored.tokens, stored.tokens_estimated) == (7, False)


def test_missing_token_count_is_estimated_the_same_everywhere(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "  hello there,\tworld of many small words  "))
    backend.append(T, S, NewMessage("user", ""))
    first, empty = backend.history(T, S)
    assert first.tokens_estimated and first.tokens == 11
    assert empty.tokens == 0


def test_context_recent_fits_budget_in_order(backend: MemoryBackend) -> None:
    _fill(backend, 20, tokens=10)
    window = backend.context(T, S, ContextRequest(budget=55))
    assert [i.seq for i in window] == [16, 17, 18, 19, 20]
    assert window.tokens == 50 <= 55
    assert {i.part for i in window} == {"recent"}
    assert window.messages()[-1] == {"role": "assistant", "content": "message 20"}


def test_context_counts_message_overhead(backend: MemoryBackend) -> None:
    _fill(backend, 20, tokens=10)
    window = backend.context(T, S, ContextRequest(budget=55, message_overhead=4))
    assert [i.seq for i in window] == [18, 19, 20]
    assert window.tokens == 42


def test_context_is_a_contiguous_tail(backend: MemoryBackend) -> None:
    for i, tokens in enumerate([5, 50, 5, 5], start=1):
        backend.append(T, S, NewMessage("user", f"m{i}", tokens=tokens))
    # m2 does not fit; m1 would, but the window never skips a turn.
    assert [i.seq for i in backend.context(T, S, ContextRequest(budget=20))] == [3, 4]


def test_context_budget_zero_is_empty(backend: MemoryBackend) -> None:
    _fill(backend, 3)
    assert len(backend.context(T, S, ContextRequest(budget=0))) == 0


def test_context_of_missing_session(backend: MemoryBackend) -> None:
    with pytest.raises(errors.SessionNotFound):
        backend.context(T, "nope", ContextRequest(budget=100))


def test_idempotent_retry_writes_once(backend: MemoryBackend) -> None:
    first = backend.append(
        T, S, NewMessage("user", "pay invoice 42", tokens=3, idempotency_key="k-1")
    )
    retry = backend.append(
        T, S, NewMessage("user", "pay invoice 42", tokens=3, idempotency_key="k-1")
    )
    assert retry.seq == first.seq and retry.duplicate and not first.duplicate
    assert retry.created_at == first.created_at
    assert len(backend.history(T, S)) == 1
    with pytest.raises(errors.IdempotencyKeyReused):
        backend.append(T, S, NewMessage("user", "something else", tokens=3, idempotency_key="k-1"))
    info = backend.session_info(T, S)
    assert (info.last_seq, info.message_count, info.token_count) == (1, 1, 3)


def test_idempotency_keys_are_per_session(backend: MemoryBackend) -> None:
    a = backend.append(T, "a", NewMessage("user", "hi", tokens=1, idempotency_key="k"))
    b = backend.append(T, "b", NewMessage("user", "hi", tokens=1, idempotency_key="k"))
    assert not a.duplicate and not b.duplicate


def test_message_cap_trims_oldest(backend: MemoryBackend) -> None:
    _fill(backend, 3)
    backend.configure_session(T, S, SessionSettings(max_messages=3))
    _fill(backend, 2)
    assert [m.seq for m in backend.history(T, S)] == [3, 4, 5]
    info = backend.session_info(T, S)
    assert (info.first_seq, info.last_seq, info.message_count, info.token_count) == (3, 5, 3, 30)


def test_token_cap_trims_oldest(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "a", tokens=4))
    backend.configure_session(T, S, SessionSettings(max_tokens=10))
    for tokens in (3, 3, 5):
        backend.append(T, S, NewMessage("user", "b", tokens=tokens))
    assert [m.tokens for m in backend.history(T, S)] == [3, 5]
    assert backend.session_info(T, S).token_count == 8


def test_message_over_token_cap_is_refused(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "a", tokens=4))
    backend.configure_session(T, S, SessionSettings(max_tokens=10))
    with pytest.raises(errors.MessageTooLarge):
        backend.append(T, S, NewMessage("user", "huge", tokens=11))
    assert [m.tokens for m in backend.history(T, S)] == [4]
    assert backend.session_info(T, S).last_seq == 1


def test_tenant_caps_apply_to_sessions(backend: MemoryBackend) -> None:
    backend.configure_tenant(T, TenantSettings(max_messages=2))
    _fill(backend, 4)
    assert [m.seq for m in backend.history(T, S)] == [3, 4]


def test_tenant_default_ttl_sets_expiry(backend: MemoryBackend) -> None:
    backend.configure_tenant(T, TenantSettings(default_ttl=timedelta(days=7)))
    backend.append(T, S, NewMessage("user", "hi", tokens=1))
    info = backend.session_info(T, S)
    assert info.expires_at is not None
    assert timedelta(days=6) < info.expires_at - info.created_at <= timedelta(days=7)


def test_extend_session_pushes_expiry(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "hi", tokens=1))
    first = backend.extend_session(T, S, timedelta(hours=1))
    second = backend.extend_session(T, S, timedelta(hours=1))
    assert second - first == timedelta(hours=1)
    with pytest.raises(errors.InvalidArgument):
        backend.extend_session(T, S, timedelta(0))


def test_soft_delete_hides_then_restore(backend: MemoryBackend) -> None:
    _fill(backend, 2)
    deleted_at = backend.delete_session(T, S)
    assert backend.delete_session(T, S) == deleted_at
    with pytest.raises(errors.SessionDeleted):
        backend.history(T, S)
    with pytest.raises(errors.SessionDeleted):
        backend.context(T, S, ContextRequest(budget=10))
    with pytest.raises(errors.SessionDeleted):
        backend.append(T, S, NewMessage("user", "more", tokens=1))
    assert backend.list_sessions(T) == []
    assert [s.session_id for s in backend.list_sessions(T, SessionQuery(include_deleted=True))] == [
        S
    ]
    assert backend.session_info(T, S).deleted_at == deleted_at
    backend.restore_session(T, S)
    assert backend.append(T, S, NewMessage("user", "back", tokens=1)).seq == 3


def test_purge_removes_everything(backend: MemoryBackend) -> None:
    _fill(backend, 4)
    backend.append(T, S, NewMessage("user", "keyed", tokens=1, idempotency_key="k"))
    assert backend.purge_session(T, S) == 5
    with pytest.raises(errors.SessionNotFound):
        backend.session_info(T, S)
    with pytest.raises(errors.SessionNotFound):
        backend.purge_session(T, S)
    again = backend.append(T, S, NewMessage("user", "keyed", tokens=1, idempotency_key="k"))
    assert (again.seq, again.duplicate) == (1, False)


def test_list_sessions_orders_filters_and_pages(backend: MemoryBackend) -> None:
    for sid, user in [("b", "u1"), ("a", "u2"), ("c", "u1"), ("B", "u1")]:
        backend.append(T, sid, NewMessage("user", "hi", tokens=1), user_id=user)
    backend.append("other", "z", NewMessage("user", "hi", tokens=1))
    assert [s.session_id for s in backend.list_sessions(T)] == ["B", "a", "b", "c"]
    assert [s.session_id for s in backend.list_sessions(T, SessionQuery(owner="u1"))] == [
        "B",
        "b",
        "c",
    ]
    page = backend.list_sessions(T, SessionQuery(after_session="a", page_size=1))
    assert [s.session_id for s in page] == ["b"]


def test_session_belongs_to_its_user(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "hi", tokens=1), user_id="u-1")
    backend.append(T, S, NewMessage("assistant", "hello", tokens=1))  # no user named: allowed
    with pytest.raises(errors.SessionOwnedByAnotherUser):
        backend.append(T, S, NewMessage("user", "hijack", tokens=1), user_id="u-2")
    assert backend.session_info(T, S).message_count == 2


def test_session_without_user_takes_the_first_one_named(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "hi", tokens=1))
    backend.append(T, S, NewMessage("user", "it is me", tokens=1), user_id="u-1")
    assert backend.session_info(T, S).user_id == "u-1"
    with pytest.raises(errors.SessionOwnedByAnotherUser):
        backend.append(T, S, NewMessage("user", "hijack", tokens=1), user_id="u-2")
    assert [m.content for m in backend.history(T, S)] == ["hi", "it is me"]


def test_tenants_do_not_share_sessions(backend: MemoryBackend) -> None:
    backend.append("t1", S, NewMessage("user", "secret of t1", tokens=1))
    backend.append("t2", S, NewMessage("user", "secret of t2", tokens=1))
    assert [m.content for m in backend.history("t1", S)] == ["secret of t1"]
    assert [m.content for m in backend.history("t2", S)] == ["secret of t2"]
    assert [s.tenant_id for s in backend.stats("t1")] == ["t1"]


def test_stats_totals(backend: MemoryBackend) -> None:
    _fill(backend, 3, session="x", tokens=2)
    _fill(backend, 2, session="y", tokens=5)
    backend.delete_session(T, "y")
    (row,) = backend.stats(T)
    assert (row.sessions, row.live_sessions, row.messages, row.tokens) == (2, 1, 5, 16)


def test_append_many_in_order(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("system", "be nice", tokens=2))
    results = backend.append_many(
        T,
        S,
        [
            NewMessage("user", "one", tokens=1, metadata={"i": 1}),
            NewMessage("assistant", "two", tokens=1, idempotency_key="k2"),
            NewMessage("user", "three"),
        ],
    )
    assert [r.seq for r in results] == [2, 3, 4]
    stored = backend.history(T, S)
    assert [m.content for m in stored] == ["be nice", "one", "two", "three"]
    assert stored[1].metadata == {"i": 1} and stored[3].tokens_estimated


def test_append_many_is_all_or_nothing(backend: MemoryBackend) -> None:
    backend.append(T, S, NewMessage("user", "kept", tokens=1))
    with pytest.raises(errors.InvalidRole):
        backend.append_many(
            T, S, [NewMessage("user", "ok", tokens=1), NewMessage("robot", "bad", tokens=1)]
        )
    with pytest.raises(errors.InvalidArgument):
        backend.append_many(T, S, [])
    assert [m.content for m in backend.history(T, S)] == ["kept"]
    assert backend.session_info(T, S).last_seq == 1


BAD_APPENDS = [
    pytest.param({"tenant": ""}, errors.InvalidIdentifier, id="empty-tenant"),
    pytest.param({"session": "x" * 256}, errors.InvalidIdentifier, id="long-session"),
    pytest.param({"session": "a\nb"}, errors.InvalidIdentifier, id="control-char-session"),
    pytest.param({"user_id": ""}, errors.InvalidIdentifier, id="empty-user"),
    pytest.param({"idempotency_key": "\x07"}, errors.InvalidIdentifier, id="control-key"),
    pytest.param({"role": "robot"}, errors.InvalidRole, id="unknown-role"),
    pytest.param({"role": "USER"}, errors.InvalidRole, id="uppercase-role"),
    pytest.param({"content": "a\x00b"}, errors.InvalidArgument, id="nul-content"),
    pytest.param({"content": "bad \ud800 surrogate"}, errors.InvalidArgument, id="surrogate"),
    pytest.param({"content": "x" * (4 * 1024 * 1024 + 1)}, errors.MessageTooLarge, id="4MiB+1"),
    pytest.param({"tokens": -1}, errors.InvalidArgument, id="negative-tokens"),
    pytest.param({"metadata": [1, 2]}, errors.InvalidMetadata, id="metadata-list"),
    pytest.param({"metadata": {"x": object()}}, errors.InvalidMetadata, id="metadata-object"),
    pytest.param({"metadata": {"x": float("nan")}}, errors.InvalidMetadata, id="metadata-nan"),
    pytest.param({"metadata": {"x": "\x00"}}, errors.InvalidMetadata, id="metadata-nul"),
    pytest.param({"metadata": {"x": "y" * 300_000}}, errors.InvalidMetadata, id="metadata-huge"),
    pytest.param(
        {"embedding": [0.1, 0.2, 0.3]}, errors.EmbeddingDimensionMismatch, id="embedding-dim"
    ),
    pytest.param({"embedding": [float("inf")] * 1536}, errors.InvalidArgument, id="embedding-inf"),
]


@pytest.mark.parametrize(("override", "error"), BAD_APPENDS)
def test_bad_append_is_typed_and_writes_nothing(
    backend: MemoryBackend, override: dict[str, object], error: type[Exception]
) -> None:
    backend.append(T, S, NewMessage("user", "before", tokens=1))
    args: dict[str, object] = {
        "tenant": T,
        "session": S,
        "role": "user",
        "content": "x",
        "tokens": 1,
    }
    args.update(override)
    with pytest.raises(error) as caught:
        fields = {k: args.pop(k) for k in list(args) if k not in ("tenant", "session", "user_id")}
        backend.append(
            args.pop("tenant"),  # type: ignore[arg-type]
            args.pop("session"),  # type: ignore[arg-type]
            NewMessage(**fields),  # type: ignore[arg-type]
            **args,  # type: ignore[arg-type]
        )
    assert isinstance(caught.value, errors.PymemError)
    assert caught.value.hint, "every error carries a hint"
    assert [m.content for m in backend.history(T, S)] == ["before"]
    assert [s.tenant_id for s in backend.stats()] == [T]
    assert backend.session_info(T, S).last_seq == 1


BAD_READS = [
    pytest.param(
        lambda b: b.context(T, S, ContextRequest(budget=-1)),
        errors.InvalidBudget,
        id="negative-budget",
    ),
    pytest.param(
        lambda b: b.context(T, S, ContextRequest(budget=10, strategy="psychic")),
        errors.UnknownStrategy,
        id="unknown-strategy",
    ),
    pytest.param(
        lambda b: b.context(T, S, ContextRequest(budget=10, message_overhead=-1)),
        errors.InvalidArgument,
        id="negative-overhead",
    ),
    pytest.param(
        lambda b: b.history(T, S, page_size=0), errors.InvalidArgument, id="page-size-zero"
    ),
    pytest.param(
        lambda b: b.history(T, S, after_seq=-5), errors.InvalidArgument, id="negative-after-seq"
    ),
    pytest.param(lambda b: b.last_messages(T, S, 0), errors.InvalidArgument, id="count-zero"),
    pytest.param(
        lambda b: b.list_sessions(T, SessionQuery(page_size=10_001)),
        errors.InvalidArgument,
        id="page-size-huge",
    ),
    pytest.param(lambda b: b.history("", S), errors.InvalidIdentifier, id="empty-tenant"),
    pytest.param(
        lambda b: b.configure_session(T, S, SessionSettings(max_messages=0)),
        errors.InvalidArgument,
        id="cap-zero",
    ),
    pytest.param(
        lambda b: b.configure_tenant(T, TenantSettings(default_ttl=timedelta(seconds=-1))),
        errors.InvalidArgument,
        id="negative-ttl",
    ),
]


@pytest.mark.parametrize(("call", "error"), BAD_READS)
def test_bad_arguments_are_typed(backend: MemoryBackend, call, error) -> None:  # type: ignore[no-untyped-def]
    backend.append(T, S, NewMessage("user", "before", tokens=1))
    with pytest.raises(error):
        call(backend)
    assert backend.session_info(T, S).message_count == 1


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    content=st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=300,
    )
)
def test_any_text_round_trips(backend: MemoryBackend, content: str) -> None:
    result = backend.append(T, "prop", NewMessage("user", content, tokens=1))
    (stored,) = backend.history(T, "prop", after_seq=result.seq - 1, page_size=1)
    assert stored.content == content


def test_export_and_erase_a_subject(backend: MemoryBackend) -> None:
    backend.append(
        T,
        "a1",
        NewMessage("user", "alice's first secret", tokens=3, metadata={"k": "v"}),
        user_id="alice",
    )
    backend.append(T, "a1", NewMessage("assistant", "noted", tokens=1))
    backend.append(T, "a2", NewMessage("user", "alice again", tokens=2), user_id="alice")
    backend.delete_session(T, "a2")
    backend.append(T, "b1", NewMessage("user", "bob's words", tokens=2), user_id="bob")
    backend.append(
        "other", "a1", NewMessage("user", "another tenant's alice", tokens=3), user_id="alice"
    )
    document = backend.export_subject(T, "alice")
    assert (document["tenant"], document["user_id"]) == (T, "alice")
    assert [s["session_id"] for s in document["sessions"]] == ["a1", "a2"]
    first = document["sessions"][0]
    assert [m["content"] for m in first["messages"]] == ["alice's first secret", "noted"]
    assert first["messages"][0]["metadata"] == {"k": "v"}
    assert document["sessions"][1]["deleted_at"] is not None

    assert sorted(backend.erase_subject(T, "alice")) == [("a1", 2), ("a2", 1)]
    assert backend.export_subject(T, "alice")["sessions"] == []
    with pytest.raises(errors.SessionNotFound):
        backend.context(T, "a1", ContextRequest(budget=100))
    assert [m.content for m in backend.history(T, "b1")] == ["bob's words"]
    assert [m.content for m in backend.history("other", "a1")] == ["another tenant's alice"]
    assert backend.erase_subject(T, "alice") == []
    with pytest.raises(errors.InvalidIdentifier):
        backend.erase_subject(T, "")


def test_a_batch_with_a_reused_key_writes_nothing(backend: MemoryBackend) -> None:
    """A batch is all or nothing: a reused key in its second message keeps the first out."""
    backend.append(T, S, NewMessage("user", "first", tokens=1, idempotency_key="k-1"))
    with pytest.raises(errors.IdempotencyKeyReused):
        backend.append_many(
            T,
            S,
            [
                NewMessage("user", "fine on its own", tokens=1),
                NewMessage("user", "another text", tokens=1, idempotency_key="k-1"),
            ],
        )
    assert [m.content for m in backend.history(T, S)] == ["first"]
    assert backend.session_info(T, S).last_seq == 1


def test_a_batch_repeats_its_own_retries(backend: MemoryBackend) -> None:
    results = backend.append_many(
        T,
        S,
        [
            NewMessage("user", "once", tokens=1, idempotency_key="k-2"),
            NewMessage("user", "once", tokens=1, idempotency_key="k-2"),
        ],
    )
    assert [(r.seq, r.duplicate) for r in results] == [(1, False), (1, True)]
    assert len(backend.history(T, S)) == 1


def test_an_expired_session_reads_as_gone_everywhere(backend: MemoryBackend) -> None:
    """Expiry means the same on every backend from the moment it passes, before any purge."""
    import time

    backend.append(T, S, NewMessage("user", "short-lived", tokens=1))
    backend.extend_session(T, S, timedelta(milliseconds=300))
    assert [m.content for m in backend.history(T, S)] == ["short-lived"]
    time.sleep(0.5)
    for read in (
        lambda: backend.history(T, S),
        lambda: backend.last_messages(T, S),
        lambda: backend.context(T, S, ContextRequest(budget=100)),
    ):
        with pytest.raises(errors.SessionNotFound):
            read()
    # An append never continues an expired conversation: PostgreSQL and the
    # in-memory backend refuse it until the session is purged; Redis has
    # already dropped the keys, so the id starts a new conversation.
    try:
        late = backend.append(T, S, NewMessage("user", "too late", tokens=1))
    except errors.SessionExpired:
        return
    assert late.seq == 1
    assert [m.content for m in backend.history(T, S)] == ["too late"]
