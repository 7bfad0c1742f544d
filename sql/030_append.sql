-- Writing messages: memory.append (one message) and memory.append_many (a batch).

-------------------------------------------------------------------------------
-- append: store one message atomically and return its seq.
create or replace function memory.append(
    tenant          text,
    session         text,
    role            text,
    content         text,
    tokens          integer default null,
    metadata        jsonb default '{}'::jsonb,
    embedding       public.vector default null,
    idempotency_key text default null,
    user_id         text default null
)
returns memory.append_result
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_tokens       integer := append.tokens;
    v_estimated    boolean := false;
    v_metadata     jsonb;
    v_hash         text;
    v_seq          bigint;
    v_first        bigint;
    v_created      boolean;
    v_max_messages integer;
    v_max_tokens   bigint;
    v_token_count  bigint;
    v_new_first    bigint;
    v_dropped      bigint;
    v_now          timestamptz := now();
    v_result       memory.append_result;
    v_dim          integer;
    v_owner        text;
    v_unsummarized bigint;
    v_summary_every integer;
    v_tenant       memory.tenants;
    v_embed        boolean;
    v_encryption   text;
    v_version      integer;
    v_keys         bytea[];
    v_pii          jsonb;
    v_kinds        text[];
    v_content      text := append.content;
    v_active       integer;
    v_marker       integer;
