"""A standalone Redis backend for ephemeral deployments (no PostgreSQL).

An append or a batch is one Lua script that takes the steps of
``memory.append`` (sql/040_append_steps.sql) for every message: find retries,
lock the session (deleted, expired, owner), claim idempotency keys, insert
under the next seqs and trim to the caps. It checks every message before the
first write, so a batch is all or nothing. Reads load a session's state in one MULTI/EXEC and reuse
the in-memory backend's rules, so both pass the same contract suite; they
cost O(session), which suits the short-lived conversations this backend is
for. Lifecycle writes are optimistic transactions (WATCH) retried on conflict.

Keys, per session (hash-tagged, one slot): ``memory:{<t>:<s>}:meta`` (hash),
``:msgs`` (list of JSON rows, seq first_seq..last_seq), ``:keys`` (idempotency),
``:sums`` (digests), ``:vecs`` (embeddings); per tenant ``memory:{<t>}:tenant``
(policy) and ``memory:{<t>}:sessions`` (sorted set of ids); ``memory:tenants``.

:mod:`pymem.backends.redis_async` is the source and
:mod:`pymem.backends.redis` its generated sync twin.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar, cast

import redis.asyncio as redis  # sync: import redis

from ..errors import PymemError, error_for_sqlstate
from ..models import (
    FIRST_PAGE,
    AppendResult,
    Batch,
    ContextRequest,
    ContextWindow,
    NewMessage,
    NewSummary,
    RecalledMessage,
    RecallRequest,
    RecallSettings,
    SessionInfo,
    SessionQuery,
    SessionSettings,
    StoredMessage,
    Summary,
    TenantSettings,
    TenantStats,
)
from ..validation import DEFAULT_EMBEDDING_DIM, check_append, check_batch, check_ident
from .memory_async import (
    AsyncInMemoryBackend,
    SessionState,
    TenantPolicy,
    now,
    request_hash,
    stored_form,
)
from .redis_keys import session_tag, tenant_tag

T = TypeVar("T")

# A read or lifecycle write, applied to an in-memory snapshot of one session.
SnapshotOp = Callable[[AsyncInMemoryBackend], Awaitable[T]]

# KEYS: meta, msgs, keys, vecs. ARGV: tenant, session, user, now (iso), now (ms),
# tenant max_messages, tenant max_tokens, expiry (iso), expiry (ms), batch (JSON
# list of [idempotency key, request hash, tokens, row tail, embedding JSON]).
_APPEND = """
local meta, msgs, keys, vecs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local tenant, session, user, now, now_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local t_mm, t_mt, expires_iso, expires_ms = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local batch = cjson.decode(ARGV[10])
local where = tenant .. '/' .. session
local exists = redis.call('EXISTS', meta) == 1
local owner, mm, mt, deleted, until_ms = '', '', '', '', ''
if exists then
  local m = redis.call('HMGET', meta, 'user_id', 'max_messages', 'max_tokens', 'deleted_at',
                       'expires_ms')
  owner, mm, mt, deleted, until_ms = m[1] or '', m[2] or '', m[3] or '', m[4] or '', m[5] or ''
end
if mm == '' then mm = t_mm end
if mt == '' then mt = t_mt end
-- For every message, before the first write: _find_retry, then the checks of
-- the session lock (deleted, expired, owner), _claim_idempotency and the token cap.
local plan, seen, checked = {}, {}, false
for i, m in ipairs(batch) do
  local key, hash, tokens = m[1], m[2], tonumber(m[3])
  local stored = nil
  if key ~= '' then stored = redis.call('HGET', keys, key) end
  if stored and cjson.decode(stored)[2] == hash then
    local d = cjson.decode(stored)
    plan[i] = {'retry', d[1], d[3]}
  elseif key ~= '' and seen[key] and seen[key][1] == hash then
    plan[i] = {'twin', seen[key][2]}
  else
    if not checked then
      if deleted ~= '' then
        return redis.error_reply('ME003 memory: session ' .. where .. ' is deleted')
      end
      if until_ms ~= '' and tonumber(until_ms) <= now_ms then
        return redis.error_reply('ME020 memory: session ' .. where .. ' expired')
      end
      if user ~= '' and owner ~= '' and owner ~= user then
        return redis.error_reply('ME012 memory: session ' .. where .. ' belongs to another user')
      end
      checked = true
    end
    if stored or seen[key] then
      return redis.error_reply('ME011 memory: idempotency key was already used for another message')
    end
    if mt ~= '' and tokens > tonumber(mt) then
      return redis.error_reply('ME008 memory: message has ' .. tokens
                               .. ' tokens, the session cap is ' .. mt)
    end
    plan[i] = {'insert'}
    if key ~= '' then seen[key] = {hash, i} end
  end
