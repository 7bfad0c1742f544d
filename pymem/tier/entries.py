"""What the Redis tier stores and counts (shared by its async and sync twins).

A session's cached windows live in one Redis hash,
``memory:{<tenant>:<session>}:cache``: a ``gen`` field (bumped by every
write) and one field per cached read, named from the read and its request.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..backends.redis_keys import session_tag
from ..models import ContextItem, ContextWindow, StoredMessage

# Store an entry only if the session's generation is still the one read. The
# hash lives for the tier's TTL, and never past the session's own expiry
# (ARGV[6], Unix ms, or ''), so an expired session is never served from Redis.
FILL = """
local gen = redis.call('HGET', KEYS[1], 'gen') or ''
if gen ~= ARGV[1] then return 0 end
if gen == '' then redis.call('HSET', KEYS[1], 'gen', '0') end
if redis.call('HLEN', KEYS[1]) > tonumber(ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if ARGV[6] ~= '' then
  local t = redis.call('TIME')
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  if tonumber(ARGV[6]) < now_ms + tonumber(ARGV[4]) then
    redis.call('PEXPIREAT', KEYS[1], ARGV[6])
  end
end
return 1
"""

# Bump the generation and drop every entry (after a write to the session).
INVALIDATE = """
redis.call('HINCRBY', KEYS[1], 'gen', 1)
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if f ~= 'gen' then redis.call('HDEL', KEYS[1], f) end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


def session_key(tenant: str, session: str) -> str:
    """The Redis key holding a session's cached windows (hash-tagged by session)."""
    return f"{session_tag(tenant, session)}:cache"


def entry_name(op: str, params: Sequence[Any]) -> str:
    """The hash field of one cached read: a digest of the read and its request."""
    return hashlib.sha1(json.dumps([op, *params], default=str).encode()).hexdigest()[:20]


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    errors: int = 0
    invalidations: int = 0
    raw_bytes: int = 0
    stored_bytes: int = 0

    @property
    def compression_ratio(self) -> float:
        return self.raw_bytes / self.stored_bytes if self.stored_bytes else 1.0


class Skip(Exception):
    """Redis is unavailable for this call: use PostgreSQL alone."""


def encode(payload: Any, compress_over: int) -> tuple[bytes, int]:
    """The stored bytes of ``payload`` (zlib above ``compress_over``) and its raw size."""
    raw = json.dumps(payload, separators=(",", ":"), default=str).encode()
    if len(raw) > compress_over:
        return b"z" + zlib.compress(raw, 6), len(raw)
    return b"j" + raw, len(raw)


def decode(blob: bytes) -> Any:
    body = zlib.decompress(blob[1:]) if blob[:1] == b"z" else blob[1:]
    return json.loads(body)


def window_payload(w: ContextWindow) -> Any:
    return [w.budget, w.strategy, w.message_overhead, [list(i) for i in w.items]]


def window_from(p: Any) -> ContextWindow:
    return ContextWindow(
        items=tuple(ContextItem(*i) for i in p[3]),
        budget=p[0],
        strategy=p[1],
        message_overhead=p[2],
    )


def messages_payload(ms: Sequence[StoredMessage]) -> Any:
    return [
        [
            m.seq,
            m.role,
            m.content,
            m.tokens,
            m.tokens_estimated,
            m.metadata,
            m.created_at.isoformat(),
            m.parts,
            m.name,
        ]
        for m in ms
    ]


def messages_from(p: Any) -> list[StoredMessage]:
    return [
        StoredMessage(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6]), *r[7:9])
        for r in p
    ]