begin
    perform memory._tenant_guard(append.tenant);
    -- Validate everything before the first write. The common case is one
    -- inlined expression; the checks that raise run only when it fails.
    if not (memory._ident_ok(append.tenant)
            and memory._ident_ok(append.session)
            and (append.user_id is null or memory._ident_ok(append.user_id))
            and (append.idempotency_key is null or memory._ident_ok(append.idempotency_key))) then
        perform memory._check_ident('tenant', append.tenant);
        perform memory._check_ident('session', append.session);
        perform memory._check_ident('user_id', append.user_id) where append.user_id is not null;
        perform memory._check_ident('idempotency_key', append.idempotency_key)
          where append.idempotency_key is not null;
    end if;
    if append.role is null
       or append.role not in ('system', 'developer', 'user', 'assistant', 'tool') then
        raise exception 'memory: unknown role %', coalesce(quote_literal(append.role), 'null')
            using errcode = 'ME010',
                  hint = 'role must be one of system, developer, user, assistant, tool';
    end if;
    if append.content is null then
        raise exception 'memory: content must not be null'
            using errcode = 'ME002', hint = 'pass an empty string for a message without text';
    end if;
    if octet_length(append.content) > 4194304 then
        raise exception 'memory: content is % bytes, the limit is 4194304', octet_length(append.content)
            using errcode = 'ME008', hint = 'split the text or store it elsewhere and keep a reference';
    end if;
    if v_tokens is null then
        v_tokens := memory.estimate_tokens(append.content);
        v_estimated := true;
    elsif v_tokens < 0 then
        raise exception 'memory: tokens must be >= 0, got %', v_tokens
            using errcode = 'ME002', hint = 'pass the count from your tokenizer, or null to estimate';
    end if;
    if append.metadata is not null
       and jsonb_typeof(append.metadata) = 'object'
       and pg_column_size(append.metadata) <= 262144 then
        v_metadata := append.metadata;
    else
        v_metadata := memory._check_metadata(append.metadata);
    end if;
    if append.embedding is not null then
        select s.embedding_dim into v_dim from memory.settings as s;
        if public.vector_dims(append.embedding) <> v_dim then
            raise exception 'memory: embedding has % dimensions, this database stores %',
                    public.vector_dims(append.embedding), v_dim
                using errcode = 'ME007',
                      hint = 'use the embedding model the database was configured for (memory.settings)';
        end if;
    end if;

    -- The tenant's personal data policy applies first: what it removes is
    -- never hashed, sealed, cached, audited or stored.
    select t.encryption, t.pii_policy into v_encryption, v_pii
      from memory.tenants as t
     where t.tenant_id = append.tenant;
    if v_pii is not null and v_pii <> '{}'::jsonb then
        select p.content, p.kinds into v_content, v_kinds from memory._apply_pii(v_pii, append.content) as p;
        if cardinality(v_kinds) > 0 then
            -- Merged with kinds a client-side classifier already listed.
            v_metadata := v_metadata || jsonb_build_object('pii', (
                select jsonb_agg(distinct u.kind order by u.kind)
                  from (select jsonb_array_elements_text(
                                   case when jsonb_typeof(v_metadata -> 'pii') = 'array'
                                        then v_metadata -> 'pii' else '[]'::jsonb end)
                        union
                        select unnest(v_kinds)) as u (kind)));
        end if;
        if v_content is distinct from append.content then
            -- Placeholders and masks may tokenize differently: never under-count.
            v_tokens := greatest(v_tokens, memory.estimate_tokens(v_content));
        end if;
    end if;

    -- An encrypting tenant seals the text under its active data key.
    if v_encryption is not null and v_encryption <> 'none' then
        v_version := memory._active_key(append.tenant);
        v_keys := memory._data_keys(append.tenant);
    end if;

    -- A retry of a committed append returns the original and writes nothing.
    if append.idempotency_key is not null then
        v_hash := memory._request_hash(append.role, v_content, v_version, v_keys);
        select k.seq, k.created_at, true
          into v_result.seq, v_result.created_at, v_result.duplicate
          from memory.idempotency_keys as k
         where k.tenant_id = append.tenant
           and k.session_id = append.session
           and k.idempotency_key = append.idempotency_key
           and memory._request_matches(k.request_hash, append.role, v_content, v_keys);
        if found then
            return v_result;
        end if;
    end if;

    -- Create the session or take its row lock; the next seq is ours alone
    -- until commit.
    insert into memory.sessions as s
           (tenant_id, session_id, user_id, last_seq, message_count, token_count,
            unsummarized_tokens, key_version, created_at, updated_at)
    values (append.tenant, append.session, append.user_id, 1, 1, v_tokens, v_tokens, v_version,
            v_now, v_now)
    on conflict (tenant_id, session_id) do update
       set last_seq = s.last_seq + 1,
           message_count = s.message_count + 1,
           token_count = s.token_count + excluded.token_count,
           unsummarized_tokens = s.unsummarized_tokens + excluded.unsummarized_tokens,
           user_id = coalesce(s.user_id, excluded.user_id),
           updated_at = excluded.updated_at
     where s.deleted_at is null
       and (s.expires_at is null or s.expires_at > v_now)
    returning s.last_seq, s.first_seq, (s.xmax = 0), s.token_count, s.user_id, s.unsummarized_tokens,
              -- The session's own policy, else its tenant's (read in this statement).
              coalesce(s.max_messages, (select t.max_messages from memory.tenants as t
                                         where t.tenant_id = s.tenant_id)),
              coalesce(s.max_tokens, (select t.max_tokens from memory.tenants as t
                                       where t.tenant_id = s.tenant_id)),
              coalesce(s.summary_every_tokens, (select t.summary_every_tokens from memory.tenants as t
                                                 where t.tenant_id = s.tenant_id)),
              (select t.embed_messages from memory.tenants as t where t.tenant_id = s.tenant_id),
              -- The data key the session's rows are under, as of the lock.
              s.key_version
         into v_seq, v_first, v_created, v_token_count, v_owner, v_unsummarized,
              v_max_messages, v_max_tokens, v_summary_every, v_embed, v_marker;

    if not found then
        -- Deleted or expired: _live_session raises the matching error.
        perform memory._live_session(append.tenant, append.session);
    end if;

    if append.user_id is not null and v_owner is distinct from append.user_id then
        raise exception 'memory: session %/% belongs to another user', append.tenant, append.session
            using errcode = 'ME012', hint = 'use a new session id for this user';
    end if;

    -- A row must be stored the way its session is marked (sessions.key_version:
    -- the key all its rows are under, null for plaintext), or memory.reencrypt
    -- would pass it by and the key it needs could be destroyed. The mark is
    -- read from the locked row (a new session is marked with the key read
    -- above); when it differs, a rotation or re-encryption committed
    -- meanwhile: read the key again.
    if v_marker is distinct from v_version then
        select t.encryption into v_encryption from memory.tenants as t
         where t.tenant_id = append.tenant;
        v_active := memory._active_key(append.tenant);
        if v_active is distinct from v_version then
            v_version := v_active;
            if v_version is not null and (v_keys is null or v_keys[v_version] is null) then
                v_keys := memory._data_keys(append.tenant);
            end if;
            if append.idempotency_key is not null then
                v_hash := memory._request_hash(append.role, v_content, v_version, v_keys);
            end if;
        end if;
    end if;

    if append.idempotency_key is not null then
        insert into memory.idempotency_keys as k
               (tenant_id, session_id, idempotency_key, seq, request_hash, created_at)
        values (append.tenant, append.session, append.idempotency_key, v_seq, v_hash, v_now)
        on conflict do nothing;
        if not found then
            -- The key exists: a concurrent twin committed while we waited for
            -- the lock, or the key was used for a different message.
            select k.seq, k.created_at, true
              into v_result.seq, v_result.created_at, v_result.duplicate
              from memory.idempotency_keys as k
             where k.tenant_id = append.tenant
               and k.session_id = append.session
               and k.idempotency_key = append.idempotency_key
               and memory._request_matches(k.request_hash, append.role, v_content, v_keys);
            if not found then
                raise exception 'memory: idempotency key % was already used for another message',
                        quote_literal(append.idempotency_key)
                    using errcode = 'ME011', hint = 'use a fresh key for each distinct message';
            end if;
            -- Give back the seq we took; nobody else can have seen it.
            update memory.sessions as s
               set last_seq = s.last_seq - 1,
                   message_count = s.message_count - 1,
                   token_count = s.token_count - v_tokens,
                   unsummarized_tokens = s.unsummarized_tokens - v_tokens
             where s.tenant_id = append.tenant
               and s.session_id = append.session;
            return v_result;
        end if;
    end if;

    if v_created then
        -- A new session: make sure its tenant exists, and take the tenant's
        -- policy now (the statement above ran before the tenant row did).
        insert into memory.tenants as t (tenant_id)
        values (append.tenant)
        on conflict do nothing;
        select t.* into v_tenant from memory.tenants as t where t.tenant_id = append.tenant;
        v_max_messages := v_tenant.max_messages;
        v_max_tokens := v_tenant.max_tokens;
        v_summary_every := v_tenant.summary_every_tokens;
        v_embed := v_tenant.embed_messages;
        if v_tenant.default_ttl is not null then
            update memory.sessions as s
               set expires_at = v_now + v_tenant.default_ttl
             where s.tenant_id = append.tenant
               and s.session_id = append.session;
        end if;
    end if;

    insert into memory.messages
           (tenant_id, session_id, seq, role, content, sealed, key_version, search, tokens,
            tokens_estimated, metadata, embedding, idempotency_key, created_at)
    values (append.tenant, append.session, v_seq, append.role,
            case when v_version is null then v_content end,
            case when v_version is not null then memory._seal(v_content, v_keys[v_version]) end,
            v_version,
            case when v_encryption = 'content' then null
                 else to_tsvector('english'::regconfig, v_content) end,
            v_tokens, v_estimated, v_metadata, append.embedding, append.idempotency_key, v_now);

    -- Over a cap: trim the oldest messages first.
    v_new_first := v_first;
    if v_max_messages is not null and v_seq - v_first + 1 > v_max_messages then
        v_new_first := v_seq - v_max_messages + 1;
    end if;
    if v_max_tokens is not null and v_token_count > v_max_tokens then
        if v_tokens > v_max_tokens then
            raise exception 'memory: message has % tokens, the session cap is %', v_tokens, v_max_tokens
                using errcode = 'ME008', hint = 'raise max_tokens or split the message';
        end if;
        select greatest(v_new_first, min(w.seq))
          into v_new_first
          from (select m.seq,
                       sum(m.tokens) over (order by m.seq desc) as from_newest
                  from memory.messages as m
                 where m.tenant_id = append.tenant
                   and m.session_id = append.session
                   and m.seq >= v_first) as w
         where w.from_newest <= v_max_tokens;
    end if;
    if v_new_first > v_first then
        with dropped as (
            delete from memory.messages as m
             where m.tenant_id = append.tenant
               and m.session_id = append.session
               and m.seq >= v_first
               and m.seq < v_new_first
            returning m.tokens
        )
        select coalesce(sum(d.tokens), 0) into v_dropped from dropped as d;
        update memory.sessions as s
           set first_seq = v_new_first,
               message_count = s.last_seq - v_new_first + 1,
               token_count = s.token_count - v_dropped
         where s.tenant_id = append.tenant
           and s.session_id = append.session;
    end if;

    -- Background work, never waited for: a digest once enough tokens are
    -- unsummarized, embeddings when the tenant wants them.
    if v_unsummarized >= coalesce(v_summary_every, 2147483647) then
        perform memory._enqueue(append.tenant, append.session, 'summarize');
    end if;
    if v_embed and append.embedding is null then
        perform memory._enqueue(append.tenant, append.session, 'embed');
    end if;

    v_result := row(v_seq, v_now, false)::memory.append_result;
    return v_result;