end
if not checked then
  local out = {}
  for i, p in ipairs(plan) do out[i] = {p[2], p[3], 1} end
  return out
end
-- Then the writes: the session lock (create the session), the inserts, _trim_to_caps.
local last, first, count, total = 0, 1, 0, 0
if exists then
  local m = redis.call('HMGET', meta, 'last_seq', 'first_seq', 'message_count', 'token_count')
  last, first, count, total = tonumber(m[1]), tonumber(m[2]), tonumber(m[3]), tonumber(m[4])
else
  redis.call('HSET', meta, 'tenant_id', tenant, 'session_id', session, 'user_id', user,
             'created_at', now, 'summarized_upto', 0, 'metadata', '{}', 'deleted_at', '',
             'expires_at', expires_iso, 'expires_ms', expires_ms, 'max_messages', '',
             'max_tokens', '')
  owner = user
end
local out = {}
for i, m in ipairs(batch) do
  local p = plan[i]
  if p[1] == 'insert' then
    last = last + 1
    redis.call('RPUSH', msgs, '[' .. last .. ',' .. m[4])
    if m[1] ~= '' then redis.call('HSET', keys, m[1], cjson.encode({last, m[2], now})) end
    if m[5] ~= '' then redis.call('HSET', vecs, last, m[5]) end
    count, total = count + 1, total + tonumber(m[3])
    out[i] = {last, now, 0}
  elseif p[1] == 'twin' then
    out[i] = {out[p[2]][1], now, 1}
  else
    out[i] = {p[2], p[3], 1}
  end
end
while (mm ~= '' and count > tonumber(mm)) or (mt ~= '' and total > tonumber(mt)) do
  local gone = cjson.decode(redis.call('LPOP', msgs))
  redis.call('HDEL', vecs, gone[1])
  count, total, first = count - 1, total - gone[4], first + 1
end
if owner == '' and user ~= '' then redis.call('HSET', meta, 'user_id', user) end
redis.call('HSET', meta, 'last_seq', last, 'first_seq', first, 'message_count', count,
           'token_count', total, 'updated_at', now)
if not exists and expires_ms ~= '' then
  for _, k in ipairs(KEYS) do redis.call('PEXPIREAT', k, expires_ms) end
end
return out
"""

_KINDS = ("meta", "msgs", "keys", "sums", "vecs")


def _opt_int(value: str | None) -> int | None:
    return int(value) if value not in ("", None) else None


def _opt_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _ms(value: datetime | None) -> str:
    return "" if value is None else str(int(value.timestamp() * 1000))


def session_keys(tenant: str, session: str) -> dict[str, str]:
    tag = session_tag(tenant, session)
    return {k: f"{tag}:{k}" for k in _KINDS}


def info_from(meta: Mapping[str, str]) -> SessionInfo:
    return SessionInfo(
        tenant_id=meta["tenant_id"],
        session_id=meta["session_id"],
        user_id=meta.get("user_id") or None,
        last_seq=int(meta["last_seq"]),
        first_seq=int(meta["first_seq"]),
        message_count=int(meta["message_count"]),
        token_count=int(meta["token_count"]),
        summarized_upto=int(meta.get("summarized_upto") or 0),
        max_messages=_opt_int(meta.get("max_messages")),
        max_tokens=_opt_int(meta.get("max_tokens")),
        metadata=json.loads(meta.get("metadata") or "{}"),
        created_at=datetime.fromisoformat(meta["created_at"]),
        updated_at=datetime.fromisoformat(meta["updated_at"]),
        expires_at=_opt_time(meta.get("expires_at")),
        deleted_at=_opt_time(meta.get("deleted_at")),
    )


def meta_from(info: SessionInfo) -> dict[str, str]:
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
        "expires_ms": _ms(info.expires_at),
        "deleted_at": _iso(info.deleted_at),
    }


def policy_from(raw: Mapping[str, str]) -> TenantPolicy:
    return TenantPolicy(
        max_messages=_opt_int(raw.get("max_messages")),
        max_tokens=_opt_int(raw.get("max_tokens")),
        default_ttl=(
            timedelta(seconds=float(raw["default_ttl"])) if raw.get("default_ttl") else None
        ),
        summary_every_tokens=(
            _opt_int(raw["summary_every_tokens"]) if "summary_every_tokens" in raw else 2000
        ),
        embed_messages=raw.get("embed_messages") == "1",
    )


def state_from(
    meta: Mapping[str, str],
    rows: Sequence[str],
    idem: Mapping[str, str],
    sums: Sequence[str],
    vecs: Mapping[str, str],
) -> SessionState:
    """A session's state from its five keys (see the module docstring)."""
    return SessionState(
        info=info_from(meta),
        messages=[
            # Rows written before parts existed end at created_at.
            StoredMessage(r[0], r[1], r[2], r[3], r[4], r[5], datetime.fromisoformat(r[6]), *r[7:9])
            for r in map(json.loads, rows)
        ],
        keys={
            k: (v[0], v[1], datetime.fromisoformat(v[2]))
            for k, v in ((k, json.loads(v)) for k, v in idem.items())
        },
        summaries=[
            Summary(d[0], d[1], d[2], d[3], d[4], d[5], datetime.fromisoformat(d[6]))
            for d in map(json.loads, sums)
        ],
        vectors={int(k): json.loads(v) for k, v in vecs.items()},
    )


