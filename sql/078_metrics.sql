-- What only the database knows, as figures for monitoring: memory.metrics()
-- (read by `pymem exporter`, postgres_exporter or any SQL client) and the log
-- of scheduled tasks it reports (memory.task_runs).

-------------------------------------------------------------------------------
-- _record_task: note that a scheduled task finished.
create or replace function memory._record_task(
    task    text,
    started timestamptz,
    detail  jsonb default '{}'::jsonb
)
returns void
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
begin
    -- A read-only transaction (a hot standby, an auditor's read-only
    -- session) still gets its answer; it just leaves no record.
    if current_setting('transaction_read_only')::boolean then
        return;
    end if;
    insert into memory.task_runs as r (task, finished_at, seconds, detail)
    values (_record_task.task, clock_timestamp(),
            extract(epoch from clock_timestamp() - _record_task.started),
            coalesce(_record_task.detail, '{}'::jsonb))
    on conflict (task) do update
       set finished_at = excluded.finished_at,
           seconds = excluded.seconds,
           detail = excluded.detail;
end;
$fn$;

comment on function memory._record_task(text, timestamptz, jsonb) is
$$Record that `task` (maintain, verify_audit) finished, with its duration
since `started` and what it found; memory.metrics() reports the last run.
Does nothing in a read-only transaction.$$;

