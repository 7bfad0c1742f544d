-- Session lifecycle: listing, inspection, TTL, caps, soft delete, restore, purge.

-------------------------------------------------------------------------------
-- session_info: one session's counters and settings.
create or replace function memory.session_info(
    tenant  text,
    session text
)
returns table (
    tenant_id       text,
    session_id      text,
    user_id         text,
    last_seq        bigint,
    first_seq       bigint,
    message_count   bigint,
    token_count     bigint,
    summarized_upto bigint,
    max_messages    integer,
    max_tokens      bigint,
    metadata        jsonb,
    created_at      timestamptz,
    updated_at      timestamptz,
    expires_at      timestamptz,
    deleted_at      timestamptz
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(session_info.tenant);
    perform memory._check_ident('tenant', session_info.tenant);
    perform memory._check_ident('session', session_info.session);
    return query
        select s.tenant_id, s.session_id, s.user_id, s.last_seq, s.first_seq, s.message_count,
               s.token_count, s.summarized_upto, s.max_messages, s.max_tokens, s.metadata,
               s.created_at, s.updated_at, s.expires_at, s.deleted_at
          from memory.sessions as s
         where s.tenant_id = session_info.tenant
           and s.session_id = session_info.session;
    if not found then
        raise exception 'memory: session %/% not found', tenant, session
            using errcode = 'ME001', hint = 'sessions are created by the first memory.append';
    end if;
end;
$fn$;

comment on function memory.session_info(text, text) is
$$Return one row describing a session, deleted or not: counters (last_seq,
message_count, token_count), caps, metadata and timestamps.
Errors: ME001 missing; ME006 bad identifier.
Example: select * from memory.session_info('acme', 's-1');$$;

-------------------------------------------------------------------------------
-- list_sessions: a tenant's sessions, optionally one user's, a page at a time.
create or replace function memory.list_sessions(
    tenant          text,
    owner           text default null,
    include_deleted boolean default false,
    after_session   text default null,
    page_size       integer default 100
)
returns table (
    tenant_id       text,
    session_id      text,
    user_id         text,
    last_seq        bigint,
    first_seq       bigint,
    message_count   bigint,
    token_count     bigint,
    summarized_upto bigint,
    max_messages    integer,
    max_tokens      bigint,
    metadata        jsonb,
    created_at      timestamptz,
    updated_at      timestamptz,
    expires_at      timestamptz,
    deleted_at      timestamptz
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
begin
    perform memory._tenant_guard(list_sessions.tenant);
    perform memory._check_ident('tenant', list_sessions.tenant);
    if list_sessions.owner is not null then
        perform memory._check_ident('owner', list_sessions.owner);
    end if;
    if page_size is null or page_size < 1 or page_size > 10000 then
        raise exception 'memory: page_size must be between 1 and 10000, got %', page_size
            using errcode = 'ME002', hint = 'page with after_session';
    end if;
    return query
        select s.tenant_id, s.session_id, s.user_id, s.last_seq, s.first_seq, s.message_count,
               s.token_count, s.summarized_upto, s.max_messages, s.max_tokens, s.metadata,
               s.created_at, s.updated_at, s.expires_at, s.deleted_at
          from memory.sessions as s
         where s.tenant_id = list_sessions.tenant
           and (list_sessions.owner is null or s.user_id = list_sessions.owner)
           and (list_sessions.include_deleted or s.deleted_at is null)
           and (list_sessions.after_session is null
                or s.session_id collate "C" > list_sessions.after_session collate "C")
         order by s.session_id collate "C"
         limit list_sessions.page_size;
end;
$fn$;

comment on function memory.list_sessions(text, text, boolean, text, integer) is
$$Return a tenant's sessions ordered by session_id (bytewise, collation "C"), at most `page_size`
(1..10000), those after `after_session` when given (pass the last id of one
page to get the next), only those of user `owner` when given, soft-deleted ones only with
`include_deleted`. Errors: ME002 bad page_size; ME006 bad identifier.
Example: select session_id, message_count from memory.list_sessions('acme', owner => 'u-7');$$;

-------------------------------------------------------------------------------
-- extend_session: push a live session's expiry further out.
create or replace function memory.extend_session(
    tenant  text,
    session text,
    ttl     interval
)
returns timestamptz
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_expires timestamptz;
begin
    perform memory._tenant_guard(extend_session.tenant);
    if ttl is null or ttl <= interval '0' then
        raise exception 'memory: ttl must be positive, got %', ttl
            using errcode = 'ME002', hint = 'pass an interval such as ''30 days''';
    end if;
    perform memory._live_session(extend_session.tenant, extend_session.session);
    -- The new expiry is computed here, under the row lock, and written as a
    -- value: timestamptz + interval depends on the time zone (a stable
    -- operator), which Citus does not evaluate over a column in an UPDATE.
    select greatest(s.expires_at, now()) + extend_session.ttl
      into v_expires
      from memory.sessions as s
     where s.tenant_id = extend_session.tenant
       and s.session_id = extend_session.session
       for update;
    update memory.sessions as s
       set expires_at = v_expires
     where s.tenant_id = extend_session.tenant
       and s.session_id = extend_session.session;
    return v_expires;
end;
$fn$;

comment on function memory.extend_session(text, text, interval) is
$$Push a live session's expiry `ttl` beyond max(now, current expiry); returns
the new expiry. Expired sessions are removed by memory.purge_expired.
Errors: ME001 session missing; ME002 ttl <= 0; ME003 deleted; ME006 bad identifier.
Example: select memory.extend_session('acme', 's-1', '30 days');$$;

-------------------------------------------------------------------------------
-- configure_session: set a session's caps, digest cadence and metadata.
drop function if exists memory.configure_session(text, text, integer, bigint, jsonb);
create or replace function memory.configure_session(
    tenant               text,
    session              text,
    max_messages         integer default null,
    max_tokens           bigint default null,
    metadata             jsonb default null,
    summary_every_tokens integer default null
)
returns void
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
begin
    perform memory._tenant_guard(configure_session.tenant);
    if configure_session.max_messages is not null and configure_session.max_messages < 1 then
        raise exception 'memory: max_messages must be >= 1, got %', configure_session.max_messages
            using errcode = 'ME002', hint = 'pass null to keep the tenant default';
    end if;
    if configure_session.max_tokens is not null and configure_session.max_tokens < 1 then
        raise exception 'memory: max_tokens must be >= 1, got %', configure_session.max_tokens
            using errcode = 'ME002', hint = 'pass null to keep the tenant default';
    end if;
    if configure_session.summary_every_tokens is not null
       and configure_session.summary_every_tokens < 50 then
        raise exception 'memory: summary_every_tokens must be >= 50, got %',
                configure_session.summary_every_tokens
            using errcode = 'ME002', hint = 'pass null to keep the tenant''s cadence';
    end if;
    perform memory._check_metadata(configure_session.metadata);
    perform memory._live_session(configure_session.tenant, configure_session.session);

    update memory.sessions as s
       set max_messages = configure_session.max_messages,
           max_tokens = configure_session.max_tokens,
           metadata = coalesce(configure_session.metadata, s.metadata),
           summary_every_tokens = configure_session.summary_every_tokens,
           updated_at = now()
     where s.tenant_id = configure_session.tenant
       and s.session_id = configure_session.session;
end;
$fn$;

comment on function memory.configure_session(text, text, integer, bigint, jsonb, integer) is
$$Set a session's caps and digest cadence (null: the tenant's applies) and,
when given, replace its metadata. Caps take effect at the next append, which
trims the oldest messages; the cadence is the number of unsummarized tokens
that queue a digest. Errors: ME001 missing; ME002 cap < 1 or cadence < 50; ME003 deleted;
ME006 bad identifier; ME009 metadata not an object.
Example: select memory.configure_session('acme', 's-1', max_messages => 500);$$;

-------------------------------------------------------------------------------
-- configure_tenant: a tenant's default caps and TTL for its sessions.
drop function if exists memory.configure_tenant(text, integer, bigint, interval);
create or replace function memory.configure_tenant(
    tenant       text,
    max_messages integer default null,
    max_tokens   bigint default null,
    default_ttl  interval default null,
    retention    interval default null
)
returns void
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
begin
    perform memory._tenant_guard(configure_tenant.tenant);
    perform memory._check_ident('tenant', configure_tenant.tenant);
    if configure_tenant.max_messages is not null and configure_tenant.max_messages < 1
       or configure_tenant.max_tokens is not null and configure_tenant.max_tokens < 1
       or configure_tenant.default_ttl is not null and configure_tenant.default_ttl <= interval '0' then
        raise exception 'memory: caps must be >= 1 and default_ttl positive'
            using errcode = 'ME002', hint = 'pass null for no cap or no expiry';
    end if;
    if configure_tenant.retention is not null
       and (configure_tenant.retention < interval '1 hour'
            or configure_tenant.retention > interval '100 years') then
        raise exception 'memory: retention must be between 1 hour and 100 years, got %',
                configure_tenant.retention
            using errcode = 'ME002', hint = 'pass null to keep messages until removed otherwise';
    end if;
    insert into memory.tenants as t (tenant_id, max_messages, max_tokens, default_ttl, retention)
    values (configure_tenant.tenant, configure_tenant.max_messages, configure_tenant.max_tokens,
            configure_tenant.default_ttl, configure_tenant.retention)
    on conflict (tenant_id) do update
       set max_messages = excluded.max_messages,
           max_tokens = excluded.max_tokens,
           default_ttl = excluded.default_ttl,
           retention = excluded.retention;
end;
$fn$;

comment on function memory.configure_tenant(text, integer, bigint, interval, interval) is
$$Create or update a tenant's policy: default caps for its sessions (null: no
cap), a default TTL given to each new session (null: sessions never expire),
and a retention (null: keep messages): memory.maintain removes turns older
than it, with their digests and idempotency keys.
Errors: ME002 cap < 1, ttl <= 0, retention outside 1 hour..100 years; ME006 bad identifier.
Example: select memory.configure_tenant('acme', max_messages => 10000, default_ttl => '90 days');$$;

