"""Personal data policy at append: the four actions in SQL, blocking writes
nothing anywhere, canaries absent from every store (tables, audit, Redis),
Python classifiers on top, and policies in code for backends without SQL."""

from __future__ import annotations

import zlib
from typing import Any

import psycopg
import pytest
import redis as redis_py
from psycopg import sql

from pymem import Memory, PiiBlocked, PymemError
from pymem.security.pii import Finding, PiiFilter, PresidioClassifier, RegexClassifier, apply_policy

from .test_encryption import MASTER, StaticKeys, _rows_as_text, keyed

CARD = "4111 1111 1111 1111"
EMAIL = "ann.canary@example.org"
PHONE = "+44 20 7946 0958"


def test_each_action_as_stored(dsn: str) -> None:
    with Memory.connect(dsn) as mem:
        mem.configure_pii({"email": "redact", "card": "mask", "phone": "tag"}, tenant="t")
        chat = mem.session("s", tenant="t")
        chat.append("user", f"mail {EMAIL}, card {CARD}, phone {PHONE}", tokens=3)
        stored = chat.messages()[0]
        assert stored.content == f"mail [EMAIL], card **** **** **** 1111, phone {PHONE}"
        assert stored.metadata["pii"] == ["card", "email", "phone"]
        assert stored.tokens >= 3  # never under-counted after rewriting
        mem.configure_pii({"default": "block"}, tenant="t")
        with pytest.raises(PiiBlocked) as blocked:
            chat.append("user", f"call {PHONE}")
        assert PHONE not in str(blocked.value) and "phone" in str(blocked.value)
        mem.configure_pii({}, tenant="t")
        chat.append("user", f"call {PHONE}")
        assert chat.messages()[-1].content == f"call {PHONE}"


