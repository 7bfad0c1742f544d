-- The steps of memory.append, in the order it takes them (045_append.sql).
-- Each does one thing and is documented on its own; the in-memory and Redis
-- backends name the same steps (pymem/backends/memory_async.py). They run
-- inside memory.append's definer context and are executable by owners only.
-- Each pins its search_path like every function of schema memory (about
-- 1.5 us a call, measured). Steps that only write return a value (the first
-- seq kept, the jobs queued) so that append calls them as expressions,
-- without a statement round through the executor. The insert itself stays
-- in memory.append: one statement, and as a function of its own its fourteen
-- arguments cost about 40 us of an append's 140 us of server time.

-------------------------------------------------------------------------------
-- The argument checks of an append are statements of memory.append
-- (045_append.sql): as a function returning three values, they cost about a
-- tenth of an append.
drop function if exists memory._check_append(text, text, text, text, integer, jsonb,
                                             public.vector, text, text);

-------------------------------------------------------------------------------
-- _apply_pii_policy: the tenant's personal data policy, applied to the text.
drop function if exists memory._apply_pii_policy(text, text, integer, jsonb);
drop function if exists memory._apply_pii_policy(text, text, integer, jsonb, boolean);
create or replace function memory._apply_pii_policy(
    policy              jsonb,
    content             text,
    tokens              integer,
    metadata            jsonb,
    structured          boolean default false,
    out stored_content  text,
    out stored_tokens   integer,
    out stored_metadata jsonb
)
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_kinds  text[];
    v_parts  jsonb;
    r        record;
begin
    stored_content := content;
    stored_tokens := tokens;
    stored_metadata := metadata;
    if _apply_pii_policy.policy is null or _apply_pii_policy.policy = '{}'::jsonb then
        return;
    end if;
    if structured then
        -- Every string of every part, but not its type, ids, tool name or
        -- references: those must stay what the model and the tools gave.
        v_parts := '[]';
        v_kinds := '{}';
        for r in
            select c.cleaned, c.kinds
              from jsonb_array_elements(content::jsonb -> 'parts') with ordinality as p
                   cross join lateral memory._pii_json(
                       _apply_pii_policy.policy, p.value,
                       '{type,id,call_id,name,url,file_id,detail,filename,is_error}') as c
             order by p.ordinality
        loop
            v_parts := v_parts || jsonb_build_array(r.cleaned);
            v_kinds := v_kinds || r.kinds;
        end loop;
        stored_content := jsonb_set(content::jsonb, '{parts}', v_parts)::text;
        select coalesce(array_agg(distinct k order by k), '{}') into v_kinds from unnest(v_kinds) as k;
    else
        select p.content, p.kinds
          into stored_content, v_kinds
          from memory._apply_pii(_apply_pii_policy.policy, content) as p;
    end if;
    if cardinality(v_kinds) > 0 then
        -- Merged with kinds a client-side classifier already listed.
        stored_metadata := metadata || jsonb_build_object('pii', (
            select jsonb_agg(distinct u.kind order by u.kind)
              from (select jsonb_array_elements_text(
                               case when jsonb_typeof(metadata -> 'pii') = 'array'
                                    then metadata -> 'pii' else '[]'::jsonb end)
                    union
                    select unnest(v_kinds)) as u (kind)));
    end if;
    if stored_content is distinct from content then
        -- Placeholders and masks may tokenize differently: never under-count.
        stored_tokens := greatest(tokens, memory.estimate_tokens(
                             case when structured
                                  then memory._parts_text(stored_content::jsonb -> 'parts', true)
                                  else stored_content end));
    end if;
end;
$fn$;

comment on function memory._apply_pii_policy(jsonb, text, integer, jsonb, boolean) is
$$Apply a tenant's personal data policy (memory.tenants.pii_policy, set with
memory.configure_pii; memory.append reads it with the tenant's other
settings) to an append's text (with `structured`, to every string of a part
document's parts but their types, ids, tool names and references) before it
is hashed, sealed, audited or stored: the text, token count and metadata
(kinds acted on in `pii`) to store. Errors: ME019 blocked.$$;

