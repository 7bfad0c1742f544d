-- Writing messages: memory.append (one message) and memory.append_many (a batch).

-------------------------------------------------------------------------------
-- append: store one message atomically and return its seq.
drop function if exists memory.append(text, text, text, text, integer, jsonb, public.vector, text, text);
drop function if exists memory.append(text, text, text, text, integer, jsonb, public.vector, text, text, text);
drop function if exists memory.append(text, text, text, text, integer, jsonb, public.vector, text, text, text, text, boolean);
create or replace function memory.append(
    tenant          text,
    session         text,
    role            text,
    content         text,
    tokens          integer default null,
    metadata        jsonb default '{}'::jsonb,
    embedding       public.vector default null,
    idempotency_key text default null,
    user_id         text default null,
    trace_context   text default null,
    call_key        text default null,
    call_retried    boolean default false,
    parts           jsonb default null,
    name            text default null
)
returns memory.append_result
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_now      timestamptz := now();
    v_given_key text := coalesce(append.idempotency_key, append.call_key);
    v_estimated boolean; -- the token count is pymem's estimate
    v_tenant   record;  -- the tenant's settings (memory.tenants), read once
    v_stored   record;  -- stored_content, stored_tokens, stored_metadata (the policy applied)
    v_text     text;    -- the content to store
    v_count    integer; -- its token count
    v_meta     jsonb;   -- its metadata
    v_key      record;  -- key_version, data_keys / version, keys, mode
    -- The session as its row lock leaves it (read in the statement that takes it).
    v_seq      bigint;   -- this message's seq
    v_first    bigint;   -- the session's first kept seq
    v_is_new   boolean;
    v_held     bigint;   -- the session's token total, this message included
    v_owner    text;
    v_unsumm   bigint;   -- tokens not yet covered by a digest
    v_cap_msgs integer;  -- caps and digest cadence: the session's own, else its tenant's
    v_cap_toks bigint;
    v_every    integer;
    v_embed    boolean;
    v_mark     integer;  -- the data key the session's rows are under
    v_new      record;   -- a new session's tenant settings (memory._new_session)
    v_version  integer;  -- the data key to seal under (null: plaintext)
    v_keys     bytea[];
    v_mode     text;
    v_hash     text;     -- what the idempotency key remembers of the message
    v_result   memory.append_result;
    v_kept     bigint;   -- the first seq the session keeps after trimming
    v_queued   integer;  -- background jobs queued
    v_summarize boolean;    -- time to queue a digest
    v_count_terms boolean;  -- time to count the session's terms (memory.count_terms)
    v_content  text := append.content;  -- the text, or a structured message's document
    v_tokens   integer := append.tokens;
    v_structured boolean := false;
    v_tool_parts smallint := 0;
    v_parts    record;   -- document, plain, tool_parts (memory._check_parts)
