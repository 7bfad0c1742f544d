"""What the Redis tier stores and counts (shared by its async and sync twins).

A session's cached windows live in one Redis hash,
``memory:{<tenant>:<session>}:cache``: a ``gen`` field (bumped by every
write) and one field per cached read, named from the read and its request.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import msgspec
import zstandard

from ..backends.redis_keys import session_tag
from ..models import ContextItem, ContextWindow, StoredMessage

T = TypeVar("T")

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
    return hashlib.sha1(json.dumps([FORMAT, op, *params], default=str).encode()).hexdigest()[:20]


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


WindowPayload = tuple[int, str, int, list[ContextItem]]


class Codec(Generic[T]):
    """How one kind of cached read is stored: MessagePack, decoded straight into
    pymem's own row types (no intermediate dicts), zstd-compressed above a size.

    Stored bytes start with ``m`` (MessagePack) or ``s`` (zstd of it). Entry
    names carry :data:`FORMAT`, so entries of another format are never read.
    """

    def __init__(
        self,
        payload: Any,
        dump: Callable[[T], Any],
        restore: Callable[[Any], T],
    ) -> None:
        self._decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(payload)
        self._dump = dump
        self._restore = restore

    def encode(self, value: T, compress_over: int) -> tuple[bytes, int]:
        """The stored bytes of ``value`` and their size before compression."""
        raw = _ENCODER.encode(self._dump(value))
        if len(raw) > compress_over:
            return b"s" + _COMPRESSOR.compress(raw), len(raw)
        return b"m" + raw, len(raw)

    def decode(self, blob: bytes) -> T:
        body = _decompressor().decompress(blob[1:]) if blob[:1] == b"s" else blob[1:]
        return self._restore(self._decoder.decode(body))


FORMAT: Final = "m1"  # part of every entry name: bump when the stored form changes
_ENCODER: Final = msgspec.msgpack.Encoder()
_COMPRESSOR: Final = zstandard.ZstdCompressor(level=3)
_LOCAL = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """A decompressor per thread (zstandard's objects are not thread-safe)."""
    found: zstandard.ZstdDecompressor | None = getattr(_LOCAL, "decompressor", None)
    if found is None:
        found = _LOCAL.decompressor = zstandard.ZstdDecompressor()
    return found


def _window(p: WindowPayload) -> ContextWindow:
    return ContextWindow(items=tuple(p[3]), budget=p[0], strategy=p[1], message_overhead=p[2])


WINDOWS: Final[Codec[ContextWindow]] = Codec(
    WindowPayload,
    lambda w: (w.budget, w.strategy, w.message_overhead, w.items),
    _window,
)
MESSAGES: Final[Codec[list[StoredMessage]]] = Codec(list[StoredMessage], list, list)
