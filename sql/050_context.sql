-- Context assembly: the window of messages handed to a model, within a budget.

-- The signature grew the share parameters; drop the first one if present.
drop function if exists memory.context(text, text, integer, text, public.vector, text, integer);

-------------------------------------------------------------------------------
-- _tail: the newest turns that fit `budget`, skipping seqs in `taken`.
create or replace function memory._tail(
    tenant           text,
    session          text,
    budget           bigint,
    message_overhead integer,
    avg_tokens       double precision,
    taken            bigint[] default '{}'
)
returns table (
    seq     bigint,
    role    text,
    content text,
    tokens  integer,
    used    bigint
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $fn$
#variable_conflict use_column
declare
    v_page integer;
    v_fit  bigint;
    v_seen bigint;
begin
    -- First window: the rows the budget buys at this session's average size,
    -- so the (tenant_id, session_id, seq) index is walked backwards and stops
    -- early however long the session is; widen only when all of it fits.
    v_page := least(greatest(ceil(budget / greatest(avg_tokens + message_overhead, 1) * 1.25)::integer
                             + 8 + cardinality(taken), 16), 100000);
    loop
        select count(*) filter (where w.running <= budget), count(*)
          into v_fit, v_seen
          from (select sum(case when n.seq = any (taken) then 0
                                else n.tokens + message_overhead end)
                           over (order by n.seq desc) as running
                  from (select m.seq, m.tokens
                          from memory.messages as m
                         where m.tenant_id = _tail.tenant
                           and m.session_id = _tail.session
                         order by m.seq desc
                         limit v_page) as n) as w;
        exit when v_fit < v_seen or v_seen < v_page;
        v_page := v_page * 4;
    end loop;

    return query
        select t.seq, t.role,
               memory._reveal(t.content, t.sealed, t.key_version, (select memory._data_keys(_tail.tenant))),
               t.tokens, sum(t.tokens + message_overhead) over ()::bigint
          from (select m.seq, m.role, m.content, m.sealed, m.key_version, m.tokens
                  from memory.messages as m
                 where m.tenant_id = _tail.tenant
                   and m.session_id = _tail.session
                 order by m.seq desc
                 limit v_fit) as t
         where not (t.seq = any (taken));
end;
$fn$;

comment on function memory._tail(text, text, bigint, integer, double precision, bigint[]) is
$$The contiguous newest turns whose tokens (plus overhead) fit `budget`,
leaving out (and not charging for) the seqs in `taken`; `used` repeats the
tokens spent on each row.$$;

-------------------------------------------------------------------------------
-- context: the context window of a session, never over `budget` tokens.
create or replace function memory.context(
    tenant           text,
    session          text,
    budget           integer,
    query            text default null,
    query_embedding  public.vector default null,
    strategy         text default 'recent',
    message_overhead integer default 0,
    summary_share    double precision default null,
    recent_share     double precision default null
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
stable security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $fn$
#variable_conflict use_column
declare
    v_session   memory.sessions;
    v_avg       double precision;
    v_summary   bigint := 0;
    v_recall    bigint := 0;
    v_recent    bigint;
    v_used      bigint;
    v_first     bigint;
    v_recalled  bigint[] := '{}';
    v_summ_ids  bigint[] := '{}';
    v_rc_role    text[] := '{}';
    v_rc_content text[] := '{}';
    v_rc_tokens  integer[] := '{}';
    v_rc_score   double precision[] := '{}';
    r           record;
begin
    perform memory._tenant_guard(context.tenant);
    if budget is null or budget < 0 then
        raise exception 'memory: budget must be >= 0 tokens, got %', budget
            using errcode = 'ME005', hint = 'pass the tokens you can spend on history, e.g. 2000';
    end if;
    if message_overhead is null or message_overhead < 0 or message_overhead > 1000 then
        raise exception 'memory: message_overhead must be between 0 and 1000, got %', message_overhead
            using errcode = 'ME002', hint = 'chat formats add about 3 to 4 tokens per message';
    end if;
    if strategy is null or strategy not in ('recent', 'summary', 'hybrid') then
        raise exception 'memory: unknown context strategy %', coalesce(quote_literal(strategy), 'null')
            using errcode = 'ME004', hint = 'strategy must be one of: recent, summary, hybrid';
    end if;
    -- Default shares per strategy: summary 0.3 digests / 0.7 recent;
    -- hybrid 0.1 digests / 0.8 recalled / 0.1 recent.
    summary_share := coalesce(summary_share, case strategy when 'summary' then 0.3 else 0.1 end);
    recent_share := coalesce(recent_share, case strategy when 'summary' then 0.7 else 0.1 end);
    if summary_share < 0 or recent_share < 0 or summary_share + recent_share > 1 then
        raise exception 'memory: shares must be >= 0 and add up to at most 1, got summary % and recent %',
                summary_share, recent_share
            using errcode = 'ME002', hint = 'e.g. summary_share => 0.2, recent_share => 0.25';
    end if;
    v_session := memory._live_session(context.tenant, context.session);
    v_avg := v_session.token_count::double precision / greatest(v_session.message_count, 1);

    if strategy = 'recent' then
        return query
            select 'recent'::text, t.seq, t.role, t.content, t.tokens, null::double precision
              from memory._tail(context.tenant, context.session, budget, message_overhead, v_avg) as t
             order by t.seq;
        return;
    end if;

    -- The parts' shares; whatever a part leaves unused flows to the next one.
    v_summary := floor(budget * summary_share);
    v_recent := floor(budget * recent_share);
    v_recall := case when strategy = 'hybrid' then budget - v_summary - v_recent else 0 end;
    if strategy = 'summary' then
        v_recent := budget - v_summary;
    end if;

    -- Reserve the recent turns' own share first: digests and recall cover
    -- only what comes before them.
    select coalesce(min(t.seq), v_session.last_seq + 1)
      into v_first
      from memory._tail(context.tenant, context.session, v_recent, message_overhead, v_avg) as t;

    -- 1. Digests covering the turns before the recent ones.
    v_used := 0;
    for r in
        select c.summary_id, c.tokens
          from memory._summary_cover(context.tenant, context.session,
                                     least(v_session.summarized_upto, v_first - 1), v_summary::integer) as c
    loop
        v_summ_ids := v_summ_ids || r.summary_id;
        v_used := v_used + r.tokens + message_overhead;
    end loop;
    if v_used > v_summary then
        -- The per-row overhead pushed the cover over its share: drop the oldest.
        v_summ_ids := '{}';
        v_used := 0;
        for r in
            select c.summary_id, c.tokens
              from memory._summary_cover(context.tenant, context.session,
                                         least(v_session.summarized_upto, v_first - 1),
                                         v_summary::integer) as c
             order by c.seq_to desc
        loop
            exit when v_used + r.tokens + message_overhead > v_summary;
            v_summ_ids := v_summ_ids || r.summary_id;
            v_used := v_used + r.tokens + message_overhead;
        end loop;
    end if;
    v_recall := v_recall + (v_summary - v_used);
    v_summary := v_used;

    -- 2. Older turns relevant to the query, best first, as many as fit.
    if strategy = 'hybrid' and v_recall > 0
       and (coalesce(query, '') <> '' or query_embedding is not null) and v_first > 1 then
        v_used := 0;
        for r in
            select x.seq, x.role, x.content, x.tokens, x.score
              from memory.recall(context.tenant, context.session, coalesce(query, ''),
                                 query_embedding, v_first,
                                 -- twice the turns the share buys at the average size
                                 least(greatest(ceil(2 * v_recall / greatest(v_avg + message_overhead, 1))::integer,
                                                20), 500)) as x
        loop
            continue when v_used + r.tokens + message_overhead > v_recall;
            v_recalled := v_recalled || r.seq;
            v_rc_role := v_rc_role || r.role;
            v_rc_content := v_rc_content || r.content;
            v_rc_tokens := v_rc_tokens || r.tokens;
            v_rc_score := v_rc_score || r.score;
            v_used := v_used + r.tokens + message_overhead;
            exit when v_recall - v_used < message_overhead + 1;
        end loop;
        v_recent := v_recent + (v_recall - v_used);
    else
        v_recent := v_recent + v_recall;
    end if;

    -- 3. The newest turns with the recent share plus everything left over.
    return query
        select 'summary'::text, d.seq_to, 'system'::text,
               memory._reveal(d.content, d.sealed, d.key_version, (select memory._data_keys(context.tenant))),
               d.tokens, d.level::double precision
          from memory.summaries as d
         where d.tenant_id = context.tenant
           and d.session_id = context.session
           and d.summary_id = any (v_summ_ids)
         order by d.seq_from;
    return query
        select w.part, w.seq, w.role, w.content, w.tokens, w.score
          from (select 'recall'::text as part, x.seq, x.role, x.content, x.tokens, x.score
                  from unnest(v_recalled, v_rc_role, v_rc_content, v_rc_tokens, v_rc_score)
                       as x (seq, role, content, tokens, score)
                union all
                select 'recent'::text, t.seq, t.role, t.content, t.tokens, null::double precision
                  from memory._tail(context.tenant, context.session, v_recent, message_overhead,
                                    v_avg, v_recalled) as t) as w
         order by w.seq;
end;
$fn$;

comment on function memory.context(text, text, integer, text, public.vector, text, integer, double precision, double precision) is
$$Return the context window of a session as rows (part, seq, role, content,
tokens, score), whose tokens plus `message_overhead` per row never add up to
more than `budget`. Digests come first (ordered by the turns they cover),
then turns in conversation order.
- `recent`: the newest turns verbatim, oldest trimmed first (part 'recent').
- `summary`: digests covering the older turns within `summary_share`
  (default 0.3) of the budget (part 'summary', role 'system', seq = last turn
  covered, score = level), then the newest turns with the rest.
- `hybrid`: digests (`summary_share`, default 0.1), then older turns relevant
  to `query` and/or `query_embedding` by memory.recall (part 'recall', score =
  its relevance; the rest of the budget), then the newest turns
  (`recent_share`, default 0.1). A part's unused share flows to the next; the
  recent turns get whatever is left.
Errors: ME001 session missing; ME002 bad overhead or shares; ME003 deleted;
ME004 unknown strategy; ME005 budget null or negative; ME006 bad identifier;
ME007 query_embedding of the wrong dimension.
Example: select part, seq, content from memory.context('acme', 's-1', 2000, 'broken tent', strategy => 'hybrid');$$;
