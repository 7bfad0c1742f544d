"""Personal data classifiers in Python, applied before a message leaves the client.

PostgreSQL finds the structured kinds itself (``memory.pii_scan``: e-mail,
phone, card, IBAN, IP, national ids, secrets) and applies the tenant's policy
in ``memory.append``. A :class:`PiiFilter` adds what rules cannot see, names
and places for instance, with classifiers of your choice
(:class:`RegexClassifier`, :class:`PresidioClassifier` from the ``pii`` extra,
or any object with a ``find`` method), and applies the same policy format and
actions to what they find::

    mem = Memory.connect(dsn, pii=PiiFilter([PresidioClassifier()]))

By default the policy is the tenant's own (``memory.pii_policy``, cached for
``policy_ttl`` seconds); pass ``policy=`` to fix it in code, which the
in-memory and Redis backends require (they keep no tenant policies).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..errors import InvalidArgument, PiiBlocked, PymemError
from ..models import NewMessage
from ..transcript.parts import Part, Refusal, Text, ToolCall, ToolResult

ACTIONS = frozenset({"off", "redact", "mask", "block", "tag"})
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True, slots=True)
class Finding:
    """A span of personal data: ``text[start:end]`` is of ``kind``."""

    kind: str
    start: int
    end: int


class PiiClassifier(Protocol):
    """Finds personal data in a text."""

    def find(self, text: str) -> Sequence[Finding]:
        """The spans found, in any order (overlaps allowed)."""
        ...


@dataclass(frozen=True, slots=True)
class RegexClassifier:
    """One kind, one regular expression (e.g. your own customer numbers)."""

    kind: str
    pattern: str | re.Pattern[str]

    def find(self, text: str) -> list[Finding]:
        compiled = re.compile(self.pattern) if isinstance(self.pattern, str) else self.pattern
        return [Finding(self.kind, m.start(), m.end()) for m in compiled.finditer(text)]


# Presidio's entity names -> pymem kinds (others are lower-cased).
PRESIDIO_KINDS: Mapping[str, str] = {
    "PERSON": "person",
    "LOCATION": "location",
    "NRP": "group",
    "DATE_TIME": "date",
    "EMAIL_ADDRESS": "email",
    "PHONE_NUMBER": "phone",
    "CREDIT_CARD": "card",
    "IBAN_CODE": "iban",
    "IP_ADDRESS": "ip",
    "US_SSN": "national_id",
    "UK_NHS": "national_id",
    "URL": "url",
}


class PresidioClassifier:
    """Microsoft Presidio's analyzer as a classifier (``pip install pymem[pii]``).

    Presidio needs a spaCy language model installed beside it (for example
    ``en_core_web_lg``); pass a configured ``analyzer`` to choose another.
    """

    def __init__(
        self,
        analyzer: Any | None = None,
        *,
        language: str = "en",
        entities: Sequence[str] | None = None,
        threshold: float = 0.5,
    ) -> None:
        if analyzer is None:
            try:
                from presidio_analyzer import AnalyzerEngine  # type: ignore[import-not-found]
            except ImportError as exc:
                raise PymemError(
                    "pymem: PresidioClassifier needs presidio-analyzer",
                    hint="pip install 'pymem[pii]' and a spaCy model (python -m spacy download "
                    "en_core_web_lg)",
                ) from exc
            analyzer = AnalyzerEngine()
        self.analyzer = analyzer
        self.language = language
        self.entities = list(entities) if entities else None
        self.threshold = threshold

    def find(self, text: str) -> list[Finding]:
        results = self.analyzer.analyze(text=text, language=self.language, entities=self.entities)
        return [
            Finding(PRESIDIO_KINDS.get(r.entity_type, r.entity_type.lower()), r.start, r.end)
            for r in results
            if r.score >= self.threshold
        ]


def check_policy(policy: Mapping[str, str]) -> dict[str, str]:
    """A policy as memory.configure_pii accepts it, or InvalidArgument."""
    checked = {}
    for kind, action in policy.items():
        if not isinstance(kind, str) or not _KIND.match(kind):
            raise InvalidArgument(
                f"pymem: {kind!r} is not a kind of personal data",
                hint="kinds are lower-case names such as email, card, person, or default",
            )
        if action not in ACTIONS:
            raise InvalidArgument(
                f"pymem: unknown action {action!r} for {kind}",
                hint="actions: off, redact, mask, block, tag",
            )
        checked[kind] = action
    return checked


def _mask(value: str) -> str:
    return re.sub(r"[A-Za-z0-9]", "*", value[:-4]) + value[-4:]


def apply_policy(
    text: str, findings: Sequence[Finding], policy: Mapping[str, str]
) -> tuple[str, list[str]]:
    """Apply ``policy`` to ``findings`` in ``text``: the text to store, the kinds acted on.

    Same rules as memory.append: per kind (else ``default``, else off),
    redact to ``[KIND]``, mask all but the last 4 characters, tag (keep), or
    block (raise PiiBlocked naming the kind, never the value). Longer spans
    win over spans they overlap.
    """
    chosen: list[tuple[Finding, str]] = []
    for found in sorted(findings, key=lambda f: (f.start - f.end, f.start)):
        if not (0 <= found.start < found.end <= len(text)):
            continue
        if any(found.start < other.end and other.start < found.end for other, _ in chosen):
            continue
        action = policy.get(found.kind) or policy.get("default") or "off"
        if action == "block":
            raise PiiBlocked(
                f"pymem: the message contains personal data ({found.kind}) that this tenant's "
                "policy blocks",
                hint="remove it before storing, or change the policy with memory.configure_pii",
            )
        if action != "off":
            chosen.append((found, action))
    out = text
    for found, action in sorted(chosen, key=lambda c: c[0].start, reverse=True):
        value = out[found.start : found.end]
        if action == "redact":
            value = f"[{found.kind.upper()}]"
        elif action == "mask":
            value = _mask(value)
        out = out[: found.start] + value + out[found.end :]
    return out, sorted({found.kind for found, _ in chosen})


@dataclass
class PiiFilter:
    """Classifiers plus a policy, applied by ``Session.append`` before sending."""

    classifiers: Sequence[PiiClassifier]
    policy: Mapping[str, str] | None = None
    policy_ttl: float = 30.0
    clock: Callable[[], float] = time.monotonic
    _cache: dict[str, tuple[float, dict[str, str]]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.policy is not None:
            self.policy = check_policy(self.policy)

    def cached_policy(self, tenant: str) -> dict[str, str] | None:
        """The tenant's policy when fixed in code or cached and fresh, else None."""
        if self.policy is not None:
            return dict(self.policy)
        with self._lock:
            hit = self._cache.get(tenant)
        if hit is not None and self.clock() - hit[0] < self.policy_ttl:
            return hit[1]
        return None

    def forget(self, tenant: str) -> None:
        """Drop the cached policy of ``tenant`` (it changed)."""
        with self._lock:
            self._cache.pop(tenant, None)

    def remember(self, tenant: str, policy: Mapping[str, str]) -> dict[str, str]:
        checked = check_policy(policy)
        with self._lock:
            self._cache[tenant] = (self.clock(), checked)
        return checked

    @staticmethod
    def policy_reader(backend: Any) -> Any:
        """The backend's ``pii_policy`` method (sync or async), or PymemError."""
        reader = getattr(backend, "pii_policy", None)
        if reader is None:
            raise PymemError(
                "pymem: this backend keeps no personal data policies",
                hint="give the policy in code: PiiFilter(classifiers, policy={...})",
            )
        return reader

    def scrub(
        self, text: str, metadata: Mapping[str, Any] | None, policy: Mapping[str, str]
    ) -> tuple[str, dict[str, Any] | None]:
        """Run the classifiers and apply ``policy``; metadata gains ``pii`` kinds."""
        findings = [f for c in self.classifiers for f in c.find(text)]
        if not findings:
            return text, dict(metadata) if metadata is not None else None
        out, kinds = apply_policy(text, findings, policy)
        if not kinds:
            return out, dict(metadata) if metadata is not None else None
        merged = dict(metadata or {})
        previous = merged.get("pii")
        known = set(previous) if isinstance(previous, list) else set()
        merged["pii"] = sorted(known | set(kinds))
        return out, merged