-------------------------------------------------------------------------------
-- delete_session: soft delete; the messages stay until purged.
create or replace function memory.delete_session(
    tenant  text,
    session text
)
returns timestamptz
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_deleted timestamptz;
    v_now     timestamptz := now(); -- a value, not now() in the statement (Citus)
begin
    perform memory._tenant_guard(delete_session.tenant);
    perform memory._check_ident('tenant', delete_session.tenant);
    perform memory._check_ident('session', delete_session.session);
    update memory.sessions as s
       set deleted_at = coalesce(s.deleted_at, v_now)
     where s.tenant_id = delete_session.tenant
       and s.session_id = delete_session.session
    returning s.deleted_at into v_deleted;
    if not found then
        raise exception 'memory: session %/% not found', tenant, session
            using errcode = 'ME001', hint = 'sessions are created by the first memory.append';
    end if;
    return v_deleted;
end;
$fn$;

comment on function memory.delete_session(text, text) is
$$Soft-delete a session: it disappears from reads, listings and appends but
its messages stay until memory.purge_session (or memory.restore_session brings
it back). Deleting twice keeps the first deletion time, which it returns.
Errors: ME001 missing; ME006 bad identifier.
Example: select memory.delete_session('acme', 's-1');$$;

-------------------------------------------------------------------------------
-- restore_session: undo a soft delete.
create or replace function memory.restore_session(
    tenant  text,
    session text
)
returns void
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(restore_session.tenant);
    perform memory._check_ident('tenant', restore_session.tenant);
    perform memory._check_ident('session', restore_session.session);
    update memory.sessions as s
       set deleted_at = null
     where s.tenant_id = restore_session.tenant
       and s.session_id = restore_session.session;
    if not found then
        raise exception 'memory: session %/% not found', tenant, session
            using errcode = 'ME001', hint = 'a purged session cannot be restored';
    end if;