begin
    if not memory._act_for(append.tenant) then
        perform memory._tenant_guard(append.tenant);
    end if;
    if append.parts is not null or append.name is not null then
        v_parts := memory._check_parts(append.role, append.content, append.parts, append.name);
        v_structured := v_parts.document is not null;
        v_content := coalesce(v_parts.document::text, v_parts.plain);
        v_tool_parts := v_parts.tool_parts;
        v_tokens := coalesce(append.tokens, memory._parts_estimate(v_parts.document));
    end if;
    if append.call_key is not null and append.idempotency_key is not null then
        raise exception 'memory: give an idempotency_key or a call_key, not both'
            using errcode = 'ME002', hint = 'call_key is for keys a client makes for its own retries';
    end if;
    -- Every argument check, before any read or write. The common case is one
    -- inlined expression; the checks that raise run only when it fails.
    if not (memory._ident_ok(append.tenant)
            and memory._ident_ok(append.session)
            and (append.user_id is null or memory._ident_ok(append.user_id))
            and (v_given_key is null or memory._ident_ok(v_given_key))) then
        perform memory._check_ident('tenant', append.tenant);
        perform memory._check_ident('session', append.session);
        perform memory._check_ident('user_id', append.user_id) where append.user_id is not null;
        perform memory._check_ident('idempotency_key', v_given_key) where v_given_key is not null;
    end if;
    if append.role is null
       or append.role not in ('system', 'developer', 'user', 'assistant', 'tool') then
        raise exception 'memory: unknown role %', coalesce(quote_literal(append.role), 'null')
            using errcode = 'ME010',
                  hint = 'role must be one of system, developer, user, assistant, tool';
    end if;
    if v_content is null then
        raise exception 'memory: content must not be null'
            using errcode = 'ME002', hint = 'pass an empty string for a message without text';
    end if;
    if octet_length(v_content) > 4194304 then
        raise exception 'memory: content is % bytes, the limit is 4194304', octet_length(v_content)
            using errcode = 'ME008', hint = 'split the text or store it elsewhere and keep a reference';
    end if;
    -- A structured message's count is an estimate unless the caller gave one.
    v_estimated := v_tokens is null or (v_structured and append.tokens is null);
    if v_tokens is null then
        v_count := memory.estimate_tokens(v_content);
    elsif v_tokens < 0 then
        raise exception 'memory: tokens must be >= 0, got %', v_tokens
            using errcode = 'ME002', hint = 'pass the count from your tokenizer, or null to estimate';
    else
        v_count := v_tokens;
    end if;
    if append.metadata is not null
       and jsonb_typeof(append.metadata) = 'object'
       and pg_column_size(append.metadata) <= 262144 then
        v_meta := append.metadata;
    else
        v_meta := memory._check_metadata(append.metadata);
    end if;
    if append.embedding is not null then
        perform memory._check_dimension(
            'embedding', append.embedding,
            'use the embedding model the database was configured for (memory.settings)');
    end if;
    -- Every setting of the tenant this append needs, in one lookup (no row:
    -- the tenant's first append, which memory._new_session creates it for).
    select t.encryption, t.pii_policy, t.max_messages, t.max_tokens, t.summary_every_tokens,
           t.embed_messages
      into v_tenant
      from memory.tenants as t
     where t.tenant_id = append.tenant;
    -- What the tenant's personal data policy removes is never hashed, sealed,
    -- cached, audited or stored.
    v_text := v_content;
    if v_tenant.pii_policy is not null and v_tenant.pii_policy <> '{}'::jsonb then
        v_stored := memory._apply_pii_policy(v_tenant.pii_policy, v_content, v_count, v_meta,
                                             v_structured);
        v_text := v_stored.stored_content;
        v_count := v_stored.stored_tokens;
        v_meta := v_stored.stored_metadata;
    end if;
    v_mode := coalesce(v_tenant.encryption, 'none');
    if v_mode <> 'none' then
        v_key := memory._choose_data_key(append.tenant, v_mode);
        v_version := v_key.key_version;
        v_keys := v_key.data_keys;
    end if;
    -- A retry of a committed append returns the original and writes nothing.
    if append.idempotency_key is not null then
        v_hash := memory._request_hash(append.role, v_text, v_version, v_keys);
        v_result := memory._find_retry(append.tenant, append.session, append.idempotency_key,
                                       append.role, v_text, v_keys);
        if v_result.seq is not null then
            return v_result;
        end if;
    end if;
    -- Lock the session's row and count the message in: the seq is ours
    -- alone until commit (gap-free). An update, not an insert that finds
    -- the row (ON CONFLICT DO UPDATE), which locks the row with a WAL record
    -- of its own before updating it (about 120 of an append's 1,000 bytes of
    -- WAL, and 10 us).
    loop
        update memory.sessions as s
           set last_seq = s.last_seq + 1,
               message_count = s.message_count + 1,
               token_count = s.token_count + v_count,
               unsummarized_tokens = s.unsummarized_tokens + v_count,
               updated_at = v_now
         where s.tenant_id = append.tenant
           and s.session_id = append.session
           and s.deleted_at is null
           and (s.expires_at is null or s.expires_at > v_now)
        returning s.last_seq, s.first_seq, false, s.token_count, s.user_id,
                  s.unsummarized_tokens,
                  coalesce(s.max_messages, v_tenant.max_messages),
                  coalesce(s.max_tokens, v_tenant.max_tokens),
                  coalesce(s.summary_every_tokens, v_tenant.summary_every_tokens),
                  coalesce(v_tenant.embed_messages, false),
                  s.key_version
             into v_seq, v_first, v_is_new, v_held, v_owner, v_unsumm, v_cap_msgs, v_cap_toks,
                  v_every, v_embed, v_mark;
        exit when found;
        -- No live row: the session's first append creates it...
        insert into memory.sessions as s
               (tenant_id, session_id, user_id, last_seq, message_count, token_count,
                unsummarized_tokens, key_version, created_at, updated_at)
        values (append.tenant, append.session, append.user_id, 1, 1, v_count, v_count,
                v_version, v_now, v_now)
        on conflict (tenant_id, session_id) do nothing;
        if found then
            v_seq := 1;
            v_first := 1;
            v_is_new := true;  -- (memory._new_session sets the caps below)
            v_held := v_count;
            v_unsumm := v_count;
            v_owner := append.user_id;
            v_mark := v_version;
            exit;
        end if;
        -- ...else the row is deleted or expired (memory._live_session raises
        -- the matching error), or a twin created it since the update looked:
        -- the update counts this message into it.
        perform memory._live_session(append.tenant, append.session);
    end loop;
    if append.user_id is not null and v_owner is distinct from append.user_id then
        perform memory._bind_user(append.tenant, append.session, append.user_id, v_owner);
    end if;
    if v_is_new then
        v_new := memory._new_session(append.tenant, append.session, v_now);
        v_cap_msgs := v_new.max_messages;
        v_cap_toks := v_new.max_tokens;
        v_every := v_new.summary_every;
        v_embed := v_new.embed;
    end if;
    -- A retried call whose first attempt committed before its reply was lost.
    if append.call_retried and append.call_key is not null then
        v_result := memory._find_call(append.tenant, append.session, append.call_key,
                                      v_first, v_seq,
                                      v_count);
        if v_result.seq is not null then
            return v_result;
        end if;
    end if;
    if v_mark is distinct from v_version then
        v_key := memory._key_after_lock(append.tenant, v_version, v_keys, v_mode);
        if v_key.version is distinct from v_version and append.idempotency_key is not null then
            v_hash := memory._request_hash(append.role, v_text, v_key.version,
                                           v_key.keys);
        end if;
        v_version := v_key.version;
        v_keys := v_key.keys;
        v_mode := v_key.mode;
    end if;
    if append.idempotency_key is not null then
        v_result := memory._claim_idempotency(append.tenant, append.session,
                                              append.idempotency_key, v_seq, v_hash,
                                              append.role, v_text, v_keys,
                                              v_count, v_now);
        if v_result.seq is not null then
            return v_result;
        end if;
    end if;
    -- Insert the message: its text in clear, or sealed under the data key;
    -- its full-text lexemes unless the tenant's mode is `content`. (One
    -- statement, kept here: as a function of its own, passing it fourteen
    -- arguments cost about 40 us of an append's 140 us of server time.)
    insert into memory.messages
           (tenant_id, session_id, seq, role, content, sealed, key_version, search, tokens,
            tokens_estimated, metadata, embedding, idempotency_key, created_at, structured,
            tool_parts)
    values (append.tenant, append.session, v_seq, append.role,
            case when v_version is null then v_text end,
            case when v_version is not null
                 then memory._seal(v_text, v_keys[v_version]) end,
            v_version,
            case when v_mode <> 'content'
                 then memory._search_vector(v_text, v_structured) end,
            v_count, v_estimated, v_meta,
            append.embedding, coalesce(append.idempotency_key, append.call_key), v_now,
            v_structured, v_tool_parts);
    if v_cap_msgs is not null or v_cap_toks is not null then
        v_kept := memory._trim_to_caps(append.tenant, append.session, v_seq,
                                       v_first, v_held,
                                       v_count, v_cap_msgs,
                                       v_cap_toks);
    end if;
    -- Background work is asked for where it falls due, not on every append
    -- after: a digest each time the unsummarized tokens pass a multiple of the
    -- session's cadence (a job that waits or runs then is left alone, and
    -- memory.complete_job queues it again if it finished short; the next
    -- multiple asks again should that check have run before this commit), an
    -- embedding for each message the tenant wants embedded that came without
    -- one, and term statistics for recall every 250 turns of a long session
    -- whose turns stay (a capped session drops them as it trims) and are
    -- indexed.
    v_summarize := v_every is not null and v_unsumm / v_every > (v_unsumm - v_count) / v_every;
    v_embed := v_embed and append.embedding is null;
    v_count_terms := v_seq >= 750 and v_seq % 250 = 0 and v_cap_msgs is null
                     and v_cap_toks is null and v_mode <> 'content';
    if v_summarize or v_embed or v_count_terms then
        v_queued := memory._queue_background_work(append.tenant, append.session, v_summarize,
                                                  v_embed, v_count_terms, append.trace_context);
    end if;
    return row(v_seq, v_now, false)::memory.append_result;