def test_a_blocked_append_writes_nothing_anywhere(dsn: str) -> None:
    with Memory.connect(dsn) as mem:
        mem.configure_pii({"card": "block"}, tenant="b")
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = _rows_as_text(conn)
    with Memory.connect(dsn) as mem, pytest.raises(PiiBlocked):
        mem.session("new", tenant="b", user="u").append(
            "user", f"pay with {CARD}", idempotency_key="k"
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert _rows_as_text(conn) == before


def test_bad_policies_are_refused(dsn: str) -> None:
    with Memory.connect(dsn) as mem:
        for bad in ({"email": "shred"}, {"Bad Kind": "redact"}, {"email": 1}):
            with pytest.raises(PymemError):
                mem.configure_pii(bad, tenant="t")  # type: ignore[arg-type]
    with psycopg.connect(dsn, autocommit=True) as conn:
        for bad in ("[]", '{"email": "shred"}', '{"e mail": "redact"}', '{"email": null}'):
            with pytest.raises(psycopg.Error) as exc:
                conn.execute("select memory.configure_pii('t', %s::jsonb)", (bad,))
            assert exc.value.sqlstate == "ME002"


def _inflate(value: bytes) -> bytes:
    """The tier stores large windows zlib-compressed; others as they are."""
    try:
        return zlib.decompress(value)
    except zlib.error:
        return value


def _redis_text(url: str) -> str:
    client = redis_py.Redis.from_url(url)
    parts = []
    for key in client.scan_iter(count=1000):
        parts.append(key.decode(errors="replace"))
        kind = client.type(key)
        values: list[bytes] = []
        if kind == b"hash":
            values = list(client.hgetall(key).values())
        elif kind == b"string":
            values = [client.get(key) or b""]
        for value in values:
            parts.append(_inflate(value).decode(errors="replace"))
    return "\n".join(parts)


def test_redaction_happens_before_encryption_cache_and_audit(dsn: str, redis_url: str) -> None:
    with psycopg.connect(keyed(dsn), autocommit=True) as conn:
        conn.execute("select set_config('pymem.tenant', 'acme', false)")
        conn.execute("select memory.configure_encryption('acme', 'content_with_search')")
        conn.execute(
            "select memory.configure_pii('acme', %s::jsonb)",
            ('{"card": "redact", "email": "redact", "phone": "mask", "employee": "redact"}',),
        )
    pii = PiiFilter([RegexClassifier("employee", r"EMP-\d{6}")])
    with Memory.connect(dsn, redis=redis_url, keys=StaticKeys(MASTER), pii=pii) as mem:
        chat = mem.session("s1", tenant="acme", user="u1")
        chat.append("user", f"I am EMP-123456, card {CARD}, mail {EMAIL}", idempotency_key="k1")
        chat.append("assistant", f"Thanks, we will call {PHONE}")
        for strategy in ("recent", "summary", "hybrid"):
            window = chat.context(budget=500, query="card refund", strategy=strategy)
            assert all(CARD not in item.content for item in window.items)
        window = chat.context(budget=500)
        text = " ".join(item.content for item in window.items)
        assert "[CARD]" in text and "[EMAIL]" in text and "[EMPLOYEE]" in text
        assert chat.messages()[0].metadata["pii"] == ["card", "email", "employee"]
    canaries = [CARD, EMAIL, "EMP-123456", PHONE, "ann.canary", "7946 0958"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        tables = _rows_as_text(conn)
        for name, text in tables.items():
            assert [c for c in canaries if c in text] == [], name
        audit = "\n".join(
            r[0] for r in conn.execute(sql.SQL("select t::text from memory.audit_log as t"))
        )
    assert [c for c in canaries if c in audit] == []
    cached = _redis_text(redis_url)
    assert [c for c in canaries if c in cached] == []


def test_python_classifiers_follow_the_tenant_policy_and_its_changes(dsn: str) -> None:
    ticks = [0.0]
    pii = PiiFilter([RegexClassifier("employee", r"EMP-\d{6}")], clock=lambda: ticks[0])
    with Memory.connect(dsn, pii=pii) as mem:
        chat = mem.session("s", tenant="t")
        chat.append("user", "from EMP-000001")  # no policy yet: kept
        mem.configure_pii({"employee": "redact"}, tenant="t")  # drops the cached policy
        chat.append("user", "from EMP-000002")
        mem.configure_pii({"employee": "block"}, tenant="t")
        with pytest.raises(PiiBlocked):
            chat.append("user", "from EMP-000003")
        assert [m.content for m in chat.messages()] == ["from EMP-000001", "from [EMPLOYEE]"]


def test_backends_without_policies_take_one_in_code() -> None:
    pii = PiiFilter([RegexClassifier("employee", r"EMP-\d{6}")], policy={"default": "mask"})
    mem = Memory.in_memory(pii=pii)
    chat = mem.session("s", tenant="t")
    chat.append("user", "I am EMP-654321")
    assert chat.messages()[0].content == "I am ***-**4321"
    bare = Memory.in_memory(pii=PiiFilter([RegexClassifier("employee", r"EMP-\d{6}")]))
    with pytest.raises(PymemError) as exc:
        bare.session("s", tenant="t").append("user", "I am EMP-654321")
    assert "policy" in (exc.value.hint or "")
    with pytest.raises(PymemError):
        mem.configure_pii({"email": "redact"})


def test_apply_policy_rules() -> None:
    text = "Ann Lee lives at 1 Main St, Ann"
    found = [Finding("person", 0, 7), Finding("person", 0, 3), Finding("location", 17, 26)]
    assert apply_policy(text, found, {"person": "redact", "location": "tag"}) == (
        "[PERSON] lives at 1 Main St, Ann",
        ["location", "person"],
    )
    assert apply_policy(text, found, {}) == (text, [])
    with pytest.raises(PiiBlocked) as exc:
        apply_policy(text, found, {"default": "block"})
    assert "Ann" not in str(exc.value)
    # Spans outside the text are ignored, not trusted.
    assert apply_policy("abc", [Finding("x", 2, 9)], {"x": "redact"}) == ("abc", [])


class _FakeResult:
    def __init__(self, entity_type: str, start: int, end: int, score: float) -> None:
        self.entity_type, self.start, self.end, self.score = entity_type, start, end, score


class _FakeAnalyzer:
    def analyze(self, text: str, language: str, entities: Any) -> list[_FakeResult]:
        assert language == "en"
        return [
            _FakeResult("PERSON", 0, 3, 0.85),
            _FakeResult("LOCATION", 13, 19, 0.3),
            _FakeResult("CUSTOM_THING", 20, 25, 0.9),
        ]


def test_presidio_results_become_findings() -> None:
    classifier = PresidioClassifier(_FakeAnalyzer(), threshold=0.5)
    assert classifier.find("Ann lives in Berlin thing") == [
        Finding("person", 0, 3),
        Finding("custom_thing", 20, 25),
    ]


async def test_the_async_api_applies_classifiers_with_the_tenant_policy(dsn: str) -> None:
    from pymem import AsyncMemory

    pii = PiiFilter([RegexClassifier("employee", r"EMP-\d{6}")])
    mem = await AsyncMemory.connect(dsn, pii=pii)
    try:
        await mem.configure_pii({"employee": "redact", "email": "mask"}, tenant="t")
        chat = mem.session("s", tenant="t")
        await chat.append("user", f"EMP-000042 here, {EMAIL}")
        stored = (await chat.messages())[0]
        assert stored.content == "[EMPLOYEE] here, ***.******@*******.org"
        assert stored.metadata["pii"] == ["email", "employee"]
    finally:
        await mem.close()


def test_erasure_leaves_no_trace_in_redis(dsn: str, redis_url: str) -> None:
    secret = "erase-canary-5c1d"
    with Memory.connect(dsn, redis=redis_url) as mem:
        for session in ("e1", "e2"):
            chat = mem.session(session, tenant="t", user="leaving-user")
            chat.append("user", f"{secret} in {session}")
            for strategy in ("recent", "hybrid"):
                chat.context(budget=300, query=secret, strategy=strategy)
            chat.messages(last=5)
        assert secret in _redis_text(redis_url)  # control: the windows were cached
        assert sorted(s for s, _ in mem.erase_subject("leaving-user", tenant="t")) == ["e1", "e2"]
    cached = _redis_text(redis_url)
    assert secret not in cached and "leaving-user" not in cached