end;
$fn$;

comment on function memory.restore_session(text, text) is
$$Bring back a soft-deleted session with all its messages. Restoring a live
session does nothing. Errors: ME001 missing (or purged); ME006 bad identifier.
Example: select memory.restore_session('acme', 's-1');$$;

-------------------------------------------------------------------------------
-- purge_session: remove a session and everything stored for it.
create or replace function memory.purge_session(
    tenant  text,
    session text
)
returns bigint
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_messages bigint;
begin
    perform memory._tenant_guard(purge_session.tenant);
    perform memory._check_ident('tenant', purge_session.tenant);
    perform memory._check_ident('session', purge_session.session);
    -- Lock the session first so a concurrent append waits, then fails.
    perform 1
      from memory.sessions as s
     where s.tenant_id = purge_session.tenant
       and s.session_id = purge_session.session
       for update;
    if not found then
        raise exception 'memory: session %/% not found', tenant, session
            using errcode = 'ME001', hint = 'it may have been purged already';
    end if;
    delete from memory.messages as m
     where m.tenant_id = purge_session.tenant
       and m.session_id = purge_session.session;
    get diagnostics v_messages = row_count;
    delete from memory.idempotency_keys as k
     where k.tenant_id = purge_session.tenant
       and k.session_id = purge_session.session;
    delete from memory.summaries as d
     where d.tenant_id = purge_session.tenant
       and d.session_id = purge_session.session;
    delete from memory.sessions as s
     where s.tenant_id = purge_session.tenant
       and s.session_id = purge_session.session;
    return v_messages;
end;
$fn$;

comment on function memory.purge_session(text, text) is
$$Hard-delete a session, deleted or not: its messages in every partition, its
idempotency keys, summaries and the session row. Returns the number of
messages removed. A later append with the same id starts a new session at
seq 1. Errors: ME001 missing; ME006 bad identifier.
Example: select memory.purge_session('acme', 's-1');$$;

