-- Counters for operators and the `pymem stats` command.

-------------------------------------------------------------------------------
-- stats: totals per tenant (or for one tenant).
create or replace function memory.stats(
    tenant text default null
)
returns table (
    tenant_id        text,
    sessions         bigint,
    live_sessions    bigint,
    messages         bigint,
    tokens           bigint,
    last_activity    timestamptz
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if stats.tenant is null then
        -- Every tenant: for owners (operators, `pymem stats`) only.
        if not memory._privileged() then
            raise exception 'memory: totals of every tenant need an owner login'
                using errcode = 'ME017', hint = 'name your tenant: memory.stats(''acme'')';
        end if;
    else
        perform memory._tenant_guard(stats.tenant);
    end if;
    return query
        select s.tenant_id,
               count(*),
               count(*) filter (where s.deleted_at is null),
               coalesce(sum(s.message_count), 0)::bigint,
               coalesce(sum(s.token_count), 0)::bigint,
               max(s.updated_at)
          from memory.sessions as s
         where stats.tenant is null or s.tenant_id = stats.tenant
         group by s.tenant_id
         order by s.tenant_id;
end;
$fn$;

comment on function memory.stats(text) is
$$Return per tenant (all tenants, or only `tenant`): sessions, live (not
deleted) sessions, retained messages, their tokens and the last append time.
Reads the session counters, never scans messages. All tenants need an owner
login; one tenant, a transaction acting for it. Errors: ME017.
Example: select * from memory.stats('acme');$$;

-------------------------------------------------------------------------------
-- _maintenance_lock: the advisory lock key of maintenance runs.
create or replace function memory._maintenance_lock()
returns bigint
language sql
immutable parallel safe security invoker
set search_path = pg_catalog, pg_temp
return 7021843002;

comment on function memory._maintenance_lock() is
$$The transaction advisory lock key that memory.maintain and
memory.maintain_if_due hold, so that maintenance runs one at a time.$$;

-------------------------------------------------------------------------------
-- _settle_removed_turns: a session after its oldest turns went.
create or replace function memory._settle_removed_turns(
    tenant       text,
    session      text,
    cut          bigint,
    tokens       bigint,
    unsummarized bigint
)
returns void
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_last bigint;
begin
    update memory.sessions as s
       set first_seq = _settle_removed_turns.cut,
           message_count = s.last_seq - _settle_removed_turns.cut + 1,
           token_count = s.token_count - _settle_removed_turns.tokens,
           unsummarized_tokens = greatest(s.unsummarized_tokens
                                          - _settle_removed_turns.unsummarized, 0),
           summarized_upto = greatest(s.summarized_upto, _settle_removed_turns.cut - 1)
     where s.tenant_id = _settle_removed_turns.tenant
       and s.session_id = _settle_removed_turns.session
    returning s.last_seq into v_last;
    -- What only described the removed turns goes with them.
    delete from memory.summaries as d
     where d.tenant_id = _settle_removed_turns.tenant
       and d.session_id = _settle_removed_turns.session
       and d.seq_to < _settle_removed_turns.cut;
    delete from memory.idempotency_keys as k
     where k.tenant_id = _settle_removed_turns.tenant
       and k.session_id = _settle_removed_turns.session
       and k.seq < _settle_removed_turns.cut;
    -- Term statistics counted them (memory.count_terms counts again).
    delete from memory.term_stats as t
     where t.tenant_id = _settle_removed_turns.tenant
       and t.session_id = _settle_removed_turns.session;
    if _settle_removed_turns.cut > v_last then
        delete from memory.jobs as j
         where j.tenant_id = _settle_removed_turns.tenant
           and j.session_id = _settle_removed_turns.session
           and j.status = 'done';
    end if;
end;
$fn$;

comment on function memory._settle_removed_turns(text, text, bigint, bigint, bigint) is
$$After retention removed a session's turns below seq `cut` (`tokens` in all,
`unsummarized` of them not yet in a digest): move first_seq and the counters,
and delete the digests that only covered removed turns, their idempotency
keys and, when the session is left empty, its finished jobs. The caller holds
the session row lock.$$;

