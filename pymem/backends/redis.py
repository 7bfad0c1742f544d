"""A standalone Redis backend for ephemeral deployments (no PostgreSQL).

Appends are one Lua script per message: the next seq, the idempotency check,
ownership, caps with oldest-first trimming and the TTL, atomically. Reads load
a session's state in one MULTI/EXEC and reuse the in-memory backend's rules,
so both pass the same contract suite; they cost O(session), which suits the
short-lived conversations this backend is for. Lifecycle writes are optimistic
transactions (WATCH) retried on conflict.

Keys, per session (hash-tagged, one slot): ``memory:{<t>:<s>}:meta`` (hash),
``:msgs`` (list of JSON rows, seq first_seq..last_seq), ``:keys`` (idempotency),
``:sums`` (digests), ``:vecs`` (embeddings); per tenant ``memory:{<t>}:tenant``
(policy) and ``memory:{<t>}:sessions`` (sorted set of ids); ``memory:tenants``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import redis

from ..cache import _escape
from ..errors import PymemError, error_for_sqlstate
from ..models import (
    AppendResult,
    ContextWindow,
    NewMessage,
    RecalledMessage,
    SessionInfo,
    StoredMessage,
    Summary,
    TenantStats,
)
from ..validation import DEFAULT_EMBEDDING_DIM, check_append, check_ident
from .memory import InMemoryBackend, _Session, _Tenant

T = TypeVar("T")

_APPEND = """
local meta, msgs, keys = KEYS[1], KEYS[2], KEYS[3]
local role, tail, tokens = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key, hash, user, now = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local t_mm, t_mt, expires_iso, expires_ms = ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local tenant, session = ARGV[12], ARGV[13]
if key ~= '' then
  local k = redis.call('HGET', keys, key)
  if k then
    local d = cjson.decode(k)
    if d[2] == hash then return {d[1], d[3], 1} end
  end
end
local exists = redis.call('EXISTS', meta) == 1
if exists and (redis.call('HGET', meta, 'deleted_at') or '') ~= '' then
  return redis.error_reply('ME003 memory: session ' .. tenant .. '/' .. session .. ' is deleted')
end
local owner = ''
if exists then owner = redis.call('HGET', meta, 'user_id') or '' end
if user ~= '' and owner ~= '' and owner ~= user then
  return redis.error_reply('ME012 memory: session ' .. tenant .. '/' .. session
                           .. ' belongs to another user')
end
if key ~= '' and redis.call('HEXISTS', keys, key) == 1 then
  return redis.error_reply('ME011 memory: idempotency key was already used for another message')
end
local mm, mt = '', ''
if exists then
  mm = redis.call('HGET', meta, 'max_messages') or ''
  mt = redis.call('HGET', meta, 'max_tokens') or ''
end
if mm == '' then mm = t_mm end
if mt == '' then mt = t_mt end
if mt ~= '' and tokens > tonumber(mt) then
  return redis.error_reply('ME008 memory: message has ' .. tokens
                           .. ' tokens, the session cap is ' .. mt)
end
local last, first, count, total = 0, 1, 0, 0
if exists then
  last = tonumber(redis.call('HGET', meta, 'last_seq'))
  first = tonumber(redis.call('HGET', meta, 'first_seq'))
  count = tonumber(redis.call('HGET', meta, 'message_count'))
  total = tonumber(redis.call('HGET', meta, 'token_count'))
else
  redis.call('HSET', meta, 'tenant_id', tenant, 'session_id', session, 'user_id', user,
             'created_at', now, 'summarized_upto', 0, 'metadata', '{}', 'deleted_at', '',
             'expires_at', expires_iso, 'max_messages', '', 'max_tokens', '')
  owner = user
end
local seq = last + 1
redis.call('RPUSH', msgs, '[' .. seq .. ',' .. tail)
count = count + 1
total = total + tokens
while mm ~= '' and count > tonumber(mm) do
  local gone = cjson.decode(redis.call('LPOP', msgs))
  count, total, first = count - 1, total - gone[4], first + 1
end
while mt ~= '' and total > tonumber(mt) do
  local gone = cjson.decode(redis.call('LPOP', msgs))
  count, total, first = count - 1, total - gone[4], first + 1
end
if owner == '' and user ~= '' then redis.call('HSET', meta, 'user_id', user) end
redis.call('HSET', meta, 'last_seq', seq, 'first_seq', first, 'message_count', count,
           'token_count', total, 'updated_at', now)
