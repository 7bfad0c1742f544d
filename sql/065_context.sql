-- Context assembly: the window of messages handed to a model, within a budget.

-- The signature grew the share parameters; drop the first one if present.
drop function if exists memory.context(text, text, integer, text, public.vector, text, integer);

-------------------------------------------------------------------------------
-- _shortened: a tool result cut to `keep` tokens, with a visible marker.
drop function if exists memory._shortened(text, jsonb, integer, integer);
create or replace function memory._shortened(
    turn_parts jsonb,
    tokens     integer,
    keep       integer
)
returns jsonb
language sql
immutable parallel safe security invoker
as $fn$
    -- The same share of each result's characters as of the turn's tokens.
    select jsonb_build_object(
               'content', string_agg(r.cut, '' order by r.ordinality),
               'parts', jsonb_agg(case when r.value ->> 'type' = 'tool_result'
                                       then jsonb_set(r.value, '{content}', to_jsonb(r.cut))
                                       else r.value end order by r.ordinality))
      from (select p.value, p.ordinality,
                   left(p.value ->> 'content',
                        (char_length(p.value ->> 'content')::bigint * keep / tokens)::integer)
                   || format(E'\n[pymem: %s of this result''s %s tokens left out]',
                             tokens - keep, tokens) as cut
              from jsonb_array_elements(turn_parts) with ordinality as p) as r
$fn$;

comment on function memory._shortened(jsonb, integer, integer) is
$$A tool result turn (its parts) of `tokens` tokens shortened to about
`keep`: each result's content cut to the same share of its characters,
followed by a marker that says how many tokens were left out; returns
{"content": the new text, "parts": the new parts}. Its cost in a window is `keep` plus 16 tokens for the marker
(memory._tail).$$;

-------------------------------------------------------------------------------
-- _window_cost: what a turn costs in a window, shortened when it may be.
create or replace function memory._window_cost(
    tokens      integer,
    role        text,
    tool_parts  smallint,
    seq         bigint,
    newest_call bigint,
    shorten     integer
)
returns integer
language sql
immutable parallel safe security invoker
return case when shorten is not null and role = 'tool' and tool_parts > 0
                 and tokens > shorten + 16 and seq < coalesce(newest_call, 0)
            then shorten + 16  -- the marker's tokens, estimated
            else tokens end;

comment on function memory._window_cost(integer, text, smallint, bigint, bigint, integer) is
$$The tokens a turn costs in a window: `shorten` plus 16 for the marker when
it is a tool result turn of more than that, older than the newest tool call
(`newest_call`) and `shorten` is given; else its own tokens.$$;

