-- The job queue for background work (summaries, embeddings).
-- One row per (tenant, session, kind): enqueueing coalesces. Workers claim
-- with `for update skip locked` under a lease; a worker that dies leaves its
-- lease to expire and the job comes back. Workers wake on LISTEN pymem_jobs.

-------------------------------------------------------------------------------
-- _enqueue: ask for work on a session (a no-op when already queued or running).
drop function if exists memory._enqueue(text, text, text);
create or replace function memory._enqueue(
    tenant        text,
    session       text,
    kind          text,
    trace_context text default null
)
returns void
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_changed integer;
    v_now     timestamptz := now(); -- a value: Citus wants DO UPDATE immutable
begin
    -- Nothing to do while the job waits or runs: a read, not the upsert below,
    -- which would lock (and write WAL for) the job row on every append.
    if exists (select
                 from memory.jobs as j
                where j.tenant_id = _enqueue.tenant
                  and j.session_id = _enqueue.session
                  and j.kind = _enqueue.kind
                  and j.status <> 'done') then
        return;
    end if;
    insert into memory.jobs as j (tenant_id, session_id, kind, trace_context)
    values (_enqueue.tenant, _enqueue.session, _enqueue.kind, _enqueue.trace_context)
    on conflict (tenant_id, session_id, kind) do update
       set status = 'queued',
           attempts = 0,
           run_after = v_now,
           last_error = null,
           trace_context = excluded.trace_context,
           updated_at = v_now
     where j.status = 'done';
    get diagnostics v_changed = row_count;
    if v_changed > 0 then
        perform pg_notify('pymem_jobs', _enqueue.kind);
    end if;
end;
$fn$;

comment on function memory._enqueue(text, text, text, text) is
$$Queue `kind` work ('summarize', 'embed' or 'count_terms') for a session and NOTIFY
pymem_jobs, keeping `trace_context` (the W3C traceparent of the append that
asked) for the worker's span. Queued and running jobs are left alone (a
finishing worker checks for new work); parked jobs wait for memory.retry_job.$$;