-------------------------------------------------------------------------------
-- purge_expired: remove sessions whose TTL has passed.
create or replace function memory.purge_expired(
    as_of     timestamptz default now(),
    max_count integer default 1000
)
returns integer
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_session record;
    v_count   integer := 0;
    v_tenant  text := current_setting('pymem.tenant', true);
begin
    if as_of is null or max_count is null or max_count < 1 then
        raise exception 'memory: as_of must be given and max_count >= 1'
            using errcode = 'ME002', hint = 'call it repeatedly until it returns 0';
    end if;
    -- Expired sessions are found with a plain read across tenants, then
    -- locked one at a time within their tenant (skipping those a writer
    -- holds): a lock that spans tenants is one Citus cannot take.
    for v_session in
        select s.tenant_id, s.session_id
          from memory.sessions as s
         where s.expires_at <= purge_expired.as_of
         order by s.expires_at
         limit purge_expired.max_count
    loop
        perform
           from memory.sessions as s
          where s.tenant_id = v_session.tenant_id
            and s.session_id = v_session.session_id
            and s.expires_at <= purge_expired.as_of
            for update skip locked;
        continue when not found;
        -- purge_session acts for one tenant: this transaction takes each in turn.
        perform set_config('pymem.tenant', v_session.tenant_id, true);
        perform memory.purge_session(v_session.tenant_id, v_session.session_id);
        v_count := v_count + 1;
    end loop;
    perform set_config('pymem.tenant', coalesce(v_tenant, ''), true);
    return v_count;
end;
$fn$;

comment on function memory.purge_expired(timestamptz, integer) is
$$Purge up to `max_count` sessions whose expires_at is at or before `as_of`,
skipping sessions locked by a writer; returns how many were purged. Run it
from a scheduler (pymem maintain, pg_cron) until it returns 0.
Errors: ME002 bad arguments.
Example: select memory.purge_expired();$$;

-------------------------------------------------------------------------------
-- pop_message: remove a session's newest message and return it.
create or replace function memory.pop_message(
    tenant  text,
    session text
)
returns table (
    seq              bigint,
    role             text,
    content          text,
    tokens           integer,
    tokens_estimated boolean,
    metadata         jsonb,
    created_at       timestamptz,
    parts            jsonb,
    name             text
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_session memory.sessions;
    v_gone    memory.messages;
begin
    perform memory._tenant_guard(pop_message.tenant);
    perform memory._live_session(pop_message.tenant, pop_message.session);
    -- Under the row lock appends take, so the newest message stays the newest.
    select s.* into v_session
      from memory.sessions as s
     where s.tenant_id = pop_message.tenant
       and s.session_id = pop_message.session
       for update;
    if v_session.message_count = 0 then
        return;
    end if;
    delete from memory.messages as m
     where m.tenant_id = pop_message.tenant
       and m.session_id = pop_message.session
       and m.seq = v_session.last_seq
    returning m.* into v_gone;
    delete from memory.idempotency_keys as k
     where k.tenant_id = pop_message.tenant
       and k.session_id = pop_message.session
       and k.seq = v_gone.seq;
    -- Digests that covered it no longer describe the conversation.
    delete from memory.summaries as d
     where d.tenant_id = pop_message.tenant
       and d.session_id = pop_message.session
       and d.seq_to >= v_gone.seq;
    -- Nor do term statistics that counted it.
    delete from memory.term_stats as t
     where t.tenant_id = pop_message.tenant
       and t.session_id = pop_message.session
       and t.last_seq >= v_gone.seq;
    -- The seq is given back: the next append takes it, and seqs stay gap-free.
    update memory.sessions as s
       set last_seq = s.last_seq - 1,
           message_count = s.message_count - 1,
           token_count = s.token_count - v_gone.tokens,
           summarized_upto = least(s.summarized_upto, v_gone.seq - 1),
           updated_at = now()
     where s.tenant_id = pop_message.tenant
       and s.session_id = pop_message.session;
    return query
        select v_gone.seq, v_gone.role, u.content, v_gone.tokens, v_gone.tokens_estimated,
               v_gone.metadata, v_gone.created_at, u.parts, u.name
          from memory._turn(memory._reveal(v_gone.content, v_gone.sealed, v_gone.key_version,
                                           (select memory._data_keys(pop_message.tenant))),
                            v_gone.structured) as u;
end;
$fn$;

comment on function memory.pop_message(text, text) is
$$Remove the newest message of a live session and return it (columns as
memory.history); no row when the session holds none. Its seq is given back
(the next append takes it: seqs stay gap-free), its idempotency key is
forgotten, and digests covering it are removed. For agent frameworks that
undo a turn (the OpenAI Agents SDK's Session.pop_item).
Errors: ME001 session missing; ME003 deleted; ME006 bad identifier; ME020 expired.
Example: select seq, role, content from memory.pop_message('acme', 's-1');$$;