-------------------------------------------------------------------------------
-- _tail: the newest turns that fit `budget`, skipping seqs in `taken`.
drop function if exists memory._tail(text, text, bigint, integer, double precision, bigint[]);
create or replace function memory._tail(
    tenant           text,
    session          text,
    budget           bigint,
    message_overhead integer,
    avg_tokens       double precision,
    taken            bigint[] default '{}',
    shorten          integer default null
)
returns table (
    seq     bigint,
    role    text,
    content text,
    tokens  integer,
    used    bigint,
    parts   jsonb,
    name    text
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $fn$
#variable_conflict use_column
declare
    v_page  integer;
    v_fit   bigint;
    v_seen  bigint;
    v_tools bigint;  -- turns with tool calls or results among those that fit
begin
    -- First window: the rows the budget buys at this session's average size,
    -- so the (tenant_id, session_id, seq) index is walked backwards and stops
    -- early however long the session is; widen only when all of it fits.
    v_page := least(greatest(ceil(budget / greatest(avg_tokens + message_overhead, 1) * 1.25)::integer
                             + 8 + cardinality(taken), 16), 100000);
    loop
        select count(*) filter (where w.running <= budget), count(*),
               count(*) filter (where w.running <= budget and w.tool_parts > 0)
          into v_fit, v_seen, v_tools
          from (select n.tool_parts,
                       sum(case when n.seq = any (taken) then 0
                                else n.cost + message_overhead end)
                           over (order by n.seq desc) as running
                  from (select m.seq, m.tool_parts,
                               case when shorten is null then m.tokens
                                    else memory._window_cost(
                                             m.tokens, m.role, m.tool_parts, m.seq,
                                             max(m.seq) filter (where m.role = 'assistant'
                                                                and m.tool_parts > 0) over (),
                                             shorten) end as cost
                          from (select x.seq, x.tokens, x.role, x.tool_parts
                                  from memory.messages as x
                                 where x.tenant_id = _tail.tenant
                                   and x.session_id = _tail.session
                                 order by x.seq desc
                                 limit v_page) as m) as n) as w;
        exit when v_fit < v_seen or v_seen < v_page;
        v_page := v_page * 4;
    end loop;

    if v_tools = 0 then
        -- No tool calls or results among them: every turn stands alone.
        return query
            select t.seq, t.role, u.content, t.tokens,
                   sum(t.tokens + message_overhead) over ()::bigint, u.parts, u.name
              from (select m.seq, m.role, m.tokens, m.structured,
                           memory._reveal(m.content, m.sealed, m.key_version,
                                          (select memory._data_keys(_tail.tenant))) as stored
                      from memory.messages as m
                     where m.tenant_id = _tail.tenant
                       and m.session_id = _tail.session
                     order by m.seq desc
                     limit v_fit) as t
                   -- Given a plain column, memory._turn is inlined (see memory.history).
                   cross join lateral memory._turn(t.stored, t.structured) as u
             where not (t.seq = any (taken));
        return;
    end if;

    -- A model API takes a tool call only with all of its results, and a
    -- result only after its call. A group is an assistant turn with tool
    -- calls (with the call turns right after it: one per call when stored
    -- item by item) and the result turns that follow; a group whose calls
    -- (`asked`) are not all answered is left out whole, and so are results
    -- before the first call of the window. Other turns are groups of their
    -- own (a plain-text tool turn too). Leaving out only frees budget.
    return query
        with newest as (
            -- One turn more than fit, read only to see where its group starts.
            select n.*, row_number() over (order by n.seq desc) > v_fit as outside,
                   memory._window_cost(n.tokens, n.role, n.tool_parts, n.seq,
                                       max(n.seq) filter (where n.is_call) over (), shorten)
                       as cost
              from (select m.seq, m.role, m.content, m.sealed, m.key_version, m.tokens,
                           m.structured, m.tool_parts,
                           m.role = 'tool' and m.tool_parts > 0 as is_result,
                           m.role = 'assistant' and m.tool_parts > 0 as is_call
                      from memory.messages as m
                     where m.tenant_id = _tail.tenant
                       and m.session_id = _tail.session
                     order by m.seq desc
                     limit v_fit + 1) as n
        ), grouped as (
            select n.*,
                   max(case when not n.is_result and not (n.is_call and n.after_call)
                            then n.seq end) over (order by n.seq) as head
              from (select w.*, coalesce(lag(w.is_call) over (order by w.seq), false) as after_call
                      from newest as w) as n
        ), counted as (
            select g.*,
                   sum(case when g.is_call then g.tool_parts else 0 end)
                       over (partition by g.head) as asked,
                   sum(case when g.is_result then g.tool_parts else 0 end)
                       over (partition by g.head) as answered,
                   bool_or(g.outside) over (partition by g.head) as cut
              from grouped as g
        ), kept as (
            select c.*
              from counted as c
             where c.head is not null
               and not c.cut  -- a group that starts before the window
               and case when c.is_result then c.asked > 0 and c.answered = c.asked
                        else c.asked = 0 or c.answered = c.asked end
               and not (c.seq = any (taken))
        )
        select k.seq, k.role, coalesce(x.cut ->> 'content', u.content), k.cost,
               sum(k.cost + message_overhead) over ()::bigint, coalesce(x.cut -> 'parts', u.parts),
               u.name
          from (select c.seq, c.role, c.tokens, c.cost, c.structured,
                       memory._reveal(c.content, c.sealed, c.key_version,
                                      (select memory._data_keys(_tail.tenant))) as stored
                  from kept as c
                offset 0) as k
               -- Given a plain column, memory._turn is inlined (see memory.history).
               cross join lateral memory._turn(k.stored, k.structured) as u
               -- Only a shortened turn pays for cutting.
               cross join lateral (
                   select case when k.cost < k.tokens
                               then memory._shortened(u.parts, k.tokens, shorten)
                          end as cut
               ) as x;
end;
$fn$;

comment on function memory._tail(text, text, bigint, integer, double precision, bigint[], integer) is
$$The contiguous newest turns whose tokens (plus overhead) fit `budget`,
leaving out (and not charging for) the seqs in `taken`; `used` repeats the
tokens spent on each row. With `shorten`, a tool result turn over that many
tokens, older than the newest tool call, is cut to it with a marker
(memory._window_cost, memory._shortened) rather than left out. An assistant
turn with tool calls comes with all
of its results or not at all, and no tool turn comes without its call.$$;

-------------------------------------------------------------------------------
-- _turn_group: an assistant turn with tool calls and its results, if complete.
create or replace function memory._turn_group(
    tenant  text,
    session text,
    member  bigint
)
returns table (
    seq     bigint,
    role    text,
    content text,
    tokens  integer,
    parts   jsonb,
    name    text
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    r          record;
    v_head     bigint;
    v_next     bigint;
    v_seen     boolean := false;
begin
    -- Back from the member: over results, then over the run of call turns.
    for r in
        select m.seq, m.role = 'tool' and m.tool_parts > 0 as is_result,
               m.role = 'assistant' and m.tool_parts > 0 as is_call
          from memory.messages as m
         where m.tenant_id = _turn_group.tenant
           and m.session_id = _turn_group.session
           and m.seq <= _turn_group.member
         order by m.seq desc
    loop
        exit when r.is_result and v_seen;  -- a result of an earlier group
        continue when r.is_result;
        exit when not r.is_call;
        v_head := r.seq;
        v_seen := true;
    end loop;
    if v_head is null then
        return;
    end if;
    -- Forward: the calls right after the head, then their results.
    v_seen := false;
    for r in
        select m.seq, m.role = 'tool' and m.tool_parts > 0 as is_result,
               m.role = 'assistant' and m.tool_parts > 0 as is_call
          from memory.messages as m
         where m.tenant_id = _turn_group.tenant
           and m.session_id = _turn_group.session
           and m.seq > v_head
         order by m.seq
    loop
        v_seen := v_seen or r.is_result;
        continue when r.is_result or (r.is_call and not v_seen);
        v_next := r.seq;
        exit;
    end loop;
    return query
        with g as (
            select m.*
              from memory.messages as m
             where m.tenant_id = _turn_group.tenant
               and m.session_id = _turn_group.session
               and m.seq >= v_head
               and (v_next is null or m.seq < v_next)
        )
        select r.seq, r.role, u.content, r.tokens, u.parts, u.name
          from (select g.seq, g.role, g.tokens, g.structured,
                       memory._reveal(g.content, g.sealed, g.key_version,
                                      (select memory._data_keys(_turn_group.tenant))) as stored
                  from g
                 where (select sum(x.tool_parts) filter (where x.role = 'tool') from g as x)
               = (select sum(x.tool_parts) filter (where x.role = 'assistant') from g as x)
                offset 0) as r
               cross join lateral memory._turn(r.stored, r.structured) as u
         order by r.seq;
end;
$fn$;

comment on function memory._turn_group(text, text, bigint) is
$$The tool group of turn `member` (a call or a result): the assistant turns
with tool calls in a row (one turn, or one per call when stored item by
item) and the result turns after them, returned only when every call is
answered (no rows otherwise; memory._tail keeps groups by the same rule).$$;

-------------------------------------------------------------------------------
-- _check_context: the arguments of memory.context, and its budget shares.
create or replace function memory._check_context(
    budget            integer,
    message_overhead  integer,
    strategy          text,
    summary_share     double precision,
    recent_share      double precision,
    out digests_share double precision,
    out recent_part   double precision
)
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
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
    digests_share := coalesce(summary_share, case strategy when 'summary' then 0.3 else 0.1 end);
    recent_part := coalesce(recent_share, case strategy when 'summary' then 0.7 else 0.1 end);
    if digests_share < 0 or recent_part < 0 or digests_share + recent_part > 1 then
        raise exception 'memory: shares must be >= 0 and add up to at most 1, got summary % and recent %',
                digests_share, recent_part
            using errcode = 'ME002', hint = 'e.g. summary_share => 0.2, recent_share => 0.25';
    end if;
end;
$fn$;

comment on function memory._check_context(integer, integer, text, double precision, double precision) is
$$Check memory.context's budget, overhead and strategy; return the digest and
recent shares, defaults filled in per strategy. Errors: ME002, ME004, ME005.$$;

-------------------------------------------------------------------------------
-- _context_digests: the digests a window shows for the turns before `upto`.
create or replace function memory._context_digests(
    tenant           text,
    session          text,
    upto             bigint,
    share            bigint,
    message_overhead integer,
    out summary_ids  bigint[],
    out used         bigint
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    r record;
begin
    summary_ids := '{}';
    used := 0;
    for r in
        select c.summary_id, c.tokens
          from memory._summary_cover(tenant, session, upto, share::integer) as c
    loop
        summary_ids := summary_ids || r.summary_id;
        used := used + r.tokens + message_overhead;
    end loop;
    if used <= share then
        return;
    end if;
    -- The per-row overhead pushed the cover over its share: drop the oldest.
    summary_ids := '{}';
    used := 0;
    for r in
        select c.summary_id, c.tokens
          from memory._summary_cover(tenant, session, upto, share::integer) as c
         order by c.seq_to desc
    loop
        exit when used + r.tokens + message_overhead > share;
        summary_ids := summary_ids || r.summary_id;
        used := used + r.tokens + message_overhead;
    end loop;
end;
$fn$;

comment on function memory._context_digests(text, text, bigint, bigint, integer) is
$$The digests (memory._summary_cover) of turns 1..`upto` that fit `share`
tokens with `message_overhead` each, and the tokens they use.$$;

-------------------------------------------------------------------------------
-- _context_recall: the older turns a hybrid window recalls, best first.
drop function if exists memory._context_recall(text, text, text, public.vector, bigint, bigint, integer, double precision);
create or replace function memory._context_recall(
    tenant           text,
    session          text,
    query            text,
    query_embedding  public.vector,
    before_seq       bigint,
    share            bigint,
    message_overhead integer,
    average_tokens   double precision,
    out seqs         bigint[],
    out roles        text[],
    out contents     text[],
    out token_counts integer[],
    out scores       double precision[],
    out part_lists   jsonb[],
    out names        text[],
    out used         bigint
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    r       record;
    v_group record;  -- seqs, roles, contents, token_counts, part_lists, names, cost
begin
    seqs := '{}';
    roles := '{}';
    contents := '{}';
    token_counts := '{}';
    scores := '{}';
    part_lists := '{}';
    names := '{}';
    used := 0;
    for r in
        select x.seq, x.role, x.content, x.tokens, x.score, x.parts, x.name
          from memory.recall(tenant, session, coalesce(query, ''), query_embedding, before_seq,
                             -- twice the turns the share buys at the average size
                             least(greatest(ceil(2 * share / greatest(average_tokens + message_overhead, 1))::integer,
                                            20), 500)) as x
    loop
        continue when r.seq = any (seqs);
        if (r.role = 'tool' and r.parts is not null)
           or jsonb_path_exists(r.parts, '$[*] ? (@.type == "tool_call")') then
            -- A tool call or result comes with its whole group, or not at all.
            select array_agg(g.seq order by g.seq) as seqs, array_agg(g.role order by g.seq) as roles,
                   array_agg(g.content order by g.seq) as contents,
                   array_agg(g.tokens order by g.seq) as token_counts,
                   array_agg(g.parts order by g.seq) as part_lists,
                   array_agg(g.name order by g.seq) as names,
                   sum(g.tokens + message_overhead) as cost
              into v_group
              from memory._turn_group(tenant, session, r.seq) as g;
            continue when v_group.seqs is null or v_group.seqs && seqs
                       or used + v_group.cost > share;
            seqs := seqs || v_group.seqs;
            roles := roles || v_group.roles;
            contents := contents || v_group.contents;
            token_counts := token_counts || v_group.token_counts;
            scores := scores || array_fill(r.score, array[cardinality(v_group.seqs)]);
            part_lists := part_lists || v_group.part_lists;
            names := names || v_group.names;
            used := used + v_group.cost;
        else
            continue when used + r.tokens + message_overhead > share;
            seqs := seqs || r.seq;
            roles := roles || r.role;
            contents := contents || r.content;
            token_counts := token_counts || r.tokens;
            scores := scores || r.score;
            part_lists := array_append(part_lists, r.parts);
            names := array_append(names, r.name);
            used := used + r.tokens + message_overhead;
        end if;
        exit when share - used < message_overhead + 1;
    end loop;
end;
$fn$;

comment on function memory._context_recall(text, text, text, public.vector, bigint, bigint, integer, double precision) is
$$The turns before `before_seq` that memory.recall ranks best for the query,
as many as fit `share` tokens with `message_overhead` each (columns as
arrays, best first), and the tokens they use. A recalled tool call or result
brings its whole group (memory._turn_group, each turn scored as the one
recalled), or is skipped when the group is incomplete or does not fit.$$;

-------------------------------------------------------------------------------
-- context: the context window of a session, never over `budget` tokens.
drop function if exists memory.context(text, text, integer, text, public.vector, text, integer, double precision, double precision);
drop function if exists memory.context(text, text, integer, text, public.vector, text, integer, double precision, double precision, integer);
create or replace function memory.context(
    tenant           text,
    session          text,
    budget           integer,
    query            text default null,
    query_embedding  public.vector default null,
    strategy         text default 'recent',
    message_overhead integer default 0,
    summary_share    double precision default null,
    recent_share     double precision default null,
    shorten_results  integer default null
)
returns table (
    part    text,
    seq     bigint,
    role    text,
    content text,
    tokens  integer,
    score   double precision,
    parts   jsonb,
    name    text
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $fn$
#variable_conflict use_column
declare
    v_shares   record;  -- digests_share, recent_part
    v_session  memory.sessions;
    v_avg      double precision;
    v_summary  bigint;
    v_recall   bigint;
    v_recent   bigint;
    v_first    bigint;
    v_digests  record;  -- summary_ids, used
    v_recalled record;  -- seqs, roles, contents, token_counts, scores, part_lists, names, used
begin
    if not memory._act_for(context.tenant) then
        perform memory._tenant_guard(context.tenant);
    end if;
    select *
      into v_shares
      from memory._check_context(budget, message_overhead, strategy, summary_share, recent_share);
    if shorten_results is not null and shorten_results < 1 then
        raise exception 'memory: shorten_results must be at least 1 token, got %', shorten_results
            using errcode = 'ME002', hint = 'e.g. 200 keeps the first 200 tokens of old tool results';
    end if;
    v_session := memory._live_session(context.tenant, context.session);
    v_avg := v_session.token_count::double precision / greatest(v_session.message_count, 1);

    if strategy = 'recent' then
        return query
            select 'recent'::text, t.seq, t.role, t.content, t.tokens, null::double precision,
                   t.parts, t.name
              from memory._tail(context.tenant, context.session, budget, message_overhead, v_avg,
                                '{}', shorten_results) as t
             order by t.seq;
        return;
    end if;

    -- The parts' shares; whatever a part leaves unused flows to the next one.
    v_summary := floor(budget * v_shares.digests_share);
    v_recent := floor(budget * v_shares.recent_part);
    v_recall := case when strategy = 'hybrid' then budget - v_summary - v_recent else 0 end;
    if strategy = 'summary' then
        v_recent := budget - v_summary;
    end if;

    -- Reserve the recent turns' own share first: digests and recall cover
    -- only what comes before them.
    select coalesce(min(t.seq), v_session.last_seq + 1)
      into v_first
      from memory._tail(context.tenant, context.session, v_recent, message_overhead, v_avg, '{}',
                        shorten_results) as t;

    -- 1. Digests covering the turns before the recent ones.
    select *
      into v_digests
      from memory._context_digests(context.tenant, context.session,
                                   least(v_session.summarized_upto, v_first - 1), v_summary,
                                   message_overhead);
    v_recall := v_recall + (v_summary - v_digests.used);

    -- 2. Older turns relevant to the query, best first, as many as fit.
    if strategy = 'hybrid' and v_recall > 0
       and (coalesce(query, '') <> '' or query_embedding is not null) and v_first > 1 then
        select *
          into v_recalled
          from memory._context_recall(context.tenant, context.session, query, query_embedding,
                                      v_first, v_recall, message_overhead, v_avg);
        v_recent := v_recent + (v_recall - v_recalled.used);
    else
        select '{}'::bigint[] as seqs, '{}'::text[] as roles, '{}'::text[] as contents,
               '{}'::integer[] as token_counts, '{}'::double precision[] as scores,
               '{}'::jsonb[] as part_lists, '{}'::text[] as names
          into v_recalled;
        v_recent := v_recent + v_recall;
    end if;

    -- 3. The newest turns with the recent share plus everything left over.
    return query
        select 'summary'::text, d.seq_to, 'system'::text,
               memory._reveal(d.content, d.sealed, d.key_version, (select memory._data_keys(context.tenant))),
               d.tokens, d.level::double precision, null::jsonb, null::text
          from memory.summaries as d
         where d.tenant_id = context.tenant
           and d.session_id = context.session
           and d.summary_id = any (v_digests.summary_ids)
         order by d.seq_from;
    return query
        select w.part, w.seq, w.role, w.content, w.tokens, w.score, w.parts, w.name
          from (select 'recall'::text as part, x.seq, x.role, x.content, x.tokens, x.score,
                       x.parts, x.name
                  from unnest(v_recalled.seqs, v_recalled.roles, v_recalled.contents,
                              v_recalled.token_counts, v_recalled.scores, v_recalled.part_lists,
                              v_recalled.names)
                       as x (seq, role, content, tokens, score, parts, name)
                union all
                select 'recent'::text, t.seq, t.role, t.content, t.tokens, null::double precision,
                       t.parts, t.name
                  from memory._tail(context.tenant, context.session, v_recent, message_overhead,
                                    v_avg, v_recalled.seqs, shorten_results) as t) as w
         order by w.seq;
end;
$fn$;

comment on function memory.context(text, text, integer, text, public.vector, text, integer, double precision, double precision, integer) is
$$Return the context window of a session as rows (part, seq, role, content,
tokens, score, parts, name), whose tokens plus `message_overhead` per row
never add up to more than `budget`. Every strategy keeps an assistant turn
with tool calls together with all of its results, or leaves them out
together, and never starts with a tool result (memory._tail,
memory._turn_group); `parts` and `name` as memory.history returns them.
`shorten_results` (tokens, off by default): among the newest turns, a tool
result turn older than the newest tool call and longer than that is cut to
it, with a marker saying how much was left out, before whole turns are
dropped; its `tokens` is then that limit plus 16 for the marker (an estimate
by share of characters). Digests come first (ordered by the turns they cover),
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
Errors: ME001 session missing; ME002 bad overhead, shares or shorten_results; ME003 deleted;
ME004 unknown strategy; ME005 budget null or negative; ME006 bad identifier;
ME007 query_embedding of the wrong dimension.
Example: select part, seq, content from memory.context('acme', 's-1', 2000, 'broken tent', strategy => 'hybrid');$$;
