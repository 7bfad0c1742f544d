-- Reading stored messages back: stable pagination and the newest tail.

-------------------------------------------------------------------------------
-- history: one page of a session's messages in conversation order.
-- (The parts and name columns came with pymem_0013: the old shape is dropped.)
drop function if exists memory.history(text, text, bigint, integer);
create or replace function memory.history(
    tenant    text,
    session   text,
    after_seq bigint default 0,
    page_size integer default 100
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
stable security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $fn$
begin
    if not memory._act_for(history.tenant) then
        perform memory._tenant_guard(history.tenant);
    end if;
    if after_seq is null or after_seq < 0 then
        raise exception 'memory: after_seq must be >= 0, got %', after_seq
            using errcode = 'ME002', hint = 'pass 0 for the first page, then the last seq you saw';
    end if;
    if page_size is null or page_size < 1 or page_size > 10000 then
        raise exception 'memory: page_size must be between 1 and 10000, got %', page_size
            using errcode = 'ME002', hint = 'page through long sessions with after_seq';
    end if;
    perform memory._live_session(history.tenant, history.session);

    return query
        select t.seq, t.role, u.content, t.tokens, t.tokens_estimated, t.metadata, t.created_at,
               u.parts, u.name
          from (select m.seq, m.role, m.tokens, m.tokens_estimated, m.metadata, m.created_at,
                       m.structured,
                       memory._reveal(m.content, m.sealed, m.key_version,
                                      (select memory._data_keys(history.tenant))) as stored
                  from memory.messages as m
                 where m.tenant_id = history.tenant
                   and m.session_id = history.session
                   and m.seq > history.after_seq
                 order by m.seq
                 limit history.page_size) as t
               -- Given a plain column, memory._turn is inlined (a sub-select
               -- in its arguments would make it a call per row).
               cross join lateral memory._turn(t.stored, t.structured) as u
         order by t.seq;
end;
$fn$;

comment on function memory.history(text, text, bigint, integer) is
$$Return up to `page_size` (1..10000) messages with seq > `after_seq`, in
conversation order. Pages are stable: pass the last seq of one page as the
`after_seq` of the next; messages appended meanwhile only ever come later.
`content` is a message's text; a message appended with parts also has
`parts` (the JSON array, as memory.append takes it) and its `name`; plain
text has null in both.
Errors: ME001 session missing; ME002 bad after_seq/page_size; ME003 deleted;
ME006 bad identifier.
Example: select seq, role, content from memory.history('acme', 's-1', 0, 50);$$;

-------------------------------------------------------------------------------
-- last_messages: the newest `count` messages, in conversation order.
drop function if exists memory.last_messages(text, text, integer);
create or replace function memory.last_messages(
    tenant  text,
    session text,
    count   integer default 50
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
stable security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $fn$
begin
    if not memory._act_for(last_messages.tenant) then
        perform memory._tenant_guard(last_messages.tenant);
    end if;
    if last_messages.count is null or last_messages.count < 1 or last_messages.count > 10000 then
        raise exception 'memory: count must be between 1 and 10000, got %', last_messages.count
            using errcode = 'ME002', hint = 'use memory.history to page through more';
    end if;
    perform memory._live_session(last_messages.tenant, last_messages.session);

    return query
        select t.seq, t.role, u.content, t.tokens, t.tokens_estimated, t.metadata, t.created_at,
               u.parts, u.name
          from (select m.seq, m.role, m.tokens, m.tokens_estimated, m.metadata, m.created_at,
                       m.structured,
                       memory._reveal(m.content, m.sealed, m.key_version,
                                      (select memory._data_keys(last_messages.tenant))) as stored
                  from memory.messages as m
                 where m.tenant_id = last_messages.tenant
                   and m.session_id = last_messages.session
                 order by m.seq desc
                 limit last_messages.count) as t
               cross join lateral memory._turn(t.stored, t.structured) as u
         order by t.seq;
end;
$fn$;

comment on function memory.last_messages(text, text, integer) is
$$Return the newest `count` (1..10000) messages of a session in conversation
order. Errors: as memory.history.
Example: select seq, role, content from memory.last_messages('acme', 's-1', 10);$$;
