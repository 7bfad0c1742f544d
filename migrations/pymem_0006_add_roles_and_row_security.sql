-- Roles and row-level security.
--
-- Five roles (cluster-wide, created once, NOLOGIN; logins are granted them):
--   pymem_owner       owns schema memory, its tables and functions; members
--                     run migrations and may act for any tenant.
--   pymem_app         applications: EXECUTE on the API functions, no table
--                     privileges.
--   pymem_worker      background workers (with pymem_app): claim jobs across
--                     tenants, see the queue.
--   pymem_reader      read-only SQL clients: read functions and views, bound
--                     to the tenants listed in memory.tenant_grants.
--   pymem_auditor     reads and verifies the audit log of every tenant.
--
-- Every table gets row-level security, enabled and forced (the owner is held
-- to it too). The policies live in sql/900_security.sql, beside the function
-- they call (memory.current_tenant), so that re-applying sql/ always leaves
-- them in place; with RLS on and no policy a table shows nothing to anyone
-- but a superuser.
-- Needs a superuser, or a role with CREATEROLE (it creates the roles above
-- once and joins pymem_owner).
-- depends: pymem_0005_add_audit_log
do $roles$
declare
    v_role text;
begin
    foreach v_role in array array['pymem_owner', 'pymem_app', 'pymem_worker',
                                  'pymem_reader', 'pymem_auditor'] loop
        if not exists (select from pg_catalog.pg_roles where rolname = v_role) then
            execute format('create role %I nologin', v_role);
        end if;
    end loop;
    -- A DBA who is not a superuser (CREATEROLE, e.g. a managed service's admin)
    -- must belong to pymem_owner to hand it the schema below.
    if not pg_catalog.pg_has_role(current_user, 'pymem_owner', 'member') then
        execute format('grant pymem_owner to %I', current_user);
    end if;
end;
$roles$;

-- Which tenants a bound login (every pymem_reader member) may set.
create table memory.tenant_grants (
    tenant_id  text not null,
    role_name  name not null,
    granted_at timestamptz not null default now(),
    primary key (tenant_id, role_name)
);
create index tenant_grants_role_idx on memory.tenant_grants (role_name);

alter schema memory owner to pymem_owner;
revoke all on schema memory from public;

do $own$
declare
    v_rel record;
begin
    -- Tables (partitions included; identity sequences follow their table)
    -- and types change hands; only catalog names reach format(), quoted with %I.
    for v_rel in
        select c.relname, c.relkind
          from pg_catalog.pg_class as c
         where c.relnamespace = 'memory'::regnamespace
           and c.relkind in ('r', 'p')
    loop
        execute format('alter table memory.%I owner to pymem_owner', v_rel.relname);
        execute format('alter table memory.%I enable row level security', v_rel.relname);
        execute format('alter table memory.%I force row level security', v_rel.relname);
    end loop;
    for v_rel in
        select t.typname
          from pg_catalog.pg_type as t
         where t.typnamespace = 'memory'::regnamespace
           and t.typtype = 'c'
           and not exists (select from pg_catalog.pg_class as c
                            where c.oid = t.typrelid and c.relkind <> 'c')
    loop
        execute format('alter type memory.%I owner to pymem_owner', v_rel.typname);
    end loop;
end;
$own$;
