-- Maintenance scheduled by pg_cron, for installations without a running
-- `pymem worker` (which maintains on its own schedule).

-------------------------------------------------------------------------------
-- maintenance_job: the pg_cron job that maintains this database.
create or replace function memory.maintenance_job(
    every interval default '1 hour'
)
returns table (
    job_name text,
    command  text,
    database text
)
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._check_every(maintenance_job.every);
    -- The interval is printed by PostgreSQL and quoted as a literal.
    return query
        select 'pymem-maintain:' || current_database(),
               format('call memory.maintain_in_steps(every => %L::interval)',
                      maintenance_job.every::text),
               current_database()::text;
end;
$fn$;

comment on function memory.maintenance_job(interval) is
$$The pg_cron job that maintains this database: its name
('pymem-maintain:<database>'), the command it runs (memory.maintain_in_steps
with `every`, so that workers and pg_cron share one run per period) and the
database it runs in. `pymem schedule --cron-dsn` registers it from the
database that holds pg_cron; memory.schedule_maintenance does when that is
this one. Errors: ME002 when `every` is under a minute.
Example: select * from memory.maintenance_job('1 hour');$$;

-------------------------------------------------------------------------------
-- _cron_here: check that pg_cron can be called from this database.
create or replace function memory._cron_here()
returns void
language plpgsql
stable security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_cron_db text := current_setting('cron.database_name', true);
begin
    if v_cron_db is null then
        raise exception 'memory: pg_cron is not loaded on this server'
            using errcode = 'ME021',
                  hint = 'install postgresql-15-cron, set shared_preload_libraries = ''pg_cron'' '
                         'and cron.database_name, and restart; or keep a `pymem worker` '
                         'running, which maintains on its own';
    end if;
    if v_cron_db <> current_database() then
        raise exception 'memory: pg_cron runs in database %, not in %', v_cron_db, current_database()
            using errcode = 'ME021',
                  hint = format('run `pymem schedule --dsn <this database> --cron-dsn <database %s>`,'
                                ' which calls cron.schedule_in_database there', v_cron_db);
    end if;
    if not exists (select from pg_catalog.pg_extension as e where e.extname = 'pg_cron') then
        raise exception 'memory: pg_cron is loaded but its extension is not created in %',
                        current_database()
            using errcode = 'ME021', hint = 'as a superuser: create extension pg_cron';
    end if;
end;
$fn$;

comment on function memory._cron_here() is
$$Raise ME021, with what to do, unless pg_cron is loaded and its extension
lives in this database (cron.database_name).$$;

-------------------------------------------------------------------------------
-- schedule_maintenance / unschedule_maintenance: the job, in this database.
create or replace function memory.schedule_maintenance(
    schedule text default '*/5 * * * *',
    every    interval default '1 hour'
)
returns bigint
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_job record;
begin
    perform memory._cron_here();
    select * into v_job from memory.maintenance_job(schedule_maintenance.every) as j;
    -- cron.schedule replaces a job of the same name and user.
    return cron.schedule(v_job.job_name, schedule_maintenance.schedule, v_job.command);
end;
$fn$;

comment on function memory.schedule_maintenance(text, interval) is
$$Register (or replace) the pg_cron job of memory.maintenance_job: every
`schedule` (cron syntax; every 5 minutes by default) it calls
memory.maintain_in_steps(every), which runs maintenance when none finished
within `every`. Works when pg_cron lives in this database; otherwise use
`pymem schedule --cron-dsn`. The job runs as the caller, who needs pg_cron's
usage and maintenance rights (an owner or admin login). Returns the job id.
Errors: ME021 without pg_cron here (the hint says what to do); ME002 for a
bad `every`; pg_cron's own error for a bad schedule.
Example: select memory.schedule_maintenance('*/5 * * * *', '1 hour');$$;

create or replace function memory.unschedule_maintenance()
returns boolean
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_name text;
begin
    perform memory._cron_here();
    select j.job_name into v_name from memory.maintenance_job() as j;
    if not exists (select from cron.job as j
                    where j.jobname = v_name and j.username = current_user) then
        return false;
    end if;
    return cron.unschedule(v_name);
end;
$fn$;

comment on function memory.unschedule_maintenance() is
$$Remove the caller's pg_cron job of memory.schedule_maintenance; false when
there was none. Errors: ME021 without pg_cron in this database.
Example: select memory.unschedule_maintenance();$$;