end;
$fn$;

comment on function memory.append(text, text, text, text, integer, jsonb, public.vector, text, text, text, text, boolean, jsonb, text) is
$$Store one message and return (seq, created_at, duplicate). Atomic, one round
trip: its argument checks, then the steps of 040_append_steps.sql (_apply_pii_policy,
_choose_data_key, _find_retry, the session row lock (_bind_user when it
names another user, _new_session for a new session), _key_after_lock,
_claim_idempotency, then the insert, _trim_to_caps, _queue_background_work): creates the session (and tenant) on first use, takes the next `seq` under
the session row lock (gap-free 1, 2, 3, ...), and trims the oldest messages when
the session's or tenant's max_messages / max_tokens cap is passed.
`tokens` null stores an estimate (memory.estimate_tokens) marked as such.
Retrying with the same `idempotency_key` returns the original seq with
duplicate = true and writes nothing. `trace_context`, a W3C traceparent, is
kept on the background jobs this append queues, so that the worker's span
continues the caller's trace. `call_key` is a key a client makes for one
call so that its own retries cannot store twice (pymem's clients do, for
every append without an idempotency_key): it is kept on the message but not
remembered in memory.idempotency_keys, and with `call_retried` the session's
newest 1,000 turns are searched for it first (a turn found is returned with
duplicate = true).
A message of an agent transcript is given as `parts` (content null), a JSON
array of parts, with an optional sender `name`:
  {"type": "text", "text": "..."}
  {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}
  {"type": "tool_result", "call_id": "call_1", "content": "12 C", "is_error": false}
  {"type": "image" | "file", "url": "https://..." or "file_id": "file-1"} (also "detail" / "filename")
  {"type": "refusal", "text": "..."}
