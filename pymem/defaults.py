"""What ``Memory`` and ``AsyncMemory`` fill in when the caller does not say."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from .config import Settings
from .context.tokens import TokenCounter, counter_for
from .errors import InvalidArgument
from .models import NewMessage
from .tier.limits import RateLimits
from .transcript.tokens import turn_tokens


def choose_counter(counter: TokenCounter | str | None, settings: Settings) -> TokenCounter:
    """The token counter: given, named, or PYMEM_ENCODING's."""
    if counter is None:
        return counter_for(settings.encoding)
    if isinstance(counter, str):
        return counter_for(counter)
    return counter


def require_dsn(dsn: str | None, settings: Settings) -> str:
    """The PostgreSQL DSN: given, else PYMEM_DSN, else a typed error with a hint."""
    found = dsn or settings.dsn
    if not found:
        raise InvalidArgument(
            "pymem: no PostgreSQL DSN given",
            hint="pass Memory.connect('postgresql://...') or set PYMEM_DSN; "
            "Memory.embedded() needs no server of your own",
        )
    return found


def count_tokens(counter: TokenCounter, messages: Sequence[NewMessage]) -> list[NewMessage]:
    """Fill in exact token counts for messages that carry none (a message with
    parts: its text plus the framing of its tool calls, pymem.transcript.tokens)."""
    return [
        m
        if m.tokens is not None or not isinstance(m.content, str)
        else replace(m, tokens=_count(counter, m))
        for m in messages
    ]


def _count(counter: TokenCounter, message: NewMessage) -> int:
    if message.parts is None and message.name is None:
        return counter.count(message.content)
    return turn_tokens(message.turn(), counter)


def limits_for(
    rate_limits: RateLimits | Mapping[str, RateLimits] | None, tenant: str
) -> RateLimits | None:
    """The append limits of ``tenant`` (a mapping may name tenants and ``"*"``)."""
    if rate_limits is None or isinstance(rate_limits, RateLimits):
        return rate_limits
    return rate_limits.get(tenant) or rate_limits.get("*")
