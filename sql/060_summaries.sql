-- Incremental digests: level 1 summarizes consecutive turns, level L+1
-- summarizes consecutive level-L digests, so a long session always has a few
-- coarse digests that fit a small budget and finer ones for recent history.

-------------------------------------------------------------------------------
-- add_summary: store a digest written by a summarizer.
create or replace function memory.add_summary(
    tenant   text,
    session  text,
    level    integer,
    seq_from bigint,
    seq_to   bigint,
    content  text,
    tokens   integer,
    metadata jsonb default '{}'::jsonb
)
returns bigint
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_session memory.sessions;
    v_id      bigint;
    v_covered bigint;
    v_version integer;
begin
    perform memory._tenant_guard(add_summary.tenant);
    if add_summary.level is null or add_summary.level < 1 or add_summary.level > 32
       or add_summary.seq_from is null or add_summary.seq_to is null
       or add_summary.seq_from < 1 or add_summary.seq_to < add_summary.seq_from
       or add_summary.content is null or add_summary.tokens is null or add_summary.tokens < 0 then
        raise exception 'memory: a summary needs level 1..32, 1 <= seq_from <= seq_to, content and tokens >= 0'
            using errcode = 'ME002', hint = 'see memory.add_summary''s reference';
    end if;
    perform memory._check_metadata(add_summary.metadata);
    select s.* into v_session
      from memory.sessions as s
     where s.tenant_id = add_summary.tenant
       and s.session_id = add_summary.session
       for update;
    if not found or v_session.deleted_at is not null then
        perform memory._live_session(add_summary.tenant, add_summary.session);
    end if;

    if add_summary.level = 1 then
        -- Level 1 continues exactly where the last digest stopped (or at the
        -- oldest retained turn, when caps trimmed turns never summarized).
        if add_summary.seq_from <> greatest(v_session.summarized_upto + 1, v_session.first_seq)
           or add_summary.seq_to > v_session.last_seq then
            raise exception 'memory: a level-1 summary of %/% must cover %..(at most %), got %..%',
                    tenant, session,
                    greatest(v_session.summarized_upto + 1, v_session.first_seq),
                    v_session.last_seq,
                    add_summary.seq_from, add_summary.seq_to
                using errcode = 'ME014',
                      hint = 'read memory.session_info(...).summarized_upto and summarize from the next seq';
        end if;
        select coalesce(sum(m.tokens), 0) into v_covered
          from memory.messages as m
         where m.tenant_id = add_summary.tenant
           and m.session_id = add_summary.session
           and m.seq between add_summary.seq_from and add_summary.seq_to;
        update memory.sessions as s
           set summarized_upto = add_summary.seq_to,
               unsummarized_tokens = greatest(s.unsummarized_tokens - v_covered, 0)
         where s.tenant_id = add_summary.tenant
           and s.session_id = add_summary.session;
    else
        -- Level L+1 spans whole level-L digests, none already rolled up.
        if not exists (select 1 from memory.summaries as d
                        where d.tenant_id = add_summary.tenant
                          and d.session_id = add_summary.session
                          and d.level = add_summary.level - 1
                          and d.seq_from = add_summary.seq_from)
           or not exists (select 1 from memory.summaries as d
                           where d.tenant_id = add_summary.tenant
                             and d.session_id = add_summary.session
                             and d.level = add_summary.level - 1
                             and d.seq_to = add_summary.seq_to)
           or exists (select 1 from memory.summaries as d
                       where d.tenant_id = add_summary.tenant
                         and d.session_id = add_summary.session
                         and d.level = add_summary.level
                         and d.seq_to >= add_summary.seq_from
                         and d.seq_from <= add_summary.seq_to) then
            raise exception 'memory: a level-% summary must span whole level-% summaries not yet rolled up',
                    add_summary.level, add_summary.level - 1
                using errcode = 'ME014', hint = 'list them with memory.list_summaries';
        end if;
    end if;

    v_version := memory._active_key(add_summary.tenant);
    insert into memory.summaries
           (tenant_id, session_id, level, seq_from, seq_to, content, sealed, key_version, tokens,
            metadata)
    values (add_summary.tenant, add_summary.session, add_summary.level, add_summary.seq_from,
            add_summary.seq_to,
            case when v_version is null then add_summary.content end,
            case when v_version is not null
                 then memory._seal(add_summary.content,
                                   (memory._data_keys(add_summary.tenant))[v_version]) end,
            v_version, add_summary.tokens, coalesce(add_summary.metadata, '{}'::jsonb))
    returning summary_id into v_id;
    return v_id;
end;
$fn$;

comment on function memory.add_summary(text, text, integer, bigint, bigint, text, integer, jsonb) is
$$Store a digest and return its id. Level 1 must continue exactly after the
session's summarized_upto, or start at its oldest retained turn when caps
trimmed unsummarized turns (it advances summarized_upto and lowers
unsummarized_tokens);
level L > 1 must start where one level L-1 digest starts and end where one
ends, overlapping no other level-L digest. Normally written by `pymem worker`.
Errors: ME001/ME003 session missing or deleted; ME002 bad arguments;
ME014 the range breaks the rules above.
Example: select memory.add_summary('acme', 's-1', 1, 1, 40, 'User reported a broken tent pole...', 38);$$;