end;
$fn$;

comment on function memory.append(text, text, text, text, integer, jsonb, public.vector, text, text) is
$$Store one message and return (seq, created_at, duplicate). Atomic, one round
trip: creates the session (and tenant) on first use, takes the next `seq` under
the session row lock (gap-free 1, 2, 3, ...), and trims the oldest messages when
the session's or tenant's max_messages / max_tokens cap is passed.
`tokens` null stores an estimate (memory.estimate_tokens) marked as such.
Retrying with the same `idempotency_key` returns the original seq with
duplicate = true and writes nothing.
Errors: ME002 bad argument; ME003 session deleted; ME006 bad identifier;
ME007 embedding dimension; ME008 content too large for the limit or token cap;
ME019 personal data that the tenant's policy blocks (memory.configure_pii);
ME009 metadata not an object; ME010 unknown role; ME011 idempotency key reused
for another message; ME012 session belongs to another user; ME020 session expired.
Example: select * from memory.append('acme', 's-1', 'user', 'Hello!', 2);$$;

-------------------------------------------------------------------------------
-- append_many: store a batch of messages in order, in one transaction.
create or replace function memory.append_many(
    tenant   text,
    session  text,
    messages memory.message_input[],
    user_id  text default null
)
returns setof memory.append_result
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_message memory.message_input;
begin
    perform memory._tenant_guard(append_many.tenant);
    if messages is null or cardinality(messages) = 0 then
        raise exception 'memory: messages must be a non-empty array'
            using errcode = 'ME002', hint = 'pass at least one memory.message_input';
    end if;
    if cardinality(messages) > 10000 then
        raise exception 'memory: a batch holds at most 10000 messages, got %', cardinality(messages)
            using errcode = 'ME002', hint = 'split the batch';
    end if;
    foreach v_message in array messages loop
        return next memory.append(
            append_many.tenant, append_many.session, v_message.role, v_message.content,
            v_message.tokens, v_message.metadata, v_message.embedding,
            v_message.idempotency_key, append_many.user_id);
    end loop;
end;
$fn$;

comment on function memory.append_many(text, text, memory.message_input[], text) is
$$Store a batch of messages in array order, all or nothing, and return one
(seq, created_at, duplicate) row per message. Same rules and errors as
memory.append, plus ME002 for an empty batch or one over 10000 messages.
Example: select * from memory.append_many('acme', 's-1', array[
  row('user', 'Hi', 1, '{}', null, null)::memory.message_input,
  row('assistant', 'Hello!', 2, '{}', null, null)::memory.message_input]);$$;
