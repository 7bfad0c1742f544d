-- Observability: a role for monitoring logins, the last run of each scheduled
-- task, and the trace context a queued job carries to the worker.
--
--   pymem_monitor   monitoring logins (`pymem exporter`, postgres_exporter):
--                   EXECUTE on memory.metrics() only; figures, never content.
--
-- memory.task_runs holds one row per scheduled task (maintain, verify_audit):
-- when it last finished, how long it took and what it found; memory.metrics()
-- reports it so that an alert fires when maintenance stops running.
-- memory.jobs.trace_context holds the W3C traceparent of the append that
-- queued the job, so that the worker's span continues that trace.
--
-- Locks: ACCESS EXCLUSIVE on memory.jobs for the catalog change only (a
-- nullable column without a default: no rewrite).
-- depends: pymem_0008_add_pii_policy
do $roles$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'pymem_monitor') then
        create role pymem_monitor nologin;
    end if;
end;
$roles$;

create table memory.task_runs (
    task        text primary key,
    finished_at timestamptz not null,
    seconds     double precision not null,
    detail      jsonb not null default '{}'::jsonb,
    constraint task_runs_task_known check (task in ('maintain', 'verify_audit')),
    constraint task_runs_detail_object check (jsonb_typeof(detail) = 'object')
);
alter table memory.task_runs owner to pymem_owner;
alter table memory.task_runs enable row level security;
alter table memory.task_runs force row level security;

alter table memory.jobs add column trace_context text;
alter table memory.jobs
    add constraint jobs_trace_context_short check (length(trace_context) <= 256) not valid;
alter table memory.jobs validate constraint jobs_trace_context_short;
