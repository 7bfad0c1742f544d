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
-- maintain: the periodic housekeeping in one call.
create or replace function memory.maintain(
    months_ahead integer default 3,
    as_of        timestamptz default now()
)
returns table (
    partitions_created text[],
    sessions_expired   integer
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_started timestamptz := clock_timestamp();
    v_created text[];
    v_expired integer := 0;
    v_batch   integer;
begin
    -- One run at a time: a second one waits for the first to commit.
    perform pg_advisory_xact_lock(memory._maintenance_lock());
    select coalesce(array_agg(p), '{}')
      into v_created
      from memory.maintain_partitions() as p;
    loop
        v_batch := memory.purge_expired(maintain.as_of, 1000);
        v_expired := v_expired + v_batch;
        exit when v_batch = 0;
    end loop;
    perform memory._record_task('maintain', v_started,
                                jsonb_build_object('partitions_created', cardinality(v_created),
                                                   'sessions_expired', v_expired));
    return query select v_created, v_expired;
end;
$fn$;

comment on function memory.maintain(integer, timestamptz) is
$$Run housekeeping: partition maintenance (memory.maintain_partitions:
partitions ahead, rows out of the default partition, retention), then purge
every expired session, and record the run for memory.metrics(). One run at a
time (a second waits). `months_ahead` is ignored since pg_partman's premake
decides (kept for one release); `as_of` is the time expiry is judged at.
A running `pymem worker` calls it hourly (memory.maintain_if_due).
Example: select * from memory.maintain();$$;

-------------------------------------------------------------------------------
-- maintain_if_due: maintenance for schedulers that run in many places.
create or replace function memory.maintain_if_due(
    every        interval default '1 hour',
    months_ahead integer default 3
)
returns table (
    ran                boolean,
    partitions_created text[],
    sessions_expired   integer
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
begin
    if maintain_if_due.every is null or maintain_if_due.every < interval '1 minute' then
        raise exception 'memory: every must be at least one minute, got %', maintain_if_due.every
            using errcode = 'ME002', hint = 'an hour suits most installations';
    end if;
    -- Another instance is maintaining right now: nothing to do here.
    if not pg_try_advisory_xact_lock(memory._maintenance_lock()) then
        return query select false, '{}'::text[], 0;
        return;
    end if;
    if exists (select from memory.task_runs as r
                where r.task = 'maintain'
                  and r.finished_at > now() - maintain_if_due.every) then
        return query select false, '{}'::text[], 0;
        return;
    end if;
    return query
        select true, m.partitions_created, m.sessions_expired
          from memory.maintain(maintain_if_due.months_ahead) as m;
end;
$fn$;

comment on function memory.maintain_if_due(interval, integer) is
$$Run memory.maintain unless it finished less than `every` ago or another
session is running it now; returns whether it ran and what it did. Every
`pymem worker` calls it (hourly by default), so with several workers
maintenance still runs once per period. Errors: ME002 when `every` is under a
minute.
Example: select * from memory.maintain_if_due('1 hour');$$;