def summary_row(d: Summary) -> str:
    return json.dumps(
        [d.summary_id, d.level, d.seq_from, d.seq_to, d.content, d.tokens, _iso(d.created_at)]
    )


class AsyncRedisBackend:
    """Conversations in Redis alone: fast, ephemeral, same contract as the others."""

    def __init__(
        self, client: redis.Redis, *, embedding_dim: int = DEFAULT_EMBEDDING_DIM, retries: int = 50
    ) -> None:
        self.client = client
        self._append = client.register_script(_APPEND)
        self.embedding_dim = embedding_dim
        self._retries = retries

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> AsyncRedisBackend:
        return cls(redis.Redis.from_url(url, decode_responses=True), **kwargs)

    async def _policy(self, tenant: str, reader: Any = None) -> TenantPolicy:
        source: Any = reader or self.client
        raw: dict[str, str] = await source.hgetall(f"{tenant_tag(tenant)}:tenant")
        return policy_from(raw)

    async def _snapshot(self, tenant: str, session: str, pipe: Any = None) -> AsyncInMemoryBackend:
        """An in-memory backend holding this one session and its tenant's policy."""
        keys = session_keys(tenant, session)
        if pipe is None:
            reader = self.client.pipeline(transaction=True)
            reader.hgetall(keys["meta"])
            reader.lrange(keys["msgs"], 0, -1)
            reader.hgetall(keys["keys"])
            reader.lrange(keys["sums"], 0, -1)
            reader.hgetall(keys["vecs"])
            meta, rows, idem, sums, vecs = await reader.execute()
        else:  # watching: each command runs at once
            meta = await pipe.hgetall(keys["meta"])
            rows = await pipe.lrange(keys["msgs"], 0, -1)
            idem = await pipe.hgetall(keys["keys"])
            sums = await pipe.lrange(keys["sums"], 0, -1)
            vecs = await pipe.hgetall(keys["vecs"])
        snapshot = AsyncInMemoryBackend(embedding_dim=self.embedding_dim)
        snapshot.tenants[tenant] = await self._policy(tenant, pipe)
        if meta:
            state = state_from(meta, rows, idem, sums, vecs)
            snapshot.sessions[(tenant, session)] = state
            snapshot.last_summary_id = max((d.summary_id for d in state.summaries), default=0)
        return snapshot

    async def _read(self, tenant: str, session: str, op: SnapshotOp[T]) -> T:
        check_ident("tenant", tenant)
        check_ident("session", session)
        return await op(await self._snapshot(tenant, session))

    async def _update(
        self,
        tenant: str,
        session: str,
        op: SnapshotOp[T],
        also: Callable[[Any, Mapping[str, str], SessionState, T], None] | None = None,
    ) -> T:
        """Apply ``op`` to a snapshot under WATCH and write the session back;
        ``also`` queues more writes, given the session as it was before ``op``."""
        check_ident("tenant", tenant)
        check_ident("session", session)
        keys = session_keys(tenant, session)
        for _ in range(self._retries):
            async with self.client.pipeline(transaction=True) as transaction:
                pipe: Any = transaction  # redis-py leaves watch and multi untyped
                try:
                    await pipe.watch(keys["meta"], keys["sums"])
                    snapshot = await self._snapshot(tenant, session, pipe)
                    before = copy.copy(snapshot.sessions.get((tenant, session)))
                    result = await op(snapshot)
                    pipe.multi()
                    self._write_back(pipe, keys, snapshot.sessions.get((tenant, session)))
                    if also is not None and before is not None:
                        also(pipe, keys, before, result)
                    if (tenant, session) not in snapshot.sessions:
                        pipe.zrem(f"{tenant_tag(tenant)}:sessions", session)
                    await pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise PymemError(
            "pymem: too much contention on a Redis session",
            hint="retry the call; lifecycle writes are optimistic",
        )

    @staticmethod
    def _write_back(pipe: Any, keys: Mapping[str, str], state: SessionState | None) -> None:
        """Queue the writes that store ``state`` (None: the session is gone)."""
        if state is None:
            for key in keys.values():
                pipe.delete(key)
            return
        pipe.hset(keys["meta"], mapping=cast(Any, meta_from(state.info)))
        pipe.delete(keys["sums"])
        for d in state.summaries:
            pipe.rpush(keys["sums"], summary_row(d))
        if state.info.expires_at is not None:
            when = int(state.info.expires_at.timestamp() * 1000)
            for key in keys.values():
                pipe.pexpireat(key, when)

    # -- writes ----------------------------------------------------------------

    async def append(
        self, tenant: str, session: str, message: NewMessage, *, user_id: str | None = None
    ) -> AppendResult:
        return (await self.append_many(tenant, session, [message], user_id=user_id))[0]

    async def append_many(
        self, tenant: str, session: str, messages: Batch, *, user_id: str | None = None
    ) -> list[AppendResult]:
        check_batch(messages)
        at = now()
        batch = []
        for m in messages:
            checked = check_append(
                tenant, session, m, user_id=user_id, embedding_dim=self.embedding_dim
            )
            row = [m.role, m.content, checked.tokens, checked.estimated, checked.metadata]
            tail = json.dumps([*row, at.isoformat(), m.parts_json(), m.name])[1:]
            vector = "" if checked.embedding is None else json.dumps(checked.embedding)
            key = m.idempotency_key or ""
            request = request_hash(m.role, stored_form(m))
            batch.append([key, request, checked.tokens, tail, vector])
        policy = await self._policy(tenant)
        expires = at + policy.default_ttl if policy.default_ttl else None
        keys = session_keys(tenant, session)
        args = [tenant, session, user_id or "", at.isoformat(), _ms(at)]
        args += [_opt(policy.max_messages), _opt(policy.max_tokens), _iso(expires), _ms(expires)]
        try:
            rows = await self._append(
                keys=[keys["meta"], keys["msgs"], keys["keys"], keys["vecs"]],
                args=[*args, json.dumps(batch)],
            )
        except redis.ResponseError as exc:
            code, _, text = str(exc).partition(" ")
            mapped = error_for_sqlstate(code)
            if mapped is None:
                raise
            raise mapped(text) from exc
        results = [
            AppendResult(
                seq=int(seq), created_at=datetime.fromisoformat(created), duplicate=bool(d)
            )
            for seq, created, d in rows
        ]
        if not all(r.duplicate for r in results):
            index = self.client.pipeline(transaction=False)
            index.zadd(f"{tenant_tag(tenant)}:sessions", {session: 0})
            index.sadd("memory:tenants", tenant)
            await index.execute()
        return results

    async def extend_session(self, tenant: str, session: str, ttl: timedelta) -> datetime:
        return await self._update(tenant, session, lambda b: b.extend_session(tenant, session, ttl))

    async def configure_session(self, tenant: str, session: str, settings: SessionSettings) -> None:
        await self._update(
            tenant, session, lambda b: b.configure_session(tenant, session, settings)
        )

    async def delete_session(self, tenant: str, session: str) -> datetime:
        return await self._update(tenant, session, lambda b: b.delete_session(tenant, session))

    async def restore_session(self, tenant: str, session: str) -> None:
        await self._update(tenant, session, lambda b: b.restore_session(tenant, session))

    async def purge_session(self, tenant: str, session: str) -> int:
        return await self._update(tenant, session, lambda b: b.purge_session(tenant, session))

    async def pop_message(self, tenant: str, session: str) -> StoredMessage | None:
        return await self._update(
            tenant, session, lambda b: b.pop_message(tenant, session), _drop_popped
        )

    async def add_summary(self, tenant: str, session: str, summary: NewSummary) -> int:
        return await self._update(
            tenant, session, lambda b: b.add_summary(tenant, session, summary)
        )

    async def _set_policy(self, tenant: str, fields: Mapping[str, str]) -> None:
        await self.client.hset(f"{tenant_tag(tenant)}:tenant", mapping=cast(Any, dict(fields)))
        await self.client.sadd("memory:tenants", tenant)

    async def configure_tenant(self, tenant: str, settings: TenantSettings) -> None:
        # The in-memory rules check the settings; then the fields are stored.
        await AsyncInMemoryBackend().configure_tenant(tenant, settings)
        ttl = settings.default_ttl
        fields = {
            "max_messages": _opt(settings.max_messages),
            "max_tokens": _opt(settings.max_tokens),
            "default_ttl": "" if ttl is None else str(ttl.total_seconds()),
        }
        await self._set_policy(tenant, fields)

    async def configure_recall(self, tenant: str, settings: RecallSettings) -> None:
        await AsyncInMemoryBackend().configure_recall(tenant, settings)
        fields = {
            "summary_every_tokens": _opt(settings.summary_every_tokens),
            "embed_messages": "1" if settings.embed_messages else "0",
        }
        await self._set_policy(tenant, fields)

    # -- reads -----------------------------------------------------------------

    async def history(
        self, tenant: str, session: str, *, after_seq: int = 0, page_size: int = 100
    ) -> list[StoredMessage]:
        return await self._read(
            tenant,
            session,
            lambda b: b.history(tenant, session, after_seq=after_seq, page_size=page_size),
        )

    async def last_messages(
        self, tenant: str, session: str, count: int = 50
    ) -> list[StoredMessage]:
        return await self._read(tenant, session, lambda b: b.last_messages(tenant, session, count))

    async def context(self, tenant: str, session: str, request: ContextRequest) -> ContextWindow:
        return await self._read(tenant, session, lambda b: b.context(tenant, session, request))

    async def recall(
        self, tenant: str, session: str, request: RecallRequest
    ) -> list[RecalledMessage]:
        return await self._read(tenant, session, lambda b: b.recall(tenant, session, request))

    async def list_summaries(self, tenant: str, session: str) -> list[Summary]:
        return await self._read(tenant, session, lambda b: b.list_summaries(tenant, session))

    async def session_info(self, tenant: str, session: str) -> SessionInfo:
        return await self._read(tenant, session, lambda b: b.session_info(tenant, session))

    async def _view(self, tenants: Sequence[str]) -> AsyncInMemoryBackend:
        """An in-memory backend holding the session rows (no messages) of ``tenants``."""
        view = AsyncInMemoryBackend(embedding_dim=self.embedding_dim)
        for tenant in tenants:
            ids = [
                str(i) for i in await self.client.zrange(f"{tenant_tag(tenant)}:sessions", 0, -1)
            ]
            pipe = self.client.pipeline(transaction=False)
            for session in ids:
                pipe.hgetall(session_keys(tenant, session)["meta"])
            for meta in await pipe.execute():
                if meta:
                    info = info_from(meta)
                    view.sessions[(tenant, info.session_id)] = SessionState(info=info)
        return view

    async def list_sessions(
        self, tenant: str, query: SessionQuery = FIRST_PAGE
    ) -> list[SessionInfo]:
        check_ident("tenant", tenant)
        return await (await self._view([tenant])).list_sessions(tenant, query)

    async def _subject_sessions(self, tenant: str, user_id: str) -> list[SessionInfo]:
        check_ident("user_id", user_id)
        return await self.list_sessions(
            tenant, SessionQuery(owner=user_id, include_deleted=True, page_size=10_000)
        )

    async def export_subject(self, tenant: str, user_id: str) -> dict[str, Any]:
        view = AsyncInMemoryBackend(embedding_dim=self.embedding_dim)
        for info in await self._subject_sessions(tenant, user_id):
            snapshot = await self._snapshot(tenant, info.session_id)
            view.sessions.update(snapshot.sessions)
        return await view.export_subject(tenant, user_id)

    async def erase_subject(self, tenant: str, user_id: str) -> list[tuple[str, int]]:
        return [
            (info.session_id, await self.purge_session(tenant, info.session_id))
            for info in await self._subject_sessions(tenant, user_id)
        ]

    async def stats(self, tenant: str | None = None) -> list[TenantStats]:
        tenants = (
            [tenant]
            if tenant is not None
            else sorted(str(t) for t in await self.client.smembers("memory:tenants"))
        )
        return await (await self._view(tenants)).stats(tenant)

    async def close(self) -> None:
        await self.client.aclose()


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _drop_popped(
    pipe: Any, keys: Mapping[str, str], before: SessionState, gone: StoredMessage | None
) -> None:
    """The writes of memory.pop_message beyond the session row: the message, its
    vector and its idempotency keys."""
    if gone is None:
        return
    pipe.rpop(keys["msgs"])
    pipe.hdel(keys["vecs"], gone.seq)
    forgotten = [k for k, v in before.keys.items() if v[0] == gone.seq]
    if forgotten:
        pipe.hdel(keys["keys"], *forgotten)