Tool calls belong to assistant turns; tool turns hold tool results only.
Parts are checked (memory._check_parts), the personal data policy applies to
their strings, full-text search indexes their text, tool names and argument
values, and `tokens` null stores a documented estimate. One text part
without a name is stored as plain text. memory.history and memory.context
return them in their `parts` and `name` columns.
Errors: ME002 bad argument; ME003 session deleted; ME006 bad identifier;
ME007 embedding dimension; ME008 content too large for the limit or token cap;
ME019 personal data that the tenant's policy blocks (memory.configure_pii);
ME009 metadata not an object; ME010 unknown role; ME011 idempotency key reused
for another message; ME012 session belongs to another user; ME020 session expired;
ME022 a bad part (memory._check_parts).
Example: select * from memory.append('acme', 's-1', 'user', 'Hello!', 2);
select * from memory.append('acme', 's-1', 'assistant', null, parts =>
  '[{"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": {"city": "Oslo"}}]');
select * from memory.append('acme', 's-1', 'tool', null, parts =>
  '[{"type": "tool_result", "call_id": "call_1", "content": "12 C"}]');$$;

-------------------------------------------------------------------------------
-- _append_batch: a batch of messages, counted in and stored at once.
drop function if exists memory._append_plain_batch(text, text, memory.turn_input[], text, text,
                                                   text[]);
create or replace function memory._append_batch(
    tenant        text,
    session       text,
    messages      memory.turn_input[],
    user_id       text,
    trace_context text,
    call_keys     text[]
)
returns bigint
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_now       timestamptz := now();
    v_n         integer := cardinality(_append_batch.messages);
    v_tenant    record;   -- the tenant's settings (memory.tenants)
    v_policy    jsonb;    -- its personal data policy, if any
    v_mode      text;     -- its encryption mode
    v_key       record;   -- key_version, data_keys (memory._choose_data_key)
    v_version   integer;  -- the data key to seal under (null: plaintext)
    v_keys      bytea[];
    -- What memory.append would store of each message, in batch order.
    v_ok        boolean;  -- every message passes memory.append's checks
    v_texts     text[];
    v_counts    integer[];
    v_estimated boolean[];
    v_metas     jsonb[];
    v_structured boolean[];
    v_tool_parts smallint[];
    v_total     bigint;   -- the batch's tokens
    v_keyed     integer;  -- messages with an idempotency key
    v_claimed   integer;  -- keys claimed for the batch
    v_unembedded boolean; -- a message came without an embedding
    v_seq       bigint;   -- the session's last seq, the batch included
    v_first     bigint;   -- the session's first kept seq
    v_held      bigint;   -- the session's tokens, the batch included
    v_cap_msgs  integer;  -- caps: the session's own, else its tenant's
    v_cap_toks  bigint;
    v_is_new    boolean;
    v_owner     text;
    v_unsumm    bigint;   -- tokens not yet covered by a digest, the batch included
    v_every     integer;
    v_embed     boolean;
    v_new       record;   -- a new session's tenant settings (memory._new_session)
    v_mark      bigint;   -- the newest multiple of 250 turns up to v_seq
    v_summarize boolean;
    v_count_terms boolean;