-------------------------------------------------------------------------------
-- list_summaries: a session's digests, oldest first, coarsest first.
create or replace function memory.list_summaries(
    tenant  text,
    session text
)
returns table (
    summary_id bigint,
    level      integer,
    seq_from   bigint,
    seq_to     bigint,
    content    text,
    tokens     integer,
    created_at timestamptz
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(list_summaries.tenant);
    perform memory._live_session(list_summaries.tenant, list_summaries.session);
    return query
        select d.summary_id, d.level, d.seq_from, d.seq_to,
               memory._reveal(d.content, d.sealed, d.key_version, (select memory._data_keys(list_summaries.tenant))),
               d.tokens, d.created_at
          from memory.summaries as d
         where d.tenant_id = list_summaries.tenant
           and d.session_id = list_summaries.session
         order by d.seq_from, d.level desc;
end;
$fn$;

comment on function memory.list_summaries(text, text) is
$$Return every digest of a session ordered by seq_from, coarsest level first.
Errors: ME001 missing; ME003 deleted; ME006 bad identifier.
Example: select level, seq_from, seq_to, tokens from memory.list_summaries('acme', 's-1');$$;

-------------------------------------------------------------------------------
-- _summary_cover: digests that cover seq 1..upto within a token budget,
-- finest for the newest turns.
create or replace function memory._summary_cover(
    tenant  text,
    session text,
    upto    bigint,
    budget  integer
)
returns table (
    summary_id bigint,
    level      integer,
    seq_from   bigint,
    seq_to     bigint,
    content    text,
    tokens     integer
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_cover  bigint[];
    v_cost   bigint;
    v_best   bigint;
    v_child  bigint[];
    v_delta  bigint;
    v_done   boolean := false;
begin
    if budget <= 0 or upto < 1 then
        return;
    end if;
    -- Start from the maximal digests (those no coarser digest contains),
    -- newest first, as many as fit.
    select coalesce(array_agg(x.summary_id order by x.seq_to desc), '{}'), 0
      into v_cover, v_cost
      from (select d.summary_id, d.seq_to
              from memory.summaries as d
             where d.tenant_id = _summary_cover.tenant
               and d.session_id = _summary_cover.session
               and d.seq_from <= _summary_cover.upto
               and not exists (select 1 from memory.summaries as p
                                where p.tenant_id = d.tenant_id
                                  and p.session_id = d.session_id
                                  and p.level > d.level
                                  and p.seq_from <= d.seq_from
                                  and p.seq_to >= d.seq_to)) as x;
    -- Keep the newest maximal digests that fit.
    select coalesce(array_agg(c.id order by c.ord), '{}'), coalesce(max(c.running), 0)
      into v_cover, v_cost
      from (select u.id, u.ord, sum(d.tokens) over (order by u.ord) as running
              from unnest(v_cover) with ordinality as u (id, ord)
              join memory.summaries as d
                on d.tenant_id = _summary_cover.tenant
               and d.session_id = _summary_cover.session
               and d.summary_id = u.id) as c
     where c.running <= budget;

    -- Refine: replace the newest coarse digest by its children while it fits.
    while not v_done loop
        v_done := true;
        for v_best in
            select d.summary_id
              from memory.summaries as d
             where d.tenant_id = _summary_cover.tenant
               and d.session_id = _summary_cover.session
               and d.summary_id = any (v_cover)
               and d.level > 1
             order by d.seq_to desc
        loop
            select array_agg(c.summary_id), sum(c.tokens) - max(p.tokens)
              into v_child, v_delta
              from memory.summaries as p
              join memory.summaries as c
                on c.tenant_id = p.tenant_id
               and c.session_id = p.session_id
               and c.level = p.level - 1
               and c.seq_from >= p.seq_from
               and c.seq_to <= p.seq_to
               and c.seq_from <= _summary_cover.upto
             where p.tenant_id = _summary_cover.tenant
               and p.session_id = _summary_cover.session
               and p.summary_id = v_best;
            if v_child is not null and v_cost + v_delta <= budget then
                v_cover := array_remove(v_cover, v_best) || v_child;
                v_cost := v_cost + v_delta;
                v_done := false;
                exit;
            end if;
        end loop;
    end loop;

    return query
        select d.summary_id, d.level, d.seq_from, d.seq_to,
               memory._reveal(d.content, d.sealed, d.key_version, (select memory._data_keys(_summary_cover.tenant))),
               d.tokens
          from memory.summaries as d
         where d.tenant_id = _summary_cover.tenant
           and d.session_id = _summary_cover.session
           and d.summary_id = any (v_cover)
         order by d.seq_from;
end;
$fn$;

comment on function memory._summary_cover(text, text, bigint, integer) is
$$The digests a context shows for turns 1..upto within `budget` tokens: the
coarsest complete cover that fits (newest first when even that is too big),
then refined newest-first into finer digests while the budget allows.$$;

-------------------------------------------------------------------------------
-- summary_cadence: how many unsummarized tokens make a level-1 digest.
create or replace function memory.summary_cadence(
    tenant  text,
    session text
)
returns integer
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_every integer;
begin
    perform memory._tenant_guard(summary_cadence.tenant);
    perform memory._live_session(summary_cadence.tenant, summary_cadence.session);
    select coalesce(s.summary_every_tokens, t.summary_every_tokens)
      into v_every
      from memory.sessions as s
      left join memory.tenants as t on t.tenant_id = s.tenant_id
     where s.tenant_id = summary_cadence.tenant
       and s.session_id = summary_cadence.session;
    return v_every;
end;
$fn$;

comment on function memory.summary_cadence(text, text) is
$$The session's digest cadence in tokens (its own, else its tenant's); null
when summaries are off. Errors: ME001 missing; ME003 deleted; ME006 bad identifier.
Example: select memory.summary_cadence('acme', 's-1');$$;