-------------------------------------------------------------------------------
-- metrics: one row per series, named and labelled as Prometheus shows it.
create or replace function memory.metrics(
    per_tenant boolean default false
)
returns table (
    metric      text,
    labels      jsonb,
    value       double precision,
    description text
)
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_now timestamptz := now();
begin
    -- Sessions, messages and tokens: the session counters, never a scan of
    -- messages. One row per tenant when asked, else totals (tenant '').
    return query
        with by_tenant as (
            select jsonb_build_object('tenant', s.tenant_id) as labels,
                   count(*) filter (where s.deleted_at is null) as live,
                   coalesce(sum(s.message_count), 0) as messages,
                   coalesce(sum(s.token_count), 0) as tokens
              from memory.sessions as s
             where metrics.per_tenant
             group by s.tenant_id
        ),
        overall as (  -- one row, zeros included, without a tenant label
            select '{}'::jsonb as labels,
                   count(*) filter (where s.deleted_at is null) as live,
                   coalesce(sum(s.message_count), 0) as messages,
                   coalesce(sum(s.token_count), 0) as tokens
              from memory.sessions as s
             where not metrics.per_tenant
            having not metrics.per_tenant
        ),
        totals as (
            select * from by_tenant
            union all
            select * from overall
        )
        select m.metric, t.labels, m.value, m.description
          from totals as t
         cross join lateral (values
               ('pymem_db_sessions', t.live::double precision,
                'Live (not deleted) sessions.'),
               ('pymem_db_messages', t.messages::double precision,
                'Messages retained.'),
               ('pymem_db_tokens', t.tokens::double precision,
                'Tokens of the messages retained.')) as m (metric, value, description);

    return query
        select 'pymem_db_tenants', '{}'::jsonb, count(*)::double precision,
               'Tenants known to the database.'::text
          from memory.tenants;

    -- The job queue: depth by kind and status, and how long the oldest ready
    -- job has waited (0 when none waits). Every kind and status is listed,
    -- so a series is there before the first job.
    return query
        select 'pymem_db_jobs', jsonb_build_object('kind', k.kind, 'status', st.status),
               count(j.kind)::double precision,
               'Background jobs, by kind and status (queued, running, done, parked).'::text
          from unnest(array['summarize', 'embed', 'count_terms']) as k (kind)
         cross join unnest(array['queued', 'running', 'done', 'parked']) as st (status)
          left join memory.jobs as j
            on j.kind = k.kind
           and j.status = st.status
         group by k.kind, st.status;
    return query
        select 'pymem_db_job_oldest_ready_age_seconds', jsonb_build_object('kind', k.kind),
               coalesce(extract(epoch from v_now - min(j.run_after)), 0)::double precision,
               'Seconds the oldest queued job that is due has waited for a worker.'::text
          from unnest(array['summarize', 'embed', 'count_terms']) as k (kind)
          left join memory.jobs as j
            on j.kind = k.kind
           and j.status = 'queued'
           and j.run_after <= v_now
         group by k.kind;

    -- Partitions: rows that fell into the default partition (none should)
    -- and how far ahead the ranged partitions reach.
    return query
        select 'pymem_db_default_partition_rows', '{}'::jsonb,
               (select count(*) from (select 1 from memory.messages_default limit 1000000) as d
               )::double precision,
               'Rows in memory.messages_default (counted up to 1,000,000); none belong there.'::text;
    return query
        select 'pymem_db_partitions_ahead', '{}'::jsonb,
               count(*) filter (where p.range_from > v_now)::double precision,
               'Partitions of memory.messages that start after now.'::text
          from memory.partitions() as p;
    return query
        select 'pymem_db_partition_horizon_seconds', '{}'::jsonb,
               greatest(coalesce(extract(epoch from max(p.range_to) - v_now), 0), 0)::double precision,
               'Seconds until appends run past the last ranged partition.'::text
          from memory.partitions() as p;

    -- Scheduled tasks: when each last finished (0: never) and what it found.
    return query
        select 'pymem_db_task_last_success_timestamp_seconds', jsonb_build_object('task', k.task),
               coalesce(extract(epoch from r.finished_at), 0)::double precision,
               'When the task (maintain, verify_audit) last finished, as a Unix time.'::text
          from unnest(array['maintain', 'verify_audit']) as k (task)
          left join memory.task_runs as r on r.task = k.task;
    return query
        select 'pymem_db_audit_chains_broken', '{}'::jsonb,
               coalesce((r.detail ->> 'broken')::double precision, 0),
               'Tenant audit chains that the last memory.verify_audit() found broken.'::text
          from (select 1) as one
          left join memory.task_runs as r on r.task = 'verify_audit';
    return query
        select 'pymem_db_audit_chains', '{}'::jsonb, count(*)::double precision,
               'Tenant audit chains (one per tenant with audited actions).'::text
          from memory.audit_heads;

    -- Encryption: sessions whose rows are not yet under their tenant's
    -- target key (memory.reencrypt walks them), and the tenants concerned.
    return query
        with pending as (
            select s.tenant_id
              from memory.sessions as s
              join memory.tenants as t on t.tenant_id = s.tenant_id
              left join lateral (select max(k.key_version) as version
                                   from memory.tenant_keys as k
                                  where k.tenant_id = s.tenant_id
                                    and k.retired_at is null) as a on true
             where case when t.encryption = 'none' then s.key_version is not null
                        else s.key_version is null or s.key_version < a.version end
        )
        select m.metric, '{}'::jsonb, m.value, m.description
          from (select count(*) as sessions, count(distinct p.tenant_id) as tenants
                  from pending as p) as c
         cross join lateral (values
               ('pymem_db_key_rotations_in_progress', c.tenants::double precision,
                'Tenants with sessions not yet re-encrypted under their active key.'),
               ('pymem_db_sessions_to_reencrypt', c.sessions::double precision,
                'Sessions whose rows memory.reencrypt has still to bring to the active key.')
               ) as m (metric, value, description);
end;
$fn$;

comment on function memory.metrics(boolean) is
$$Return pymem's database figures, one row per series: `metric` (a Prometheus
name), `labels` (a JSON object: a job's kind and status, a task, the tenant
when `per_tenant`), `value` and a one-line `description`. Sessions, messages and tokens (per tenant when asked, from the
session counters); tenants; jobs by kind and status and the age of the oldest
due job; rows in the default partition, partitions ahead and the seconds of
partition horizon left; the last finish of maintain and verify_audit (0:
never) and the chains verify_audit last found broken; audit chains; key
rotations in progress and the sessions they still have to re-encrypt.
Reads counters and small tables; the largest scan is one pass over
memory.sessions. For pymem_monitor logins (`pymem exporter`, postgres_exporter).
Example: select metric, labels, value from memory.metrics();$$;