-------------------------------------------------------------------------------
-- _drop_expired_partitions: retention by whole partitions, where it can be.
create or replace function memory._drop_expired_partitions(
    as_of timestamptz
)
returns bigint
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
-- Dropping a partition locks memory.messages: wait at most 2 s, then fail
-- (the next run tries again).
set lock_timeout = '2s'
as $fn$
#variable_conflict use_column
declare
    v_cutoff    timestamptz;
    v_partition record;
    v_session   record;
    v_counters  record;
    v_gone      record;
    v_removed   bigint := 0;
    v_dropping  text[] := '{}';
    v_name      text;
begin
    -- Only what is past every tenant's retention: none when a tenant that
    -- holds sessions keeps its messages.
    if exists (select from memory.sessions as s
                left join memory.tenants as t on t.tenant_id = s.tenant_id
                where t.retention is null) then
        return 0;
    end if;
    select _drop_expired_partitions.as_of - max(t.retention)
      into v_cutoff
      from memory.tenants as t
     where exists (select from memory.sessions as s where s.tenant_id = t.tenant_id);
    if v_cutoff is null then
        return 0;
    end if;
    for v_partition in
        select p.partition_name, p.range_from, p.range_to
          from memory.partitions() as p
         where not p.is_default
           and p.range_to <= v_cutoff
         order by p.range_from
    loop
        -- Each session loses a prefix of its turns: every turn up to the
        -- newest one in this partition (a turn outside it that is older by seq
        -- goes too, so that no gap is left).
        for v_session in
            execute format('select p.tenant_id, p.session_id, max(p.seq) + 1 as cut,
                                   count(*) as n
                              from memory.%I as p
                             group by p.tenant_id, p.session_id', v_partition.partition_name)
        loop
            select s.first_seq, s.summarized_upto
              into v_counters
              from memory.sessions as s
             where s.tenant_id = v_session.tenant_id
               and s.session_id = v_session.session_id
               for update;
            -- Turns an earlier partition of this run already settled (they
            -- wait for their drop) are below first_seq and not counted again.
            continue when v_session.cut <= v_counters.first_seq;
            select count(*) as n, coalesce(sum(m.tokens), 0) as tokens,
                   coalesce(sum(m.tokens) filter (where m.seq > v_counters.summarized_upto), 0)
                       as unsummarized,
                   min(m.seq) as seq_from
              into v_gone
              from memory.messages as m
             where m.tenant_id = v_session.tenant_id
               and m.session_id = v_session.session_id
               and m.seq >= v_counters.first_seq
               and m.seq < v_session.cut;
            delete from memory.messages as m
             where m.tenant_id = v_session.tenant_id
               and m.session_id = v_session.session_id
               and m.seq >= v_counters.first_seq
               and m.seq < v_session.cut
               and not (m.created_at >= v_partition.range_from
                        and m.created_at < v_partition.range_to);
            perform memory._settle_removed_turns(v_session.tenant_id, v_session.session_id,
                                                 v_session.cut, v_gone.tokens,
                                                 v_gone.unsummarized);
            -- A dropped table fires no delete trigger: the audit row is ours
            -- (turns deleted outside the partition were audited by it).
            perform memory._audit(v_session.tenant_id, 'messages.delete', 'session',
                                  v_session.session_id,
                                  jsonb_build_object('count', v_session.n,
                                                     'seq_from', v_gone.seq_from,
                                                     'seq_to', v_session.cut - 1,
                                                     'partition', v_partition.partition_name));
            v_removed := v_removed + v_gone.n;
        end loop;
        v_dropping := v_dropping || v_partition.partition_name;
    end loop;
    -- The drops come last: a drop locks memory.messages, and an append that
    -- waits for it may hold a session row this function would lock next.
    foreach v_name in array v_dropping loop
        execute format('drop table memory.%I', v_name);
    end loop;
    return v_removed;
end;
$fn$;

comment on function memory._drop_expired_partitions(timestamptz) is
$$Retention by whole partitions: when every tenant that holds sessions has a
retention, drop the partitions of memory.messages that end before `as_of`
minus the longest one, after settling each session (memory._settle_removed_turns:
first_seq, counters, digests, idempotency keys, finished jobs of emptied
sessions; any older turn outside the partition goes too, so no gap is left)
and auditing counts and seq ranges; the drops come after every session is settled (a drop locks
memory.messages, and an append waiting for it may hold a session row).
Waits at most 2 s for the table lock. Returns the turns removed.$$;

-------------------------------------------------------------------------------
-- _remove_old_turns: the retention of tenants that set one.
create or replace function memory._remove_old_turns(
    as_of    timestamptz,
    max_rows bigint
)
returns bigint
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_target  record;
    v_session record;
    v_cut     bigint;
    v_gone    record;
    v_removed bigint := 0;
begin
    for v_target in
        select s.tenant_id, s.session_id, _remove_old_turns.as_of - t.retention as cutoff
          from memory.tenants as t
          join memory.sessions as s on s.tenant_id = t.tenant_id
         where t.retention is not null
           and s.message_count > 0
           and exists (select from memory.messages as m
                        where m.tenant_id = s.tenant_id
                          and m.session_id = s.session_id
                          and m.seq = s.first_seq
                          and m.created_at < _remove_old_turns.as_of - t.retention)
         order by s.tenant_id, s.session_id
    loop
        exit when v_removed >= max_rows;
        -- The row lock appends take: they wait, and the counters stay right.
        select s.first_seq, s.last_seq, s.summarized_upto
          into v_session
          from memory.sessions as s
         where s.tenant_id = v_target.tenant_id
           and s.session_id = v_target.session_id
           for update;
        -- Turns go from the oldest up to the first one inside the window
        -- (seq order; created_at may invert by milliseconds under concurrency).
        select coalesce(min(m.seq), v_session.last_seq + 1)
          into v_cut
          from memory.messages as m
         where m.tenant_id = v_target.tenant_id
           and m.session_id = v_target.session_id
           and m.seq >= v_session.first_seq
           and m.created_at >= v_target.cutoff;
        continue when v_cut <= v_session.first_seq;
        with gone as (
            delete from memory.messages as m
             where m.tenant_id = v_target.tenant_id
               and m.session_id = v_target.session_id
               and m.seq < v_cut
            returning m.seq, m.tokens
        )
        select count(*) as n,
               coalesce(sum(g.tokens), 0) as tokens,
               coalesce(sum(g.tokens) filter (where g.seq > v_session.summarized_upto), 0)
                   as unsummarized
          into v_gone
          from gone as g;
        perform memory._settle_removed_turns(v_target.tenant_id, v_target.session_id, v_cut,
                                             v_gone.tokens, v_gone.unsummarized);
        v_removed := v_removed + v_gone.n;
    end loop;
    return v_removed;
end;
$fn$;

comment on function memory._remove_old_turns(timestamptz, bigint) is
$$Apply each tenant's retention at `as_of`: per session, under its row lock,
delete the turns older than the retention (from the oldest up to the first
one inside the window), with the digests that only covered them, their
idempotency keys and, for sessions left empty, finished jobs; move first_seq
and the counters. The delete trigger audits counts and seq ranges. Stops
after about `max_rows` turns; returns how many it removed.$$;

-------------------------------------------------------------------------------
-- _check_every: how often scheduled maintenance may run.
create or replace function memory._check_every(
    every interval
)
returns void
language plpgsql
immutable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if _check_every.every is null or _check_every.every < interval '1 minute' then
        raise exception 'memory: every must be at least one minute, got %', _check_every.every
            using errcode = 'ME002', hint = 'an hour suits most installations';
    end if;
end;
$fn$;

comment on function memory._check_every(interval) is
$$Raise ME002 unless `every`, the period of scheduled maintenance
(maintain_if_due, maintain_in_steps, maintenance_job), is a minute or more.$$;

-------------------------------------------------------------------------------
-- _maintenance_due: whether a scheduled run should go ahead.
create or replace function memory._maintenance_due(
    every interval
)
returns boolean
language sql
stable security definer
set search_path = pg_catalog, pg_temp
begin atomic
    select not exists (select from memory.task_runs as r
                        where r.task = 'maintain'
                          and r.finished_at > now() - _maintenance_due.every);
end;

comment on function memory._maintenance_due(interval) is
$$True unless a maintenance run finished less than `every` ago (null: always
due). Used by memory.maintain_if_due and memory.maintain_in_steps.$$;

-------------------------------------------------------------------------------
-- _maintenance_step: one step of the periodic housekeeping.
create or replace function memory._maintenance_step(
    step  text,
    as_of timestamptz,
    batch integer
)
returns table (
    next_step          text,
    partitions_created text[],
    sessions_expired   integer,
    messages_removed   bigint
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_count bigint;
begin
    -- The steps, in order: partitions ahead (pg_partman), expired sessions in
    -- batches, whole partitions past every tenant's retention, then turns
    -- past their tenant's retention in batches. A batch step repeats until
    -- it finds nothing; null ends the run.
    case _maintenance_step.step
    when 'partitions' then
        return query
            select 'expire'::text, coalesce(array_agg(p), '{}'), 0, 0::bigint
              from memory.maintain_partitions() as p;
    when 'expire' then
        v_count := memory.purge_expired(_maintenance_step.as_of, _maintenance_step.batch);
        return query
            select case when v_count > 0 then 'expire' else 'drop' end,
                   '{}'::text[], v_count::integer, 0::bigint;
    when 'drop' then
        return query
            select 'retention'::text, '{}'::text[], 0,
                   memory._drop_expired_partitions(_maintenance_step.as_of);
    when 'retention' then
        v_count := memory._remove_old_turns(_maintenance_step.as_of,
                                            _maintenance_step.batch * 10);
        return query
            select case when v_count > 0 then 'retention' end,
                   '{}'::text[], 0, v_count;
    else
        raise exception 'memory: unknown maintenance step %', _maintenance_step.step
            using errcode = 'ME002', hint = 'the first step is partitions';
    end case;
end;
$fn$;

comment on function memory._maintenance_step(text, timestamptz, integer) is
$$Run one step of maintenance at `as_of` and name the next (null: done):
partitions, expire (up to `batch` sessions), drop (whole expired
partitions), retention (about 10 × `batch` turns). memory.maintain runs
them all in one transaction; memory.maintain_in_steps commits after each.$$;

-------------------------------------------------------------------------------
-- maintain: the periodic housekeeping in one call.
drop function if exists memory.maintain_if_due(interval, integer);
drop function if exists memory.maintain(integer, timestamptz);
create or replace function memory.maintain(
    months_ahead integer default 3,
    as_of        timestamptz default now()
)
returns table (
    partitions_created text[],
    sessions_expired   integer,
    messages_removed   bigint
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_started timestamptz := clock_timestamp();
    v_step    text := 'partitions';
    v_done    record;
    v_created text[] := '{}';
    v_expired integer := 0;
    v_removed bigint := 0;
begin
    -- One run at a time: a second one waits for the first to commit.
    perform pg_advisory_xact_lock(memory._maintenance_lock());
    while v_step is not null loop
        select * into v_done
          from memory._maintenance_step(v_step, maintain.as_of, 1000) as d;
        v_step := v_done.next_step;
        v_created := v_created || v_done.partitions_created;
        v_expired := v_expired + v_done.sessions_expired;
        v_removed := v_removed + v_done.messages_removed;
    end loop;
    perform memory._record_task('maintain', v_started,
                                jsonb_build_object('partitions_created', cardinality(v_created),
                                                   'sessions_expired', v_expired,
                                                   'messages_removed', v_removed));
    return query select v_created, v_expired, v_removed;
end;
$fn$;

comment on function memory.maintain(integer, timestamptz) is
$$Run housekeeping in one transaction (memory._maintenance_step): partition
maintenance (memory.maintain_partitions: partitions ahead, rows out of the
default partition), purge every expired session, remove turns past their
tenant's retention (memory.configure_tenant: whole partitions when every
tenant's retention has passed them, else row by row), and record the run for
memory.metrics(). One run at a time (a second waits). Sessions it trims wait
for its commit: over a large backlog prefer `call memory.maintain_in_steps()`,
which commits after each step. `months_ahead` is ignored since pg_partman's
premake decides (kept for one release); `as_of` is the time expiry and
retention are judged at (tests move the clock with it).
Example: select * from memory.maintain();$$;

-------------------------------------------------------------------------------
-- maintain_in_steps: the same housekeeping, committed step by step.
create or replace procedure memory.maintain_in_steps(
    every                  interval default null,
    as_of                  timestamptz default null,
    inout ran                boolean default null,
    inout partitions_created text[] default null,
    inout sessions_expired   integer default null,
    inout messages_removed   bigint default null
)
language plpgsql
-- A procedure may commit only when it is security invoker and sets nothing,
-- so every name below is schema-qualified instead of a pinned search_path.
as $fn$
declare
    v_lock    constant bigint := memory._maintenance_lock();
    v_started timestamptz := pg_catalog.clock_timestamp();
    v_step    text := 'partitions';
    v_done    record;
begin
    -- Fails here, holding nothing, when called inside a transaction block.
    commit;
    ran := false;
    partitions_created := '{}';
    sessions_expired := 0;
    messages_removed := 0;
    if maintain_in_steps.every is not null then
        perform memory._check_every(maintain_in_steps.every);
    end if;
    -- A session lock, as the run spans transactions. With `every`, a run in
    -- progress elsewhere means nothing to do; without, wait for it.
    if maintain_in_steps.every is null then
        perform pg_catalog.pg_advisory_lock(v_lock);
    elsif not pg_catalog.pg_try_advisory_lock(v_lock) then
        return;
    end if;
    if not memory._maintenance_due(maintain_in_steps.every) then
        perform pg_catalog.pg_advisory_unlock(v_lock);
        return;
    end if;
    while v_step is not null loop
        begin
            select * into v_done
              from memory._maintenance_step(
                       v_step, coalesce(maintain_in_steps.as_of, pg_catalog.now()), 100) as d;
        exception when others or query_canceled then
            -- A session lock outlives the failed transaction: let it go
            -- (query_canceled, a statement timeout, is not among others).
            perform pg_catalog.pg_advisory_unlock(v_lock);
            raise;
        end;
        commit;
        v_step := v_done.next_step;
        partitions_created := partitions_created || v_done.partitions_created;
        sessions_expired := sessions_expired + v_done.sessions_expired;
        messages_removed := messages_removed + v_done.messages_removed;
    end loop;
    perform memory._record_task('maintain', v_started,
                                pg_catalog.jsonb_build_object(
                                    'partitions_created',
                                    pg_catalog.cardinality(partitions_created),
                                    'sessions_expired', sessions_expired,
                                    'messages_removed', messages_removed,
                                    'in_steps', true));
    commit;
    perform pg_catalog.pg_advisory_unlock(v_lock);
    ran := true;
end;
$fn$;

comment on procedure memory.maintain_in_steps(interval, timestamptz, boolean, text[], integer, bigint) is
$$Run the housekeeping of memory.maintain, committing after every step (up
to 100 expired sessions, or about 1,000 turns past retention), so that a
session it trims waits only for that step. With `every`, run only when no run
finished within `every` and none is in progress (like maintain_if_due);
without, wait for a run in progress, then run. Call it outside a transaction
block (autocommit); the pg_cron job of memory.schedule_maintenance and
`pymem worker` do. Returns whether it ran, the partitions created, the
sessions purged and the turns removed. Errors: ME002 when `every` is under a minute; 2D000 inside a
transaction block.
Example: call memory.maintain_in_steps();$$;

-------------------------------------------------------------------------------
-- maintain_if_due: maintenance for schedulers that run in many places.
create or replace function memory.maintain_if_due(
    every        interval default '1 hour',
    months_ahead integer default 3
)
returns table (
    ran                boolean,
    partitions_created text[],
    sessions_expired   integer,
    messages_removed   bigint
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
begin
    perform memory._check_every(maintain_if_due.every);
    -- Another instance is maintaining right now: nothing to do here.
    if not pg_try_advisory_xact_lock(memory._maintenance_lock()) then
        return query select false, '{}'::text[], 0, 0::bigint;
        return;
    end if;
    if not memory._maintenance_due(maintain_if_due.every) then
        return query select false, '{}'::text[], 0, 0::bigint;
        return;
    end if;
    return query
        select true, m.partitions_created, m.sessions_expired, m.messages_removed
          from memory.maintain(maintain_if_due.months_ahead) as m;
end;
$fn$;

comment on function memory.maintain_if_due(interval, integer) is
$$Run memory.maintain unless it finished less than `every` ago or another
session is running it now; returns whether it ran and what it did. Like
`call memory.maintain_in_steps(every)` (what `pymem worker` and pg_cron's job
run), but in one transaction, for callers inside one. Errors: ME002 when
`every` is under a minute.
Example: select * from memory.maintain_if_due('1 hour');$$;