begin
    -- Null, before anything is written, for memory.append_many to go
    -- message by message: a first append of the tenant, a session whose
    -- turns are under another data key than the tenant's active one (or in
    -- clear while the tenant seals, and the reverse), any message
    -- memory.append would refuse (a missing master key too), an
    -- idempotency key given twice or already stored (a retry, which
    -- memory.append answers before the session lock). Message by message,
    -- memory.append then raises the error of the first bad message, in
    -- batch order.
    select t.encryption, t.pii_policy, t.max_messages, t.max_tokens, t.summary_every_tokens,
           t.embed_messages
      into v_tenant
      from memory.tenants as t
     where t.tenant_id = _append_batch.tenant;
    if not found
       or not (memory._ident_ok(_append_batch.tenant)
               and memory._ident_ok(_append_batch.session)
               and (_append_batch.user_id is null or memory._ident_ok(_append_batch.user_id))) then
        return null;
    end if;
    v_policy := nullif(v_tenant.pii_policy, '{}'::jsonb);
    v_mode := coalesce(v_tenant.encryption, 'none');
    begin
        -- Each message as memory.append takes it before the session lock:
        -- its parts checked into a document (memory._check_parts), its
        -- checks, its token count, the personal data policy applied.
        select bool_and(coalesce(
                   (x.idempotency_key is null or memory._ident_ok(x.idempotency_key))
                   -- A call key is for messages without an idempotency key.
                   and (x.call_key is null
                        or (x.idempotency_key is null and memory._ident_ok(x.call_key)))
                   and x.role in ('system', 'developer', 'user', 'assistant', 'tool')
                   and x.content is not null
                   and octet_length(x.content) <= 4194304
                   and (x.tokens is null or x.tokens >= 0)
                   and (x.metadata is null
                        or (jsonb_typeof(x.metadata) = 'object'
                            and pg_column_size(x.metadata) <= 262144))
                   and (x.embedding is null
                        or public.vector_dims(x.embedding)
                           = (select s.embedding_dim from memory.settings as s)),
                   false))
                   and count(x.idempotency_key) = count(distinct x.idempotency_key),
               count(x.idempotency_key),
               array_agg(coalesce(q.stored_content, x.content) order by x.i),
               array_agg(coalesce(q.stored_tokens, x.count) order by x.i),
               -- An estimate: no count given (for a structured message, none
               -- by the caller).
               array_agg(x.tokens is null or (x.structured and x.given_tokens is null)
                         order by x.i),
               array_agg(coalesce(q.stored_metadata, x.metadata, '{}'::jsonb) order by x.i),
               array_agg(x.structured order by x.i),
               array_agg(x.tool_parts order by x.i),
               sum(coalesce(q.stored_tokens, x.count)),
               bool_or(x.embedding is null)
          into v_ok, v_keyed, v_texts, v_counts, v_estimated, v_metas, v_structured, v_tool_parts,
               v_total, v_unembedded
          from (select y.*, coalesce(y.tokens, memory.estimate_tokens(y.content)) as count
                  from (select m.i, m.role, m.idempotency_key, m.call_key, m.metadata,
                               m.embedding,
                               m.tokens as given_tokens,
                               p.document is not null as structured,
                               coalesce(p.tool_parts, 0::smallint) as tool_parts,
                               case when p.shaped then coalesce(p.document::text, p.plain)
                                    else m.content end as content,
                               case when p.shaped
                                    then coalesce(m.tokens, memory._parts_estimate(p.document))
                                    else m.tokens end as tokens
                          from unnest(_append_batch.messages, _append_batch.call_keys)
                               with ordinality
                               as m (role, content, tokens, metadata, embedding, idempotency_key,
                                     parts, name, call_key, i)
                          left join lateral (
                                 select c.document, c.plain, c.tool_parts, true as shaped
                                   from memory._check_parts(m.role, m.content, m.parts, m.name)
                                        as c
                                  where m.parts is not null or m.name is not null
                                 offset 0) as p on true) as y  -- called only for such messages
                offset 0) as x  -- each count estimated once, however often used
          left join lateral (
                 select a.stored_content, a.stored_tokens, a.stored_metadata
                   from memory._apply_pii_policy(v_policy, x.content, x.count,
                                                 coalesce(x.metadata, '{}'::jsonb),
                                                 x.structured) as a
                  where v_policy is not null and x.content is not null
                 offset 0) as q on true;  -- called only under a policy
        if v_ok and v_keyed > 0 then
            v_ok := not memory._holds_stored_key(_append_batch.tenant, _append_batch.session,
                                                 _append_batch.messages);
        end if;
        if v_ok and v_mode <> 'none' then
            -- The data keys are unwrapped once for the whole batch (and not
            -- for a batch that goes message by message anyway).
            v_key := memory._choose_data_key(_append_batch.tenant, v_mode);
            v_version := v_key.key_version;
            v_keys := v_key.data_keys;
        end if;
    exception when others then
        return null;  -- message by message, memory.append raises it in order
    end;
    if not v_ok then
        return null;
    end if;
    -- The session row lock, counting the whole batch in: its seqs are
    -- v_seq - v_n + 1 .. v_seq, gap-free. A session whose turns are under
    -- another key than the one chosen (a rotation or re-encryption under
    -- way) is locked but not counted: memory.append, message by message,
    -- reads the key again under the lock (memory._key_after_lock).
    insert into memory.sessions as s
           (tenant_id, session_id, user_id, last_seq, message_count, token_count,
            unsummarized_tokens, key_version, created_at, updated_at)
    values (_append_batch.tenant, _append_batch.session, _append_batch.user_id,
            v_n, v_n, v_total, v_total, v_version, v_now, v_now)
    on conflict (tenant_id, session_id) do update
       set last_seq = s.last_seq + v_n,
           message_count = s.message_count + v_n,
           token_count = s.token_count + excluded.token_count,
           unsummarized_tokens = s.unsummarized_tokens + excluded.unsummarized_tokens,
           updated_at = excluded.updated_at
     where s.deleted_at is null
       and (s.expires_at is null or s.expires_at > v_now)
       and s.key_version is not distinct from v_version
    returning s.last_seq, s.first_seq, (s.xmax = 0), s.token_count, s.user_id,
              s.unsummarized_tokens,
              coalesce(s.max_messages, v_tenant.max_messages),
              coalesce(s.max_tokens, v_tenant.max_tokens),
              coalesce(s.summary_every_tokens, v_tenant.summary_every_tokens),
              coalesce(v_tenant.embed_messages, false)
         into v_seq, v_first, v_is_new, v_held, v_owner, v_unsumm, v_cap_msgs, v_cap_toks,
              v_every, v_embed;
    if not found then
        -- Deleted or expired: _live_session raises the matching error.
        perform memory._live_session(_append_batch.tenant, _append_batch.session);
        return null;
    end if;
    if v_keyed > 0 then
        -- Each key remembers its message, as memory._claim_idempotency does.
        -- Under the session lock only a twin that committed before it was
        -- taken can hold one: then nothing of the batch stays claimed or
        -- counted, and message by message memory.append finds the twin.
        insert into memory.idempotency_keys
               (tenant_id, session_id, idempotency_key, seq, request_hash, created_at)
        select _append_batch.tenant, _append_batch.session, m.idempotency_key,
               v_seq - v_n + m.i, memory._request_hash(m.role, m.content, v_version, v_keys),
               v_now
          from unnest(_append_batch.messages, v_texts) with ordinality
               as m (role, given_content, tokens, metadata, embedding, idempotency_key, parts,
                     name, content, i)
         where m.idempotency_key is not null
        on conflict do nothing;
        get diagnostics v_claimed = row_count;
        if v_claimed < v_keyed then
            delete from memory.idempotency_keys as k
             where k.tenant_id = _append_batch.tenant
               and k.session_id = _append_batch.session
               and k.seq > v_seq - v_n;  -- the twin's seq is older
            if v_is_new then  -- (not in practice: a twin would have made the session)
                perform memory._new_session(_append_batch.tenant, _append_batch.session, v_now);
            end if;
            perform memory._give_back(_append_batch.tenant, _append_batch.session, v_total, v_n);
            return null;
        end if;
    end if;
    if _append_batch.user_id is not null and v_owner is distinct from _append_batch.user_id then
        perform memory._bind_user(_append_batch.tenant, _append_batch.session,
                                  _append_batch.user_id, v_owner);
    end if;
    if v_is_new then
        v_new := memory._new_session(_append_batch.tenant, _append_batch.session, v_now);
        v_cap_msgs := v_new.max_messages;
        v_cap_toks := v_new.max_tokens;
        v_every := v_new.summary_every;
        v_embed := v_new.embed;
    end if;
    -- Each text in clear, or sealed under the data key; its full-text
    -- lexemes unless the tenant's mode is `content` (as memory.append).
    insert into memory.messages
           (tenant_id, session_id, seq, role, content, sealed, key_version, search, tokens,
            tokens_estimated, metadata, embedding, idempotency_key, created_at, structured,
            tool_parts)
    select _append_batch.tenant, _append_batch.session, v_seq - v_n + m.i, m.role,
           case when v_version is null then m.content end,
           case when v_version is not null then memory._seal(m.content, v_keys[v_version]) end,
           v_version,
           case when v_mode <> 'content' then memory._search_vector(m.content, m.structured) end,
           m.count, m.estimated, m.metadata, m.embedding,
           coalesce(m.idempotency_key, m.call_key), v_now, m.structured, m.tool_parts
      -- Side by side (a subscript would walk an array from its start for
      -- each message).
      from unnest(_append_batch.messages, _append_batch.call_keys, v_texts, v_counts,
                  v_estimated, v_metas, v_structured, v_tool_parts) with ordinality
           as m (role, given_content, given_tokens, given_metadata, embedding, idempotency_key,
                 parts, name, call_key, content, count, estimated, metadata, structured,
                 tool_parts, i);
    if v_cap_msgs is not null or v_cap_toks is not null then
        -- Trimmed once to the caps, to what trimming after each message
        -- leaves; a message over the token cap alone fails the batch (the
        -- first such, as message by message).
        perform memory._trim_to_caps(
            _append_batch.tenant, _append_batch.session, v_seq, v_first, v_held,
            coalesce((select c.count
                        from unnest(v_counts) with ordinality as c (count, i)
                       where c.count > v_cap_toks
                       order by c.i
                       limit 1), 0),
            v_cap_msgs, v_cap_toks);
    end if;
    -- The background work the batch's appends would each have asked for,
    -- asked for once: a digest when the unsummarized tokens pass a multiple
    -- of the cadence, an embedding when a message came without one, term
    -- statistics when a seq from 750 on is a multiple of 250 in a session
    -- without caps whose turns are indexed.
    v_summarize := v_every is not null and v_unsumm / v_every > (v_unsumm - v_total) / v_every;
    v_embed := v_embed and v_unembedded;
    v_mark := v_seq - v_seq % 250;
    v_count_terms := v_mark >= 750 and v_mark > v_seq - v_n and v_cap_msgs is null
                     and v_cap_toks is null and v_mode <> 'content';
    if v_summarize or v_embed or v_count_terms then
        perform memory._queue_background_work(_append_batch.tenant, _append_batch.session,
                                              v_summarize, v_embed, v_count_terms,
                                              _append_batch.trace_context);
    end if;
    return v_seq;