def scrub_batch(
    pii: PiiFilter, policy: Mapping[str, str], messages: Sequence[NewMessage]
) -> list[NewMessage]:
    """:meth:`PiiFilter.scrub` applied to every message of a batch."""
    out = []
    for message in messages:
        if not isinstance(message.content, str):  # the backend rejects it with a typed error
            out.append(message)
        elif message.parts is not None:
            out.append(_scrub_parts(pii, policy, message))
        else:
            content, metadata = pii.scrub(message.content, message.metadata, policy)
            out.append(replace(message, content=content, metadata=metadata))
    return out


def _scrub_parts(pii: PiiFilter, policy: Mapping[str, str], message: NewMessage) -> NewMessage:
    """Every string of a message's parts scrubbed, but not their ids, tool names or
    references (as ``memory._apply_pii_policy`` treats them)."""
    metadata = message.metadata

    def clean(value: Any) -> Any:
        nonlocal metadata
        if isinstance(value, str):
            value, metadata = pii.scrub(value, metadata, policy)
            return value
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    parts: list[Part] = []
    for part in message.parts or ():
        if isinstance(part, Text | Refusal):
            parts.append(replace(part, text=clean(part.text)))
        elif isinstance(part, ToolResult):
            parts.append(replace(part, content=clean(part.content)))
        elif isinstance(part, ToolCall):
            parts.append(replace(part, arguments=clean(dict(part.arguments))))
        else:
            parts.append(part)
    return replace(message, parts=tuple(parts), metadata=metadata)


__all__ = [
    "ACTIONS",
    "Finding",
    "PiiClassifier",
    "PiiFilter",
    "PresidioClassifier",
    "RegexClassifier",
    "apply_policy",
    "check_policy",
    "scrub_batch",
]
