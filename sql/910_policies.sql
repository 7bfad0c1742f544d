-- Row-level security policies (the model is described in 900_security.sql).
-- Creating a policy takes an ACCESS EXCLUSIVE lock on its table, so `pymem
-- migrate` re-applies this file only when its text changed (memory.applied_sql
-- keeps each file's digest), with a short lock_timeout and retries: a run that
-- changes nothing here takes no lock on any table.

-------------------------------------------------------------------------------
-- Tenant policies: one per table, for every command, with the same test for
-- the rows read (using) and the rows written (with check). The function is
-- called, not wrapped in a subquery: Citus refuses subqueries in the policies
-- of distributed tables. Reads by tenant and session use it as an index key
-- (one call per scan); a scan without one calls it per row.
drop policy if exists tenant_isolation on memory.tenants;
create policy tenant_isolation on memory.tenants
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.sessions;
create policy tenant_isolation on memory.sessions
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.messages;
create policy tenant_isolation on memory.messages
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.idempotency_keys;
create policy tenant_isolation on memory.idempotency_keys
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.summaries;
create policy tenant_isolation on memory.summaries
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.term_stats;
create policy tenant_isolation on memory.term_stats
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.session_terms;
create policy tenant_isolation on memory.session_terms
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.jobs;
create policy tenant_isolation on memory.jobs
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.rate_limits;
create policy tenant_isolation on memory.rate_limits
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.tenant_keys;
create policy tenant_isolation on memory.tenant_keys
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.audit_log;
create policy tenant_isolation on memory.audit_log
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

drop policy if exists tenant_isolation on memory.audit_heads;
create policy tenant_isolation on memory.audit_heads
    using (tenant_id = memory.current_tenant())
    with check (tenant_id = memory.current_tenant());

-- Bindings are read by memory.current_tenant (as pymem_owner); a login may
-- see its own.
drop policy if exists own_grants on memory.tenant_grants;
create policy own_grants on memory.tenant_grants
    for select
    using (role_name = session_user);

-- The one settings row holds no tenant data (the embedding dimension).
drop policy if exists read_settings on memory.settings;
create policy read_settings on memory.settings
    for select
    using (true);

-- Auditors verify every tenant's chain.
drop policy if exists auditor_read on memory.audit_log;
create policy auditor_read on memory.audit_log
    for select to pymem_auditor
    using (true);

drop policy if exists auditor_read on memory.audit_heads;
create policy auditor_read on memory.audit_heads
    for select to pymem_auditor
    using (true);

-- The API functions (owned by pymem_owner, guarded as above) on every table;
-- partitions, reached directly only by partition maintenance, get this one
-- policy. Owner logins (members of pymem_owner) are privileged anyway: they
-- own the tables and could turn row-level security off.
do $functions$
declare
    v_table text;
begin
    for v_table in
        select c.relname
          from pg_catalog.pg_class as c
         where c.relnamespace = 'memory'::regnamespace
           and c.relkind in ('r', 'p')
         order by c.relname
    loop
        -- Catalog names only, quoted with %I.
        execute format('drop policy if exists functions on memory.%I', v_table);
        execute format('create policy functions on memory.%I to pymem_owner '
                       'using (true) with check (true)', v_table);
    end loop;
end;
$functions$;