end;
$fn$;

comment on function memory._append_batch(text, text, memory.turn_input[], text, text, text[]) is
$$Store a batch of memory.append_many in one insert under one session row
lock, with what memory.append would store message by message: parts checked
into documents (memory._check_parts), token counts and estimates, the
tenant's personal data policy applied, the texts sealed under the tenant's
data key (unwrapped once for the batch) when it encrypts, idempotency keys
remembered with their request hashes, the session's user bound, a new
session set up, and, over the session's or tenant's caps, one trim
(memory._trim_to_caps) to what trimming after each message leaves; the
background work those appends would ask for, asked once. Returns the
session's last seq (the batch holds the `cardinality(messages)` seqs up to
it), or null, having written nothing, for memory.append_many to go message
by message: a tenant's first append, a session whose turns are under
another data key than the tenant's active one (a rotation or re-encryption
under way), a message memory.append would refuse (which it then refuses
with its own error, in batch order), an idempotency key given twice in the
batch or already stored for the session (memory._holds_stored_key: a retry,
which memory.append answers with the stored seq), also when a twin stores it
while the batch waits for the session lock (what the lock counted is given
back, memory._give_back). Errors after the lock as memory.append's:
ME003/ME020 session deleted or expired, ME012 another user's, ME008 the first
message over the token cap.$$;

