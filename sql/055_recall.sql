-- Recall: the older turns of a session that matter to a query. Okapi BM25
-- over PostgreSQL full-text vectors (ts_rank has no inverse document
-- frequency, so it is computed here per session), fused by reciprocal rank
-- with pgvector cosine distance when embeddings exist.

-------------------------------------------------------------------------------
-- _lexeme_query: a tsquery matching exactly one lexeme.
-- No `set search_path`, so that it inlines into recall's counts (pinned, it
-- was a function call of its own for each term): the body uses pg_catalog
-- only, bound when it was created.
create or replace function memory._lexeme_query(
    lexeme text
)
returns tsquery
language sql
immutable strict parallel safe security invoker
return ('''' || pg_catalog.replace(pg_catalog.replace(lexeme, '\', '\\'), '''', '''''')
        || '''')::tsquery;

comment on function memory._lexeme_query(text) is
$$A tsquery that matches the lexeme `lexeme` exactly (quoted in tsquery
syntax, so no character of it is an operator).$$;

-------------------------------------------------------------------------------
-- recall: the turns most relevant to a query, best first.
-- Longer than the other functions on purpose: it is one ranking pipeline
-- (terms, document frequencies, BM25 with smoothing, the vector ranking,
-- their fusion) whose stages hand arrays to each other; split into
-- functions, each stage would re-read the session's postings.
drop function if exists memory.recall(text, text, text, public.vector, bigint, integer);
create or replace function memory.recall(
    tenant          text,
    session         text,
    query           text,
    query_embedding public.vector default null,
    before_seq      bigint default null,
    max_rows        integer default 50
)
returns table (
    seq         bigint,
    role        text,
    content     text,
    tokens      integer,
    score       double precision,
    text_rank   integer,
    vector_rank integer,
    parts       jsonb,
    name        text
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
set hnsw.iterative_scan = relaxed_order
as $fn$
#variable_conflict use_column
declare
    k1         constant double precision := 1.2;
    b          constant double precision := 0.75;
    rrf_k      constant double precision := 60;
    v_session  memory.sessions;
    v_terms    text[];
    v_lexemes  text[];
    v_idf      double precision[];
    v_any      tsquery;
    v_avgdl    double precision;
    v_text     bigint[] := '{}';
    v_text_sc  double precision[] := '{}';
    v_vector   bigint[] := '{}';
    v_dim      integer;
    v_pool     integer;
    v_min_idf  double precision;
    v_cands    text[];            -- the terms candidates are found by
    -- Sessions over `c_exact` turns: frequencies from the newest `c_window`
    -- turns, exact counts only for terms that may be rare, and candidates
    -- from about `c_budget` turns at most (memory.recall's comment).
    c_exact    constant integer := 1000;
    c_window   constant integer := 500;
    c_budget   constant integer := 250;
    v_seen     integer;           -- how many recent turns were read
    v_sample   bigint[];          -- each term's count among them
    v_low      bigint;            -- those turns: seq above v_low, up to v_high
    v_high     bigint;
    v_counted  boolean;           -- term statistics give the other turns' counts
    v_df       double precision[];
    v_exact    boolean[];         -- the term's count is exact, not estimated
    v_stats    memory.term_stats; -- the session's term statistics, if counted
    v_floor    bigint;            -- candidates only above this seq (null: any)
    v_ceiling  bigint;            -- the newest turn recall may return
    -- Words that phrase a question rather than name its subject.
    v_hedges   constant text[] := array['would', 'like', 'might', 'may', 'could', 'think',
                                        'consid', 'say', 'said', 'kind', 'type', 'thing',
                                        'someth', 'probabl', 'possibl'];
begin
    if not memory._act_for(recall.tenant) then
        perform memory._tenant_guard(recall.tenant);
    end if;
    if max_rows is null or max_rows < 1 or max_rows > 10000 then
        raise exception 'memory: max_rows must be between 1 and 10000, got %', max_rows
            using errcode = 'ME002', hint = 'ask for the few dozen turns a context can hold';
    end if;
    v_session := memory._live_session(recall.tenant, recall.session);
    v_pool := greatest(max_rows * 2, 100);
    -- The idf of a term found in a fifth of the session's turns.
    v_min_idf := ln(1 + (v_session.message_count * 0.8 + 0.5)
                        / (v_session.message_count * 0.2 + 0.5));

    -- Text: BM25 with idf from this session's own document frequencies.
    v_terms := array(select distinct t
                       from unnest(tsvector_to_array(
                                to_tsvector('english'::regconfig, coalesce(recall.query, '')))) as t
                      where t <> all (v_hedges));
    if cardinality(v_terms) > 0 and v_session.message_count > 0
       and v_session.message_count <= c_exact then
        v_avgdl := greatest(v_session.token_count::double precision / v_session.message_count, 1);
        select array_agg(x.lexeme),
               array_agg(ln(1 + (v_session.message_count - x.df + 0.5) / (x.df + 0.5)))
          into v_lexemes, v_idf
          from (select t.lexeme,
                       (select count(*)
                          from memory.messages as m
                         where m.tenant_id = recall.tenant
                           and m.session_id = recall.session
                           and m.search @@ memory._lexeme_query(t.lexeme)) as df
                  from unnest(v_terms) as t (lexeme)
                offset 0) as x  -- evaluate each count once, not once per use
         where x.df > 0;
        -- Candidates come from the selective terms: a turn that only holds
        -- words found in over a fifth of the session cannot score high, and
        -- scanning such turns is what makes common words slow.
        v_cands := array(select w.l
                           from unnest(v_lexemes, v_idf) as w (l, idf)
                          where w.idf >= v_min_idf
                             or w.idf >= (select max(x) from unnest(v_idf) as x));
    elsif cardinality(v_terms) > 0 and v_session.message_count > 0 then
        v_ceiling := least(v_session.last_seq, coalesce(recall.before_seq - 1, v_session.last_seq));
        -- A long session: counting every term over all its turns costs as much
        -- as the turns that hold it. With term statistics (memory.count_terms)
        -- at most `c_window` turns behind, a count is a lookup plus the turns
        -- after them. Without, count the terms among the newest turns in
        -- one pass: a term frequent there is frequent in the session (its idf,
        -- low anyway, is estimated from that sample). The others are counted
        -- over the whole session, up to the budget. Candidates then come from
        -- the exactly counted selective terms, rarest first, within the
        -- budget; when there is none, from the newest turns.
        v_avgdl := greatest(v_session.token_count::double precision / v_session.message_count, 1);
        select t.* into v_stats
          from memory.term_stats as t
         where t.tenant_id = recall.tenant
           and t.session_id = recall.session;
        v_counted := coalesce(v_stats.first_seq = v_session.first_seq
                              and v_stats.last_seq <= v_session.last_seq
                              and v_stats.last_seq >= v_session.last_seq - c_window, false);
        -- The turns whose terms are counted now: those after the statistics,
        -- or without them the newest `c_window` turns (before before_seq).
        v_low := case when v_counted then v_stats.last_seq else v_ceiling - c_window end;
        v_high := case when v_counted then v_session.last_seq else v_ceiling end;
        with newest as materialized (
            select m.search
              from memory.messages as m
             where m.tenant_id = recall.tenant
               and m.session_id = recall.session
               and m.seq > v_low
               and m.seq <= v_high
        )
        select (select count(*) from newest),
               array(select (select count(*) from newest as n where n.search @@ t.q)
                       from unnest(array(select memory._lexeme_query(l)
                                           from unnest(v_terms) as l))
                            with ordinality as t (q, i)
                      order by t.i)
          into v_seen, v_sample;
        if v_counted then
            -- Term statistics (memory.count_terms) up to a recent turn: each
            -- frequency is their count plus the turns after it, exactly.
            select array_agg(x.lexeme order by x.df, x.lexeme),
                   array_agg(x.df order by x.df, x.lexeme),
                   array_agg(x.df <= c_budget order by x.df, x.lexeme)
              into v_lexemes, v_df, v_exact
              from (select t.lexeme,
                           (coalesce((select w.turns
                                        from memory.session_terms as w
                                       where w.tenant_id = recall.tenant
                                         and w.session_id = recall.session
                                         and w.lexeme = t.lexeme), 0)
                            + t.sampled)::double precision as df
                      from unnest(v_terms, v_sample) as t (lexeme, sampled)) as x
             where x.df > 0;
        else
            select array_agg(x.lexeme order by x.df, x.lexeme),
                   array_agg(x.df order by x.df, x.lexeme),
                   array_agg(x.exact order by x.df, x.lexeme)
              into v_lexemes, v_df, v_exact
              from (select t.lexeme,
                           case when y.n <= c_budget then y.n::double precision
                                else greatest(y.n, t.sampled::double precision
                                                   * v_session.message_count
                                                   / greatest(v_seen, 1)) end as df,
                           y.n <= c_budget as exact
                      from unnest(v_terms, v_sample) as t (lexeme, sampled)
                     cross join lateral (
                            -- Frequent among the newest turns: over the budget in all.
                            select case when t.sampled * v_session.message_count
                                             > c_budget::bigint * greatest(v_seen, 1)
                                        then c_budget + 1
                                        else (select count(*)
                                                from (select
                                                        from memory.messages as m
                                                       where m.tenant_id = recall.tenant
                                                         and m.session_id = recall.session
                                                         and m.search
                                                             @@ memory._lexeme_query(t.lexeme)
                                                       limit c_budget + 1) as h)
                                   end as n
                            offset 0) as y  -- one count per term, however often used
                    offset 0) as x
             where x.df > 0;
        end if;
        v_idf := array(select ln(1 + (v_session.message_count - u.d + 0.5) / (u.d + 0.5))
                         from unnest(v_df) with ordinality as u (d, i)
                        order by u.i);
        -- Selective terms, rarest first, while the budget lasts (the rarest always).
        v_cands := array(select c.l
                           from (select u.l, u.e, u.idf, u.d,
                                        sum(u.d) over (order by u.d, u.l) as running
                                   from unnest(v_lexemes, v_df, v_exact, v_idf)
                                        as u (l, d, e, idf)) as c
                          where c.e
                            and (c.idf >= v_min_idf
                                 or c.idf >= (select max(x) from unnest(v_idf) as x))
                            and (c.running <= c_budget or c.running = c.d));
        if cardinality(v_cands) = 0 then
            v_floor := v_ceiling - c_window;
            v_cands := v_lexemes;
        end if;
    end if;
    if v_lexemes is not null then
        v_any := array_to_string(
                     array(select '''' || replace(replace(w.l, '\', '\\'), '''', '''''') || ''''
                             from unnest(v_cands) as w (l)),
                     ' | ')::tsquery;
        -- BM25 of each matching turn, then smoothed along the conversation:
        -- an answer usually sits next to the turn that names the topic, so a
        -- turn also earns half its neighbour's score and 0.3 of the next one's.
        with hits as (
            -- The turns holding a candidate term, found in the recall index...
            select d.seq, d.tokens, d.search
              from memory.messages as d
             where v_floor is null
               and d.tenant_id = recall.tenant
               and d.session_id = recall.session
               and d.search @@ v_any
               and (recall.before_seq is null or d.seq < recall.before_seq)
            union all
            -- ...or, when every term is common, among the newest turns (the
            -- seq range is the index condition; coalesce keeps @@ out of it).
            select d.seq, d.tokens, d.search
              from memory.messages as d
             where v_floor is not null
               and d.tenant_id = recall.tenant
               and d.session_id = recall.session
               and d.seq > v_floor
               and d.seq <= v_ceiling
               and coalesce(d.search @@ v_any, false)
        ), bm25 as (
            select u.seq,
                   sum(w.idf * u.tf * (k1 + 1)
                       / (u.tf + k1 * (1 - b + b * u.tokens / v_avgdl))) as score
              from (select x.seq, x.tokens, (x.entry).lexeme,
                           coalesce(array_length((x.entry).positions, 1), 1) as tf
                      -- Only the query's lexemes: mark them, keep the marked ones
                      -- (unnest in the select list: one pass over the turns, where
                      -- a lateral function scan is set up again for each turn).
                      from (select d.seq, d.tokens,
                                   unnest(ts_filter(setweight(d.search, 'A', v_lexemes), '{a}'))
                                       as entry
                              from hits as d) as x) as u
              join unnest(v_lexemes, v_idf) as w (lexeme, idf) on w.lexeme = u.lexeme
             group by u.seq
        ), smoothed as (
            -- Every scored turn and its neighbours two either side, in one
            -- grouping: a turn's own score (0 for one that matched nothing),
            -- plus 0.5 of its best direct neighbour's and 0.3 of the best
            -- one two turns away.
            select n.seq,
                   coalesce(max(c.score) filter (where n.offs = 0), 0)
                   + 0.5 * coalesce(max(c.score) filter (where abs(n.offs) = 1), 0)
                   + 0.3 * coalesce(max(c.score) filter (where abs(n.offs) = 2), 0) as score
              from bm25 as c
             cross join lateral (select c.seq + o.offs as seq, o.offs
                                   from (values (-2), (-1), (0), (1), (2)) as o (offs)) as n
             where n.seq >= v_session.first_seq
               and n.seq <= v_session.last_seq
               and (recall.before_seq is null or n.seq < recall.before_seq)
             group by n.seq
        )
        select coalesce(array_agg(r.seq order by r.score desc, r.seq desc), '{}'),
               coalesce(array_agg(r.score order by r.score desc, r.seq desc), '{}')
          into v_text, v_text_sc
          from (select sm.seq, sm.score
                  from smoothed as sm
                 order by sm.score desc, sm.seq desc
                 limit v_pool) as r;
    end if;

    -- Meaning: nearest embeddings by cosine distance, when asked for.
    if recall.query_embedding is not null then
        v_dim := memory._check_dimension('query_embedding', recall.query_embedding,
                                         'embed the query with the model used for messages');
        -- The dimension is an integer from memory.settings, not user text.
        execute format(
            'select coalesce(array_agg(n.seq order by n.distance), ''{}'')
               from (select m.seq,
                            (m.embedding::public.vector(%1$s)) operator(public.<=>) $1 as distance
                       from memory.messages as m
                      where m.tenant_id = $2
                        and m.session_id = $3
                        and m.embedding is not null
                        and ($4::bigint is null or m.seq < $4)
                      order by (m.embedding::public.vector(%1$s)) operator(public.<=>) $1
                      limit $5) as n', v_dim)
          into v_vector
          using recall.query_embedding, recall.tenant, recall.session, recall.before_seq, v_pool;
    end if;

    -- Fuse: reciprocal-rank fusion when both lists exist, else one list's order.
    return query
        with ranked as (
            select coalesce(t.seq, v.seq) as seq, t.rank as text_rank, v.rank as vector_rank,
                   t.bm25
              from (select u.seq, u.rank::integer as rank, u.bm25
                      from unnest(v_text, v_text_sc) with ordinality as u (seq, bm25, rank)) as t
              full join (select u.seq, u.rank::integer as rank
                           from unnest(v_vector) with ordinality as u (seq, rank)) as v
                on v.seq = t.seq
        ), scored as (
            select r.seq, r.text_rank, r.vector_rank,
                   case when cardinality(v_vector) = 0 then r.bm25
                        else coalesce(1 / (rrf_k + r.text_rank), 0)
                           + coalesce(1 / (rrf_k + r.vector_rank), 0)
                   end as score
              from ranked as r
        )
        , best as (
            select s.seq, s.score, s.text_rank, s.vector_rank
              from scored as s
             order by s.score desc, s.seq desc
             limit recall.max_rows
        )
        select t.seq, t.role, u.content, t.tokens, t.score, t.text_rank, t.vector_rank, u.parts,
               u.name
          from (select m.seq, m.role, m.tokens, m.structured, b.score, b.text_rank,
                       b.vector_rank,
                       memory._reveal(m.content, m.sealed, m.key_version,
                                      (select memory._data_keys(recall.tenant))) as stored
                  from best as b
                  join memory.messages as m
                    on m.tenant_id = recall.tenant
                   and m.session_id = recall.session
                   and m.seq = b.seq
                offset 0) as t
               -- Given a plain column, memory._turn is inlined (see memory.history).
               cross join lateral memory._turn(t.stored, t.structured) as u
         order by t.score desc, t.seq desc;
end;
$fn$;

comment on function memory.recall(text, text, text, public.vector, bigint, integer) is
$$Return up to `max_rows` turns of a session (only those before `before_seq`
when given) ranked by relevance to `query`: Okapi BM25 (k1 1.2, b 0.75) over
the english full-text vectors with this session's document frequencies
(question phrasing such as "would", "likely", "think" ignored), smoothed
along the conversation (a turn adds 0.5 of its best direct neighbour's score
and 0.3 of the best one two turns away, so replies next to a matching turn
are recalled too), and,
when `query_embedding` is given, reciprocal-rank fusion (k 60) with pgvector
cosine distance. `score` is the BM25 score (text only) or the fused score;
`text_rank` / `vector_rank` are each list's rank (null when absent from it);
`parts` and `name` as memory.history returns them. A tool call is found by
its tool name and argument values.
Sessions of up to 1,000 turns are ranked over all their turns with exact
document frequencies. Longer ones cost about the same: frequencies are
looked up in the session's term statistics (memory.count_terms, kept by the
worker) plus the turns after them when those lag by at most 500 turns, else
they come from the newest 500 turns (before `before_seq`), and a term rare
there is counted over the whole session; candidates are the turns holding
the rarest terms, up to about 250 turns, so a rare word finds its turn
however old it is; when every word of the query is common, candidates are
the newest 500 turns (recent turns rank highest when no word tells the
turns apart).
Errors: ME001/ME003 session missing or deleted; ME002 bad max_rows;
ME006 bad identifier; ME007 query_embedding of the wrong dimension.
Example: select seq, score, content from memory.recall('acme', 's-1', 'broken tent pole');$$;
