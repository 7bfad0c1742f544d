-- Term statistics: how many turns of a long session hold each lexeme, so
-- that memory.recall looks document frequencies up instead of counting the
-- turns that hold a word at query time. Filled by the worker ('count_terms'
-- jobs, which memory.append queues every 250 turns of an uncapped session
-- from its 750th on); memory.append never writes them.

-------------------------------------------------------------------------------
-- count_terms: bring a session's term statistics up to its newest turn.
create or replace function memory.count_terms(
    tenant    text,
    session   text,
    max_turns integer default 20000
)
returns bigint
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_session memory.sessions;
    v_stats   memory.term_stats;
    v_from    bigint;  -- the first turn this call counts
    v_upto    bigint;  -- the last
    v_turns   bigint;  -- how many turns it read
begin
    perform memory._tenant_guard(count_terms.tenant);
    perform memory._check_ident('tenant', count_terms.tenant);
    perform memory._check_ident('session', count_terms.session);
    if max_turns is null or max_turns < 1 then
        raise exception 'memory: max_turns must be >= 1, got %', max_turns
            using errcode = 'ME002', hint = 'call it again until it returns 0';
    end if;
    select s.* into v_session
      from memory.sessions as s
     where s.tenant_id = count_terms.tenant
       and s.session_id = count_terms.session;
    if not found or v_session.deleted_at is not null then
        return 0;  -- gone since the job was queued: nothing to count
    end if;
    -- One counter per session at a time: the statistics row is its lock.
    insert into memory.term_stats as t (tenant_id, session_id, first_seq, last_seq, turns)
    values (count_terms.tenant, count_terms.session, v_session.first_seq,
            v_session.first_seq - 1, 0)
    on conflict (tenant_id, session_id) do nothing;
    select t.* into v_stats
      from memory.term_stats as t
     where t.tenant_id = count_terms.tenant
       and t.session_id = count_terms.session
       for update;
    if v_stats.first_seq <> v_session.first_seq or v_stats.last_seq > v_session.last_seq then
        -- Turns were removed since they were counted: count again from the start.
        delete from memory.session_terms as w
         where w.tenant_id = count_terms.tenant
           and w.session_id = count_terms.session;
        v_stats.first_seq := v_session.first_seq;
        v_stats.last_seq := v_session.first_seq - 1;
        v_stats.turns := 0;
    end if;
    v_from := v_stats.last_seq + 1;
    v_upto := least(v_session.last_seq, v_from + max_turns - 1);
    if v_upto < v_from then
        return 0;
    end if;
    -- Seqs are taken under the session lock and committed in order, so the
    -- turns up to the session's last_seq as read above are all visible here.
    insert into memory.session_terms as w (tenant_id, session_id, lexeme, turns)
    select count_terms.tenant, count_terms.session, l.lexeme, count(*)
      from memory.messages as m
     cross join lateral unnest(tsvector_to_array(m.search)) as l (lexeme)
     where m.tenant_id = count_terms.tenant
       and m.session_id = count_terms.session
       and m.seq >= v_from
       and m.seq <= v_upto
     group by l.lexeme
    on conflict (tenant_id, session_id, lexeme) do update
       set turns = w.turns + excluded.turns;
    v_turns := v_upto - v_from + 1;  -- seqs are gap-free between first_seq and last_seq
    update memory.term_stats as t
       set first_seq = v_stats.first_seq,
           last_seq = v_upto,
           turns = v_stats.turns + v_turns,
           counted_at = now()
     where t.tenant_id = count_terms.tenant
       and t.session_id = count_terms.session;
    return v_turns;
end;
$fn$;

comment on function memory.count_terms(text, text, integer) is
$$Count the lexemes of a session's turns not counted yet (at most
`max_turns` of them, oldest first) into memory.session_terms, and return how
many turns it read (0: up to date, or the session is gone). Statistics of
turns that were removed since (trimming, retention, memory.pop_message) are
counted again from the session's first turn. The worker runs it for
'count_terms' jobs, which memory.append queues every 250 turns of an
uncapped session from its 750th on; memory.recall uses the statistics of a
session over 1,000 turns while they lag its newest turn by at most 500
turns. Errors: ME002 bad max_turns; ME006 bad identifier.
Example: select memory.count_terms('acme', 's-1');$$;