if key ~= '' then redis.call('HSET', keys, key, cjson.encode({seq, hash, now})) end
if not exists and expires_ms ~= '' then
  for _, k in ipairs(KEYS) do redis.call('PEXPIREAT', k, expires_ms) end
end
return {seq, now, 0}
"""

_FIELDS = (
    "tenant_id",
    "session_id",
    "user_id",
    "last_seq",
    "first_seq",
    "message_count",
    "token_count",
    "summarized_upto",
    "max_messages",
    "max_tokens",
    "metadata",
    "created_at",
    "updated_at",
    "expires_at",
    "deleted_at",
)


def _opt_int(value: str) -> int | None:
    return int(value) if value not in ("", None) else None


def _opt_time(value: str) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


class RedisBackend:
    """Conversations in Redis alone: fast, ephemeral, same contract as the others."""

    def __init__(
        self, client: redis.Redis, *, embedding_dim: int = DEFAULT_EMBEDDING_DIM, retries: int = 50
    ) -> None:
        self.client = client
        self._append = client.register_script(_APPEND)
        self._embedding_dim = embedding_dim
        self._retries = retries

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisBackend:
        return cls(redis.Redis.from_url(url, decode_responses=True), **kwargs)

    # -- keys and (de)serialization -----------------------------------------------

    @staticmethod
    def _keys(tenant: str, session: str) -> dict[str, str]:
        tag = f"memory:{{{_escape(tenant)}:{_escape(session)}}}"
        return {k: f"{tag}:{k}" for k in ("meta", "msgs", "keys", "sums", "vecs")}

    @staticmethod
    def _tenant_key(tenant: str, what: str) -> str:
        return f"memory:{{{_escape(tenant)}}}:{what}"

    @staticmethod
    def _info(meta: Mapping[str, str]) -> SessionInfo:
        return SessionInfo(
            tenant_id=meta["tenant_id"],
            session_id=meta["session_id"],
            user_id=meta.get("user_id") or None,
            last_seq=int(meta["last_seq"]),
            first_seq=int(meta["first_seq"]),
            message_count=int(meta["message_count"]),
            token_count=int(meta["token_count"]),
            summarized_upto=int(meta.get("summarized_upto") or 0),
            max_messages=_opt_int(meta.get("max_messages", "")),
            max_tokens=_opt_int(meta.get("max_tokens", "")),
            metadata=json.loads(meta.get("metadata") or "{}"),
            created_at=datetime.fromisoformat(meta["created_at"]),
            updated_at=datetime.fromisoformat(meta["updated_at"]),
            expires_at=_opt_time(meta.get("expires_at", "")),
            deleted_at=_opt_time(meta.get("deleted_at", "")),
        )

    @staticmethod
    def _meta(info: SessionInfo) -> dict[str, str]:
        return {
            "tenant_id": info.tenant_id,
            "session_id": info.session_id,
            "user_id": info.user_id or "",
            "last_seq": str(info.last_seq),
            "first_seq": str(info.first_seq),
            "message_count": str(info.message_count),
            "token_count": str(info.token_count),
            "summarized_upto": str(info.summarized_upto),
            "max_messages": "" if info.max_messages is None else str(info.max_messages),
            "max_tokens": "" if info.max_tokens is None else str(info.max_tokens),
            "metadata": json.dumps(info.metadata),
            "created_at": _iso(info.created_at),
            "updated_at": _iso(info.updated_at),
            "expires_at": _iso(info.expires_at),
            "deleted_at": _iso(info.deleted_at),
        }

    def _tenant(self, tenant: str, pipe: Any = None) -> _Tenant:
        source: Any = pipe or self.client
        raw: dict[str, str] = source.hgetall(self._tenant_key(tenant, "tenant"))
        return _Tenant(
            max_messages=_opt_int(raw.get("max_messages", "")),
            max_tokens=_opt_int(raw.get("max_tokens", "")),
            default_ttl=(
                timedelta(seconds=float(raw["default_ttl"])) if raw.get("default_ttl") else None
            ),
            summary_every_tokens=(
                _opt_int(raw["summary_every_tokens"]) if "summary_every_tokens" in raw else 2000
            ),
            embed_messages=raw.get("embed_messages") == "1",
        )

    def _snapshot(self, tenant: str, session: str, pipe: Any = None) -> InMemoryBackend:
        """An in-memory backend holding this one session and its tenant's policy."""
        keys = self._keys(tenant, session)
        reader = pipe if pipe is not None else self.client.pipeline(transaction=True)
        if pipe is None:
            reader.hgetall(keys["meta"])
            reader.lrange(keys["msgs"], 0, -1)
            reader.hgetall(keys["keys"])
            reader.lrange(keys["sums"], 0, -1)
            reader.hgetall(keys["vecs"])
            meta, rows, idem, sums, vecs = reader.execute()
        else:
            meta = pipe.hgetall(keys["meta"])
            rows = pipe.lrange(keys["msgs"], 0, -1)
            idem = pipe.hgetall(keys["keys"])
            sums = pipe.lrange(keys["sums"], 0, -1)
            vecs = pipe.hgetall(keys["vecs"])
        snapshot = InMemoryBackend(embedding_dim=self._embedding_dim)
        snapshot._tenants[tenant] = self._tenant(tenant, pipe)
        if meta:
            messages = [
                StoredMessage(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6]))
                for r in map(json.loads, rows)
            ]
            summaries = [
                Summary(d[0], d[1], d[2], d[3], d[4], d[5], datetime.fromisoformat(d[6]))
                for d in map(json.loads, sums)
            ]
            snapshot._sessions[(tenant, session)] = _Session(
                info=self._info(meta),
                messages=messages,
                keys={
                    k: (v[0], v[1], datetime.fromisoformat(v[2]))
                    for k, v in ((k, json.loads(v)) for k, v in idem.items())
                },
                summaries=summaries,
                vectors={int(k): json.loads(v) for k, v in vecs.items()},
            )
            snapshot._next_summary_id = max((d.summary_id for d in summaries), default=0)
        return snapshot

    def _read(self, tenant: str, session: str, op: Callable[[InMemoryBackend], T]) -> T:
        check_ident("tenant", tenant)
        check_ident("session", session)
        return op(self._snapshot(tenant, session))

    def _update(self, tenant: str, session: str, op: Callable[[InMemoryBackend], T]) -> T:
        """Apply ``op`` to a snapshot under WATCH and write the session back."""
        check_ident("tenant", tenant)
        check_ident("session", session)
        keys = self._keys(tenant, session)
        for _ in range(self._retries):
            with self.client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(keys["meta"], keys["sums"])  # type: ignore[no-untyped-call]
                    snapshot = self._snapshot(tenant, session, pipe)
                    result = op(snapshot)
                    state = snapshot._sessions.get((tenant, session))
                    pipe.multi()
                    if state is None:
                        for key in keys.values():
                            pipe.delete(key)
                        pipe.zrem(self._tenant_key(tenant, "sessions"), session)
                    else:
                        pipe.hset(keys["meta"], mapping=cast(Any, self._meta(state.info)))
                        pipe.delete(keys["sums"])
                        for d in state.summaries:
                            pipe.rpush(
                                keys["sums"],
                                json.dumps(
                                    [
                                        d.summary_id,
                                        d.level,
                                        d.seq_from,
                                        d.seq_to,
                                        d.content,
                                        d.tokens,
                                        _iso(d.created_at),
                                    ]
                                ),
                            )
                        if state.info.expires_at is not None:
                            when = int(state.info.expires_at.timestamp() * 1000)
                            for key in keys.values():
                                pipe.pexpireat(key, when)
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise PymemError(
            "pymem: too much contention on a Redis session",
            hint="retry the call; lifecycle writes are optimistic",
        )

    # -- writes ----------------------------------------------------------------

    def append(
        self,
        tenant: str,
        session: str,
        role: str,
        content: str,
        *,
        tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        embedding: Sequence[float] | None = None,
        idempotency_key: str | None = None,
        user_id: str | None = None,
    ) -> AppendResult:
        checked = check_append(
            tenant,
            session,
            role,
            content,
            tokens=tokens,
            metadata=metadata,
            embedding=embedding,
            idempotency_key=idempotency_key,
            user_id=user_id,
            embedding_dim=self._embedding_dim,
        )
        n, vector = checked.tokens, checked.embedding
        policy = self._tenant(tenant)
        now = datetime.now(UTC)
        expires = now + policy.default_ttl if policy.default_ttl else None
        tail = json.dumps([role, content, n, checked.estimated, checked.metadata, now.isoformat()])[
            1:
        ]
        keys = self._keys(tenant, session)
        request = hashlib.md5(f"{role}:{content}".encode()).hexdigest()
        try:
            seq, created, duplicate = self._append(
                keys=[keys["meta"], keys["msgs"], keys["keys"]],
                args=[
                    role,
                    tail,
                    n,
                    idempotency_key or "",
                    request,
                    user_id or "",
                    now.isoformat(),
                    "" if policy.max_messages is None else policy.max_messages,
                    "" if policy.max_tokens is None else policy.max_tokens,
                    _iso(expires),
                    "" if expires is None else int(expires.timestamp() * 1000),
                    tenant,
                    session,
                ],
            )
        except redis.ResponseError as exc:
            code, _, message = str(exc).partition(" ")
            mapped = error_for_sqlstate(code)
            if mapped is None:
                raise
            raise mapped(message) from exc
        if not duplicate:
            pipe = self.client.pipeline(transaction=False)
            pipe.zadd(self._tenant_key(tenant, "sessions"), {session: 0})
            pipe.sadd("memory:tenants", tenant)
            if vector is not None:
                pipe.hset(keys["vecs"], str(seq), json.dumps(vector))
            pipe.execute()
        return AppendResult(
            seq=int(seq), created_at=datetime.fromisoformat(created), duplicate=bool(duplicate)
        )

    def append_many(
        self,
        tenant: str,
        session: str,
        messages: Sequence[NewMessage],
        *,
        user_id: str | None = None,
    ) -> list[AppendResult]:
        # Validate the whole batch first, so a bad message writes nothing.
        checker = InMemoryBackend(embedding_dim=self._embedding_dim)
        checker._tenants[tenant] = self._tenant(tenant)
        checker.append_many(tenant, session, messages, user_id=user_id)
        return [
            self.append(
                tenant,
                session,
                m.role,
                m.content,
                tokens=m.tokens,
                metadata=m.metadata,
                embedding=m.embedding,
                idempotency_key=m.idempotency_key,
                user_id=user_id,
            )
            for m in messages
        ]

    def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        return self._update(tenant, session, lambda b: b.extend_session(tenant, session, ttl))

    def configure_session(
        self,
        tenant: str,
        session: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        summary_every_tokens: int | None = None,
    ) -> None:
        self._update(
            tenant,
            session,
            lambda b: b.configure_session(
                tenant,
                session,
                max_messages=max_messages,
                max_tokens=max_tokens,
                metadata=metadata,
                summary_every_tokens=summary_every_tokens,
            ),
        )

    def delete_session(self, tenant: str, session: str) -> datetime:
        return self._update(tenant, session, lambda b: b.delete_session(tenant, session))

    def restore_session(self, tenant: str, session: str) -> None:
        self._update(tenant, session, lambda b: b.restore_session(tenant, session))

    def purge_session(self, tenant: str, session: str) -> int:
        return self._update(tenant, session, lambda b: b.purge_session(tenant, session))

    def add_summary(
        self,
        tenant: str,
        session: str,
        *,
        level: int,
        seq_from: int,
        seq_to: int,
        content: str,
        tokens: int,
        metadata: Mapping[str, Any] | None = None,
    ) -> int:
        return self._update(
            tenant,
            session,
            lambda b: b.add_summary(
                tenant,
                session,
                level=level,
                seq_from=seq_from,
                seq_to=seq_to,
                content=content,
                tokens=tokens,
                metadata=metadata,
            ),
        )

    def _set_tenant(self, tenant: str, fields: Mapping[str, str]) -> None:
        self.client.hset(self._tenant_key(tenant, "tenant"), mapping=cast(Any, dict(fields)))
        self.client.sadd("memory:tenants", tenant)

    def configure_tenant(
        self,
        tenant: str,
        *,
        max_messages: int | None = None,
        max_tokens: int | None = None,
        default_ttl: timedelta | None = None,
    ) -> None:
        InMemoryBackend().configure_tenant(
            tenant, max_messages=max_messages, max_tokens=max_tokens, default_ttl=default_ttl
        )
        self._set_tenant(
            tenant,
            {
                "max_messages": "" if max_messages is None else str(max_messages),
                "max_tokens": "" if max_tokens is None else str(max_tokens),
                "default_ttl": "" if default_ttl is None else str(default_ttl.total_seconds()),
            },
        )

    def configure_recall(
        self, tenant: str, *, summary_every_tokens: int | None = 2000, embed_messages: bool = False
    ) -> None:
        InMemoryBackend().configure_recall(
            tenant, summary_every_tokens=summary_every_tokens, embed_messages=embed_messages
        )
        self._set_tenant(
            tenant,
            {
                "summary_every_tokens": ""
                if summary_every_tokens is None
                else str(summary_every_tokens),
                "embed_messages": "1" if embed_messages else "0",
            },
        )

    # -- reads -----------------------------------------------------------------

    def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        return self._read(
            tenant,
            session,
            lambda b: b.history(tenant, session, after_seq=after_seq, page_size=page_size),
        )

    def last_messages(self, tenant: str, session: str, count: int = 50) -> list[StoredMessage]:
        return self._read(tenant, session, lambda b: b.last_messages(tenant, session, count))

    def context(
        self,
        tenant: str,
        session: str,
        *,
        budget: int,
        query: str | None = None,
        query_embedding: Sequence[float] | None = None,
        strategy: str = "recent",
        message_overhead: int = 0,
        summary_share: float | None = None,
        recent_share: float | None = None,
    ) -> ContextWindow:
        return self._read(
            tenant,
            session,
            lambda b: b.context(
                tenant,
                session,
                budget=budget,
                query=query,
                query_embedding=query_embedding,
                strategy=strategy,
                message_overhead=message_overhead,
                summary_share=summary_share,
                recent_share=recent_share,
            ),
        )

    def recall(
        self,
        tenant: str,
        session: str,
        query: str,
        *,
        query_embedding: Sequence[float] | None = None,
        before_seq: int | None = None,
        max_rows: int = 50,
    ) -> list[RecalledMessage]:
        return self._read(
            tenant,
            session,
            lambda b: b.recall(
                tenant,
                session,
                query,
                query_embedding=query_embedding,
                before_seq=before_seq,
                max_rows=max_rows,
            ),
        )

    def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        return self._read(tenant, session, lambda b: b.list_summaries(tenant, session))

    def session_info(self, tenant: str, session: str) -> SessionInfo:
        return self._read(tenant, session, lambda b: b.session_info(tenant, session))

    def _infos(self, tenant: str) -> list[SessionInfo]:
        ids = [str(i) for i in self.client.zrange(self._tenant_key(tenant, "sessions"), 0, -1)]
        pipe = self.client.pipeline(transaction=False)
        for session in ids:
            pipe.hgetall(self._keys(tenant, session)["meta"])
        return [self._info(meta) for meta in pipe.execute() if meta]

    def list_sessions(
        self,
        tenant: str,
        *,
        owner: str | None = None,
        include_deleted: bool = False,
        after_session: str | None = None,
        page_size: int = 100,
    ) -> list[SessionInfo]:
        view = InMemoryBackend()
        check_ident("tenant", tenant)
        for info in self._infos(tenant):
            view._sessions[(tenant, info.session_id)] = _Session(info=info)
        return view.list_sessions(
            tenant,
            owner=owner,
            include_deleted=include_deleted,
            after_session=after_session,
            page_size=page_size,
        )

    def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        view = InMemoryBackend(embedding_dim=self._embedding_dim)
        check_ident("user_id", user_id)
        for info in self.list_sessions(
            tenant, owner=user_id, include_deleted=True, page_size=10_000
        ):
            snapshot = self._snapshot(tenant, info.session_id)
            view._sessions.update(snapshot._sessions)
        return view.export_subject(tenant, user_id)

    def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        check_ident("user_id", user_id)
        return [
            (info.session_id, self.purge_session(tenant, info.session_id))
            for info in self.list_sessions(
                tenant, owner=user_id, include_deleted=True, page_size=10_000
            )
        ]

    def stats(self, tenant: str | None = None) -> list[TenantStats]:
        view = InMemoryBackend()
        tenants = (
            [tenant]
            if tenant is not None
            else sorted(str(t) for t in self.client.smembers("memory:tenants"))
        )
        for t in tenants:
            for info in self._infos(t):
                view._sessions[(t, info.session_id)] = _Session(info=info)
        return view.stats(tenant)

    def close(self) -> None:
        self.client.close()