-------------------------------------------------------------------------------
-- _choose_data_key: the data key an encrypting tenant seals new rows under.
create or replace function memory._choose_data_key(
    tenant          text,
    encryption      text,
    out key_version integer,
    out data_keys   bytea[]
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if encryption is not null and encryption <> 'none' then
        key_version := memory._active_key(tenant);
        data_keys := memory._data_keys(tenant);
    end if;
end;
$fn$;

comment on function memory._choose_data_key(text, text) is
$$The active data key version and the unwrapped keys of `tenant`, or nulls
when it stores plaintext. Errors: ME018 no usable master key.$$;

-------------------------------------------------------------------------------
-- _find_retry: the stored result of an append this one repeats, if any.
create or replace function memory._find_retry(
    tenant          text,
    session         text,
    idempotency_key text,
    role            text,
    content         text,
    data_keys       bytea[]
)
returns memory.append_result
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_result memory.append_result;
begin
    select k.seq, k.created_at, true
      into v_result.seq, v_result.created_at, v_result.duplicate
      from memory.idempotency_keys as k
     where k.tenant_id = _find_retry.tenant
       and k.session_id = _find_retry.session
       and k.idempotency_key = _find_retry.idempotency_key
       and memory._request_matches(k.request_hash, _find_retry.role, _find_retry.content, data_keys);
    return v_result;
end;
$fn$;

comment on function memory._find_retry(text, text, text, text, text, bytea[]) is
$$(seq, created_at, true) of the committed append with this idempotency key
and the same role and content; all null when there is none.$$;

-------------------------------------------------------------------------------
-- _holds_stored_key: does a batch repeat an idempotency key of its session?
create or replace function memory._holds_stored_key(
    tenant   text,
    session  text,
    messages memory.turn_input[]
)
returns boolean
language plpgsql  -- its plan is kept for the session (a SQL function's is made per call)
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    -- One probe of the primary key per key of the batch, driven by the
    -- batch (as a filter over the session's keys, = any would read them all).
    return exists (
        select
          from unnest(_holds_stored_key.messages) as u
               cross join lateral (
                   select
                     from memory.idempotency_keys as k
                    where k.tenant_id = _holds_stored_key.tenant
                      and k.session_id = _holds_stored_key.session
                      and k.idempotency_key = u.idempotency_key
                    limit 1) as stored
         where u.idempotency_key is not null);
end;
$fn$;

comment on function memory._holds_stored_key(text, text, memory.turn_input[]) is
$$True when the session has stored one of the idempotency keys of `messages`
(memory.idempotency_keys): a batch of memory._append_batch that repeats one
goes message by message, where memory.append answers each retry.$$;

-------------------------------------------------------------------------------
-- The session row lock itself is a statement of memory.append (045_append.sql):
-- as a function returning its eleven values, it cost an eighth of an append.
drop function if exists memory._lock_session(text, text, text, integer, integer, timestamptz);
drop function if exists memory._lock_session(text, text, text, integer, integer, timestamptz,
                                             integer, bigint, integer, boolean);

-------------------------------------------------------------------------------
-- _new_session: what a session's first append sets up besides its row.
create or replace function memory._new_session(
    tenant            text,
    session           text,
    moment            timestamptz,
    out max_messages  integer,
    out max_tokens    bigint,
    out summary_every integer,
    out embed         boolean
)
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_tenant memory.tenants;
begin
    -- The tenant may be new too; its policy is read after the session row
    -- was created (memory.append's lookup ran before the tenant row did).
    insert into memory.tenants as t (tenant_id)
    values (_new_session.tenant)
    on conflict do nothing;
    select t.* into v_tenant from memory.tenants as t where t.tenant_id = _new_session.tenant;
    max_messages := v_tenant.max_messages;
    max_tokens := v_tenant.max_tokens;
    summary_every := v_tenant.summary_every_tokens;
    embed := v_tenant.embed_messages;
    if v_tenant.default_ttl is not null then
        update memory.sessions as s
           set expires_at = _new_session.moment + v_tenant.default_ttl
         where s.tenant_id = _new_session.tenant
           and s.session_id = _new_session.session;
    end if;
end;
$fn$;

comment on function memory._new_session(text, text, timestamptz) is
$$For a session memory.append has just created: create its tenant if new,
start the tenant's default TTL, and return the tenant's caps, digest cadence
and embedding choice (the session has none of its own yet).$$;

-------------------------------------------------------------------------------
-- _bind_user: a session's user, named by an append that differs from its own.
create or replace function memory._bind_user(
    tenant  text,
    session text,
    user_id text,
    owner   text
)
returns void
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if owner is null then
        -- A session started without a user takes the first one named. (Its
        -- own statement: the counting update of the session lock leaves
        -- user_id out, so the session audit trigger, which fires on updates
        -- of user_id among others, is not even looked at on an ordinary
        -- append.)
        update memory.sessions as s
           set user_id = _bind_user.user_id
         where s.tenant_id = _bind_user.tenant
           and s.session_id = _bind_user.session;
        return;
    end if;
    raise exception 'memory: session %/% belongs to another user', tenant, session
        using errcode = 'ME012', hint = 'use a new session id for this user';
end;
$fn$;

comment on function memory._bind_user(text, text, text, text) is
$$Under the session row lock, for an append that names `user_id` while the
session's user (`owner`, read under the lock) is another: a session without
a user takes it (audited), one with another user refuses the append.
memory.append and memory._append_batch call it only then. Errors:
ME012 the session belongs to another user.$$;

-------------------------------------------------------------------------------
-- _key_after_lock: the data key to seal under, re-read if it moved meanwhile.
create or replace function memory._key_after_lock(
    tenant          text,
    key_version     integer,
    data_keys       bytea[],
    encryption      text,
    out version     integer,
    out keys        bytea[],
    out mode        text
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_active integer;
begin
    version := key_version;
    keys := data_keys;
    mode := encryption;
    -- A row must be stored the way its session is marked (sessions.key_version:
    -- the key all its rows are under, null for plaintext), or memory.reencrypt
    -- would pass it by and the key it needs could be destroyed. memory.append
    -- calls this step only when the mark read under the lock differs from the
    -- key read before it: a rotation or re-encryption committed meanwhile, so
    -- the key is read again.
    select t.encryption into mode from memory.tenants as t where t.tenant_id = _key_after_lock.tenant;
    v_active := memory._active_key(tenant);
    if v_active is distinct from key_version then
        version := v_active;
        if version is not null and (keys is null or keys[version] is null) then
            keys := memory._data_keys(tenant);
        end if;
    end if;
end;
$fn$;

comment on function memory._key_after_lock(text, integer, bytea[], text) is
$$The key version, keys and encryption mode to store an append with, read
again because the session's key mark (read under its lock) differs from the
key chosen before it (see memory.reencrypt).$$;

-------------------------------------------------------------------------------
-- _give_back: undo what an append counted for messages it does not store.
drop function if exists memory._give_back(text, text, integer);
create or replace function memory._give_back(
    tenant   text,
    session  text,
    tokens   bigint,
    messages integer default 1
)
returns void
language sql
volatile security invoker
set search_path = pg_catalog, pg_temp
begin atomic
    update memory.sessions as s
       set last_seq = s.last_seq - _give_back.messages,
           message_count = s.message_count - _give_back.messages,
           token_count = s.token_count - _give_back.tokens,
           unsummarized_tokens = s.unsummarized_tokens - _give_back.tokens
     where s.tenant_id = _give_back.tenant
       and s.session_id = _give_back.session;
end;

comment on function memory._give_back(text, text, bigint, integer) is
$$Give back the seqs and every counter a session lock moved for `messages`
messages of `tokens` tokens in all that are not stored after all: an append
that turned out to repeat a stored one, or a batch of memory._append_batch
that holds a stored idempotency key and goes message by message (under the
session lock: nobody else can have seen them).$$;

-------------------------------------------------------------------------------
-- _find_call: a retried call's first attempt, if it committed.
create or replace function memory._find_call(
    tenant    text,
    session   text,
    call_key  text,
    first_seq bigint,
    next_seq  bigint,
    tokens    integer
)
returns memory.append_result
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_result memory.append_result;
begin
    -- The session's newest turns only: a retry comes seconds after its first
    -- attempt (the primary key range keeps the search to those rows).
    select m.seq, m.created_at, true
      into v_result.seq, v_result.created_at, v_result.duplicate
      from memory.messages as m
     where m.tenant_id = _find_call.tenant
       and m.session_id = _find_call.session
       and m.seq >= greatest(_find_call.first_seq, _find_call.next_seq - 1000)
       and m.seq < _find_call.next_seq
       and m.idempotency_key = _find_call.call_key;
    if v_result.seq is not null then
        perform memory._give_back(_find_call.tenant, _find_call.session, _find_call.tokens);
    end if;
    return v_result;
end;
$fn$;

comment on function memory._find_call(text, text, text, bigint, bigint, integer) is
$$Under the session lock, look for the turn a retried call's first attempt
stored with `call_key` among the session's newest 1,000 turns; when found,
give back what memory.append's session lock counted and return (seq, created_at,
true), else all nulls.$$;

-------------------------------------------------------------------------------
-- _claim_idempotency: record the key, or find that a twin got there first.
create or replace function memory._claim_idempotency(
    tenant          text,
    session         text,
    idempotency_key text,
    seq             bigint,
    request_hash    text,
    role            text,
    content         text,
    data_keys       bytea[],
    tokens          integer,
    moment          timestamptz
)
returns memory.append_result
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_result memory.append_result;
begin
    insert into memory.idempotency_keys as k
           (tenant_id, session_id, idempotency_key, seq, request_hash, created_at)
    values (_claim_idempotency.tenant, _claim_idempotency.session,
            _claim_idempotency.idempotency_key, _claim_idempotency.seq,
            _claim_idempotency.request_hash, _claim_idempotency.moment)
    on conflict do nothing;
    if found then
        return v_result;
    end if;
    -- The key exists: a concurrent twin committed while we waited for the
    -- lock, or the key was used for a different message.
    v_result := memory._find_retry(_claim_idempotency.tenant, _claim_idempotency.session,
                                   _claim_idempotency.idempotency_key, _claim_idempotency.role,
                                   _claim_idempotency.content, _claim_idempotency.data_keys);
    if v_result.seq is null then
        raise exception 'memory: idempotency key % was already used for another message',
                quote_literal(_claim_idempotency.idempotency_key)
            using errcode = 'ME011', hint = 'use a fresh key for each distinct message';
    end if;
    perform memory._give_back(_claim_idempotency.tenant, _claim_idempotency.session,
                              _claim_idempotency.tokens);
    return v_result;
end;
$fn$;

comment on function memory._claim_idempotency(text, text, text, bigint, text, text, text, bytea[], integer, timestamptz) is
$$Record an append's idempotency key and request hash (memory._request_hash,
computed before the lock) under the session lock; all nulls when it was free. When a committed twin holds it, give back the seq and counters and
return the twin's (seq, created_at, true). Errors: ME011 key reused for
another message.$$;

-------------------------------------------------------------------------------
-- _trim_to_caps: over a cap, delete the oldest messages of the session.
create or replace function memory._trim_to_caps(
    tenant         text,
    session        text,
    last_seq       bigint,
    first_seq      bigint,
    session_tokens bigint,
    tokens         integer,
    cap_messages   integer,
    cap_tokens     bigint
)
returns bigint
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_new_first bigint := _trim_to_caps.first_seq;
    v_dropped   bigint;
begin
    if cap_messages is not null and _trim_to_caps.last_seq - _trim_to_caps.first_seq + 1 > cap_messages then
        v_new_first := _trim_to_caps.last_seq - cap_messages + 1;
    end if;
    if cap_tokens is not null and session_tokens > cap_tokens then
        if _trim_to_caps.tokens > cap_tokens then
            raise exception 'memory: message has % tokens, the session cap is %',
                    _trim_to_caps.tokens, cap_tokens
                using errcode = 'ME008', hint = 'raise max_tokens or split the message';
        end if;
        select greatest(v_new_first, min(w.seq))
          into v_new_first
          from (select m.seq,
                       sum(m.tokens) over (order by m.seq desc) as from_newest
                  from memory.messages as m
                 where m.tenant_id = _trim_to_caps.tenant
                   and m.session_id = _trim_to_caps.session
                   and m.seq >= _trim_to_caps.first_seq) as w
         where w.from_newest <= cap_tokens;
    end if;
    if v_new_first <= _trim_to_caps.first_seq then
        return _trim_to_caps.first_seq;
    end if;
    with dropped as (
        delete from memory.messages as m
         where m.tenant_id = _trim_to_caps.tenant
           and m.session_id = _trim_to_caps.session
           and m.seq >= _trim_to_caps.first_seq
           and m.seq < v_new_first
        returning m.tokens
    )
    select coalesce(sum(d.tokens), 0) into v_dropped from dropped as d;
    -- Term statistics may have counted them (none in a capped session,
    -- usually: memory.append queues no counting there).
    delete from memory.term_stats as t
     where t.tenant_id = _trim_to_caps.tenant
       and t.session_id = _trim_to_caps.session;
    update memory.sessions as s
       set first_seq = v_new_first,
           message_count = s.last_seq - v_new_first + 1,
           token_count = s.token_count - v_dropped
     where s.tenant_id = _trim_to_caps.tenant
       and s.session_id = _trim_to_caps.session;
    return v_new_first;
end;
$fn$;

comment on function memory._trim_to_caps(text, text, bigint, bigint, bigint, integer, integer, bigint) is
$$Delete the session's oldest messages until max_messages and max_tokens hold
again, and move its first_seq and counters; returns the first seq kept. Errors: ME008 the new message
alone is over the token cap.$$;

-------------------------------------------------------------------------------
-- _queue_background_work: digests, embeddings and term counts, never waited for.
drop function if exists memory._queue_background_work(text, text, bigint, integer, boolean, boolean);
drop function if exists memory._queue_background_work(text, text, bigint, integer, boolean, boolean, text);
drop function if exists memory._queue_background_work(text, text, bigint, integer, boolean, boolean, text, boolean);
create or replace function memory._queue_background_work(
    tenant        text,
    session       text,
    summarize     boolean,
    embed         boolean,
    count_terms   boolean,
    trace_context text
)
returns integer
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_queued integer := 0;
begin
    if summarize then
        perform memory._enqueue(tenant, session, 'summarize', trace_context);
        v_queued := v_queued + 1;
    end if;
    if embed then
        perform memory._enqueue(tenant, session, 'embed', trace_context);
        v_queued := v_queued + 1;
    end if;
    if count_terms then
        perform memory._enqueue(tenant, session, 'count_terms', trace_context);
        v_queued := v_queued + 1;
    end if;
    return v_queued;
end;
$fn$;

comment on function memory._queue_background_work(text, text, boolean, boolean, boolean, text) is
$$Queue the background work memory.append found due, with the append's trace
context: a digest (`summarize`), an embedding (`embed`) and a term count
(memory.count_terms, `count_terms`); returns how many kinds it asked for
(memory._enqueue leaves a job that already waits or runs alone).$$;
