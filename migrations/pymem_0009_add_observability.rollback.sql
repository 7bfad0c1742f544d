-- Drops the task log and the jobs' trace context. The role pymem_monitor
-- stays: roles are cluster-wide and may serve other databases.
alter table memory.jobs drop constraint jobs_trace_context_short;
alter table memory.jobs drop column trace_context;
drop table memory.task_runs;