-------------------------------------------------------------------------------
-- claim_jobs: take up to `max_jobs` ready jobs for one worker.
drop function if exists memory.claim_jobs(text, text[], integer, interval);
create or replace function memory.claim_jobs(
    worker   text,
    kinds    text[] default array['summarize', 'embed', 'count_terms'],
    max_jobs integer default 1,
    lease    interval default '5 minutes'
)
returns table (
    tenant_id     text,
    session_id    text,
    kind          text,
    attempts      integer,
    trace_context text
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_now     timestamptz := now();
    v_until   timestamptz;
    v_claimed integer := 0;
    v_job     record;
begin
    perform memory._check_ident('worker', claim_jobs.worker);
    if max_jobs is null or max_jobs < 1 or max_jobs > 1000
       or lease is null or lease <= interval '0' then
        raise exception 'memory: max_jobs must be 1..1000 and lease positive'
            using errcode = 'ME002', hint = 'claim a few jobs at a time with a lease longer than one job';
    end if;
    v_until := v_now + claim_jobs.lease;
    -- Due jobs are found with a plain read across tenants, then claimed one
    -- at a time within their tenant: the row is locked only if no other
    -- worker holds it (skip locked) and is still due, so two workers never
    -- claim the same job. (One lock spanning tenants is one Citus cannot
    -- take.) Candidates are read beyond max_jobs for the ones others take.
    for v_job in
        select j.tenant_id, j.session_id, j.kind
          from memory.jobs as j
         where j.kind = any (claim_jobs.kinds)
           and ((j.status = 'queued' and j.run_after <= v_now)
                or (j.status = 'running' and j.locked_until < v_now))
         order by j.run_after
         limit claim_jobs.max_jobs * 4
    loop
        perform
           from memory.jobs as j
          where j.tenant_id = v_job.tenant_id
            and j.session_id = v_job.session_id
            and j.kind = v_job.kind
            and ((j.status = 'queued' and j.run_after <= v_now)
                 or (j.status = 'running' and j.locked_until < v_now))
            for update skip locked;
        continue when not found;
        return query
            update memory.jobs as j
               set status = 'running',
                   attempts = j.attempts + 1,
                   locked_by = claim_jobs.worker,
                   locked_until = v_until,
                   updated_at = v_now
             where j.tenant_id = v_job.tenant_id
               and j.session_id = v_job.session_id
               and j.kind = v_job.kind
            returning j.tenant_id, j.session_id, j.kind, j.attempts, j.trace_context;
        v_claimed := v_claimed + 1;
        exit when v_claimed >= claim_jobs.max_jobs;
    end loop;
end;
$fn$;

comment on function memory.claim_jobs(text, text[], integer, interval) is
$$Claim up to `max_jobs` jobs of the given kinds that are due, or whose
previous worker's lease expired (it crashed), for `worker`, leased for
`lease`. Concurrent workers never claim the same job (for update skip locked).
`trace_context` is the W3C traceparent of the append that queued the job
(null when it was not traced).
Errors: ME002 bad max_jobs or lease; ME006 bad worker name.
Example: select * from memory.claim_jobs('worker-1', array['summarize']);$$;

-------------------------------------------------------------------------------
-- complete_job: a worker finished; requeue at once if more work arrived.
create or replace function memory.complete_job(
    tenant  text,
    session text,
    kind    text,
    worker  text
)
returns text
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_more   boolean;
    v_status text;
begin
    perform memory._tenant_guard(complete_job.tenant);
    if complete_job.kind = 'summarize' then
        select s.unsummarized_tokens >= coalesce(s.summary_every_tokens, t.summary_every_tokens,
                                                 2147483647)
          into v_more
          from memory.sessions as s
          left join memory.tenants as t on t.tenant_id = s.tenant_id
         where s.tenant_id = complete_job.tenant
           and s.session_id = complete_job.session;
    elsif complete_job.kind = 'count_terms' then
        -- Another 250 turns since: memory.append queued nothing (the job was running).
        select s.last_seq - coalesce(c.last_seq, s.first_seq - 1) >= 250
          into v_more
          from memory.sessions as s
          left join memory.term_stats as c
            on c.tenant_id = s.tenant_id and c.session_id = s.session_id
         where s.tenant_id = complete_job.tenant
           and s.session_id = complete_job.session;
    else
        select exists (select 1
                         from memory.messages as m
                        where m.tenant_id = complete_job.tenant
                          and m.session_id = complete_job.session
                          and m.embedding is null)
          into v_more;
    end if;
    v_status := case when coalesce(v_more, false) then 'queued' else 'done' end;

    update memory.jobs as j
       set status = v_status,
           run_after = now(),
           attempts = 0,
           locked_by = null,
           locked_until = null,
           last_error = null,
           updated_at = now()
     where j.tenant_id = complete_job.tenant
       and j.session_id = complete_job.session
       and j.kind = complete_job.kind
       and j.status = 'running'
       and j.locked_by = complete_job.worker;
    if not found then
        raise exception 'memory: job %/%/% is not held by %', tenant, session, kind, worker
            using errcode = 'ME013',
                  hint = 'the lease expired and another worker took the job; its work is redone there';
    end if;
    if v_status = 'queued' then
        perform pg_notify('pymem_jobs', complete_job.kind);
    end if;
    return v_status;
end;
$fn$;

comment on function memory.complete_job(text, text, text, text) is
$$Mark a claimed job done, or queued again when more work arrived while it
ran; returns the new status. Errors: ME013 when `worker` no longer holds the
job (its lease expired and another worker claimed it).
Example: select memory.complete_job('acme', 's-1', 'summarize', 'worker-1');$$;

-------------------------------------------------------------------------------
-- fail_job: a worker failed; retry with backoff or park a poison job.
create or replace function memory.fail_job(
    tenant       text,
    session      text,
    kind         text,
    worker       text,
    error        text,
    max_attempts integer default 5
)
returns text
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_status   text;
    v_attempts integer;
    v_now      timestamptz := now();
begin
    perform memory._tenant_guard(fail_job.tenant);
    -- The job's attempts under its row lock, then the new state as values
    -- (Citus evaluates no time arithmetic over a column in an UPDATE).
    select j.attempts
      into v_attempts
      from memory.jobs as j
     where j.tenant_id = fail_job.tenant
       and j.session_id = fail_job.session
       and j.kind = fail_job.kind
       and j.status = 'running'
       and j.locked_by = fail_job.worker
       for update;
    if not found then
        raise exception 'memory: job %/%/% is not held by %', tenant, session, kind, worker
            using errcode = 'ME013', hint = 'the lease expired and another worker took the job';
    end if;
    v_status := case when v_attempts >= fail_job.max_attempts then 'parked' else 'queued' end;
    update memory.jobs as j
       set status = v_status,
           -- Exponential backoff: 2, 4, 8, ... seconds, at most 10 minutes.
           run_after = v_now + least(interval '10 minutes',
                                     make_interval(secs => power(2, v_attempts))),
           locked_by = null,
           locked_until = null,
           last_error = left(fail_job.error, 2000),
           updated_at = v_now
     where j.tenant_id = fail_job.tenant
       and j.session_id = fail_job.session
       and j.kind = fail_job.kind;
    return v_status;
end;
$fn$;

comment on function memory.fail_job(text, text, text, text, text, integer) is
$$Record a failed attempt: the job is queued again after 2^attempts seconds
(at most 10 minutes), or parked with its error once `max_attempts` attempts
failed. Returns the new status. Errors: ME013 job not held by `worker`.
Example: select memory.fail_job('acme', 's-1', 'summarize', 'worker-1', 'timeout');$$;

-------------------------------------------------------------------------------
-- retry_job: put a parked job back in the queue.
create or replace function memory.retry_job(
    tenant  text,
    session text,
    kind    text
)
returns boolean
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._tenant_guard(retry_job.tenant);
    update memory.jobs as j
       set status = 'queued', attempts = 0, run_after = now(), last_error = null,
           updated_at = now()
     where j.tenant_id = retry_job.tenant
       and j.session_id = retry_job.session
       and j.kind = retry_job.kind
       and j.status = 'parked';
    return found;
end;
$fn$;

comment on function memory.retry_job(text, text, text) is
$$Queue a parked job again; returns false when there was no parked job.
Example: select memory.retry_job('acme', 's-1', 'summarize');$$;

-------------------------------------------------------------------------------
-- job_stats: the queue at a glance.
create or replace function memory.job_stats()
returns table (
    kind       text,
    status     text,
    jobs       bigint,
    oldest     timestamptz
)
language sql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
    select j.kind, j.status, count(*), min(j.updated_at)
      from memory.jobs as j
     group by j.kind, j.status
     order by j.kind, j.status;
$fn$;

comment on function memory.job_stats() is
$$Count jobs by kind and status, with the oldest update time of each group.
Example: select * from memory.job_stats();$$;