-------------------------------------------------------------------------------
-- append_many: store a batch of messages in order, in one transaction.
drop function if exists memory.append_many(text, text, memory.message_input[], text);
drop function if exists memory.append_many(text, text, memory.message_input[], text, text);
create or replace function memory.append_many(
    tenant        text,
    session       text,
    messages      memory.turn_input[],
    user_id       text default null,
    trace_context text default null,
    call_keys     text[] default null,
    call_retried  boolean default false
)
returns setof memory.append_result
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_message memory.turn_input;
    v_at      integer := 0;
    v_last    bigint;  -- the batch's last seq, when stored at once
begin
    if not memory._act_for(append_many.tenant) then
        perform memory._tenant_guard(append_many.tenant);
    end if;
    if messages is null or cardinality(messages) = 0 then
        raise exception 'memory: messages must be a non-empty array'
            using errcode = 'ME002', hint = 'pass at least one memory.turn_input';
    end if;
    if cardinality(messages) > 10000 then
        raise exception 'memory: a batch holds at most 10000 messages, got %', cardinality(messages)
            using errcode = 'ME002', hint = 'split the batch';
    end if;
    if call_keys is not null and cardinality(call_keys) <> cardinality(messages) then
        raise exception 'memory: % call keys for % messages', cardinality(call_keys),
                        cardinality(messages)
            using errcode = 'ME002', hint = 'give one call key per message (null where none)';
    end if;
    -- One message alone is cheaper through memory.append (about 160 us
    -- against 250 us in memory._append_batch, which sets up a batch).
    if not append_many.call_retried and cardinality(append_many.messages) > 1 then
        v_last := memory._append_batch(append_many.tenant, append_many.session,
                                       append_many.messages, append_many.user_id,
                                       append_many.trace_context, append_many.call_keys);
        if v_last is not null then
            return query
                select v_last - cardinality(append_many.messages) + i, now(), false
                  from generate_series(1, cardinality(append_many.messages)) as i
                 order by i;
            return;
        end if;
    end if;
    foreach v_message in array messages loop
        v_at := v_at + 1;
        return next memory.append(
            append_many.tenant, append_many.session, v_message.role, v_message.content,
            v_message.tokens, v_message.metadata, v_message.embedding,
            v_message.idempotency_key, append_many.user_id, append_many.trace_context,
            append_many.call_keys[v_at], append_many.call_retried, v_message.parts,
            v_message.name);
    end loop;
