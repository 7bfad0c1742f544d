-- Context assembly: the window of messages handed to a model, within a budget.

-------------------------------------------------------------------------------
-- context: the context window of a session, never over `budget` tokens.
create or replace function memory.context(
    tenant           text,
    session          text,
    budget           integer,
    query            text default null,
    query_embedding  public.vector default null,
    strategy         text default 'recent',
    message_overhead integer default 0
)
returns table (
    part    text,
    seq     bigint,
    role    text,
    content text,
    tokens  integer,
    score   double precision
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $fn$
declare
    v_session memory.sessions;
    v_page    integer;
    v_fit     bigint;
    v_seen    bigint;
begin
    if budget is null or budget < 0 then
        raise exception 'memory: budget must be >= 0 tokens, got %', budget
            using errcode = 'ME005', hint = 'pass the tokens you can spend on history, e.g. 2000';
    end if;
    if message_overhead is null or message_overhead < 0 or message_overhead > 1000 then
        raise exception 'memory: message_overhead must be between 0 and 1000, got %', message_overhead
            using errcode = 'ME002', hint = 'chat formats add about 3 to 4 tokens per message';
    end if;
    if strategy is null or strategy not in ('recent') then
        raise exception 'memory: unknown context strategy %', coalesce(quote_literal(strategy), 'null')
            using errcode = 'ME004', hint = 'strategy must be one of: recent';
    end if;
    v_session := memory._live_session(context.tenant, context.session);
    -- First window: the rows the budget buys at this session's average size.
    v_page := least(greatest(ceil(budget::numeric
                    / greatest(v_session.token_count::numeric / greatest(v_session.message_count, 1)
                               + message_overhead, 1) * 1.25)::integer + 8, 16), 100000);

    -- recent: newest first until the next message would not fit; the result
    -- is a contiguous tail of the conversation (oldest turns trimmed first).
    -- Measure the tail on a LIMITed window of the newest rows, so the planner
    -- walks the (tenant_id, session_id, seq) index backwards and stops early
    -- however long the session is; widen the window only when all of it fits.
    loop
        select count(*) filter (where w.running <= budget), count(*)
          into v_fit, v_seen
          from (select sum(n.tokens + message_overhead) over (order by n.seq desc) as running
                  from (select m.seq, m.tokens
                          from memory.messages as m
                         where m.tenant_id = context.tenant
                           and m.session_id = context.session
                         order by m.seq desc
                         limit v_page) as n) as w;
        exit when v_fit < v_seen or v_seen < v_page;
        v_page := v_page * 4;
    end loop;

    return query
        select 'recent'::text, t.seq, t.role, t.content, t.tokens, null::double precision
          from (select m.seq, m.role, m.content, m.tokens
                  from memory.messages as m
                 where m.tenant_id = context.tenant
                   and m.session_id = context.session
                 order by m.seq desc
                 limit v_fit) as t
         order by t.seq;
end;
$fn$;

comment on function memory.context(text, text, integer, text, public.vector, text, integer) is
$$Return the context window of a session as rows (part, seq, role, content,
tokens, score) in conversation order, whose tokens plus `message_overhead` per
row never add up to more than `budget`.
Strategy `recent`: the newest messages verbatim, trimming the oldest first
(part = 'recent', score null). `query` and `query_embedding` are accepted for
strategies that rank older turns by relevance.
Errors: ME001 session missing; ME002 bad message_overhead; ME003 deleted;
ME004 unknown strategy; ME005 budget null or negative; ME006 bad identifier.
Example: select role, content from memory.context('acme', 's-1', 2000);$$;