end;
$fn$;

comment on function memory.append_many(text, text, memory.turn_input[], text, text, text[], boolean) is
$$Store a batch of messages in array order, all or nothing, and return one
(seq, created_at, duplicate) row per message. Same rules and errors as
memory.append, plus ME002 for an empty batch, one over 10000 messages, or
`call_keys` (memory.append's call_key, one per message) of another length.
A batch of two or more messages (not a retry) is stored in one insert under
one session lock, and trimmed to the caps once (memory._append_batch),
several times cheaper per message, idempotency keys and sealed turns
included; one message alone, a batch that repeats a stored idempotency key,
a retry, one holding a message memory.append refuses, a tenant's first
append and a session under another data key than the tenant's active one (a
key rotation under way) go through memory.append message by message.
memory.turn_input is memory.message_input with memory.append's `parts` and
`name` last.
Example: select * from memory.append_many('acme', 's-1', array[
  row('user', 'Hi', 1, '{}', null, null, null, null)::memory.turn_input,
  row('assistant', null, 9, '{}', null, null,
      '[{"type": "tool_call", "id": "call_1", "name": "f", "arguments": {}}]', null)::memory.turn_input]);$$;

-------------------------------------------------------------------------------
-- append_many of plain messages (memory.message_input, without parts).
create or replace function memory.append_many(
    tenant        text,
    session       text,
    messages      memory.message_input[],
    user_id       text default null,
    trace_context text default null,
    call_keys     text[] default null,
    call_retried  boolean default false
)
returns setof memory.append_result
language sql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
    select r.*
      from memory.append_many(
               tenant, session,
               array(select row(m.role, m.content, m.tokens, m.metadata, m.embedding,
                                m.idempotency_key, null, null)::memory.turn_input
                       from unnest(messages) with ordinality as m
                      order by m.ordinality),
               user_id, trace_context, call_keys, call_retried) as r
$fn$;

comment on function memory.append_many(text, text, memory.message_input[], text, text, text[], boolean) is
$$memory.append_many for batches of plain messages (memory.message_input: role,
content, tokens, metadata, embedding, idempotency_key), as before parts
existed; the same rules, errors and results.
Example: select * from memory.append_many('acme', 's-1', array[
  row('user', 'Hi', 1, '{}', null, null)::memory.message_input,
  row('assistant', 'Hello!', 2, '{}', null, null)::memory.message_input]);$$;
