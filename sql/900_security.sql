-- Who may do what: tenant bindings, views for SQL clients, function owners
-- and EXECUTE grants, re-applied whenever `pymem migrate` applies anything,
-- so the privileges always match the functions of this release. The row-level
-- security policies are in 910_policies.sql.
--
-- The model: tables belong to pymem_owner and hold every role to row-level
-- security (FORCE: the owner too). A transaction acts for the tenant in the
-- setting pymem.tenant (memory.current_tenant); each tenant policy compares
-- tenant_id with it, for reads and for writes. That is the boundary for direct
-- SQL: read-only clients, auditors, and any login granted a table.
--
-- The API functions are the boundary for applications (pymem_app has no
-- table privileges). They run as pymem_owner (security definer, search_path
-- pinned), check their tenant argument against the transaction's tenant
-- before anything else (memory._tenant_guard), and name the tenant in every
-- query they run. The policy `functions` lets them past the tenant policies:
-- under a tenant policy PostgreSQL may not use an index for an operator that
-- is not leakproof (full-text @@, jsonb), and a hybrid context on a 10,000-turn
-- session took 119 ms instead of 6 ms, an append 1.4 ms instead of 0.5 ms.

-------------------------------------------------------------------------------
-- grant_tenant / revoke_tenant: bind a login to the tenants it may set.
create or replace function memory.grant_tenant(
    tenant    text,
    role_name text
)
returns boolean
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    perform memory._check_ident('tenant', grant_tenant.tenant);
    perform memory._check_ident('role_name', grant_tenant.role_name);
    if not exists (select from pg_catalog.pg_roles as r where r.rolname = grant_tenant.role_name) then
        raise exception 'memory: role % does not exist', grant_tenant.role_name
            using errcode = 'ME002', hint = 'create the login first: create role ... login in role pymem_reader';
    end if;
    insert into memory.tenant_grants as g (tenant_id, role_name)
    values (grant_tenant.tenant, grant_tenant.role_name)
    on conflict do nothing;
    return found;
end;
$fn$;

comment on function memory.grant_tenant(text, text) is
$$Let the login `role_name` act for `tenant`. A login with any grant (and every
pymem_reader member) may then set pymem.tenant only to tenants it was granted;
other tenants show it no rows. Returns false when the grant existed.
Example: select memory.grant_tenant('acme', 'bi_acme');$$;

create or replace function memory.revoke_tenant(
    tenant    text,
    role_name text
)
returns boolean
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    delete from memory.tenant_grants as g
     where g.tenant_id = revoke_tenant.tenant
       and g.role_name = revoke_tenant.role_name;
    return found;
end;
$fn$;

comment on function memory.revoke_tenant(text, text) is
$$Take back a memory.grant_tenant; returns false when there was none. Takes
effect at the login's next statement.
Example: select memory.revoke_tenant('acme', 'bi_acme');$$;

-------------------------------------------------------------------------------
-- Views for SQL clients. security_invoker: the reader's own privileges and
-- row-level security apply, so a view never widens what a login sees.
create or replace view memory.session_overview
    with (security_invoker = true) as
select s.tenant_id, s.session_id, s.user_id, s.message_count, s.token_count,
       s.created_at, s.updated_at, s.expires_at, s.deleted_at, s.metadata
  from memory.sessions as s;

comment on view memory.session_overview is
$$The sessions of the transaction's tenant (set pymem.tenant first), deleted
ones included. Example:
begin; select set_config('pymem.tenant', 'acme', true);
select * from memory.session_overview order by updated_at desc limit 20; commit;$$;

create or replace view memory.message_log
    with (security_invoker = true) as
select m.tenant_id, m.session_id, m.seq, m.role,
       memory.reveal(m.content, m.sealed, m.key_version) as content,
       m.tokens, m.metadata, m.created_at
  from memory.messages as m
  join memory.sessions as s
    on s.tenant_id = m.tenant_id
   and s.session_id = m.session_id
 where s.deleted_at is null;

comment on view memory.message_log is
$$The messages of the transaction's tenant in live sessions, decrypted when
sealed (the connection needs the master key then). Example:
begin; select set_config('pymem.tenant', 'acme', true);
select seq, role, content from memory.message_log where session_id = 's-1' order by seq; commit;$$;

-------------------------------------------------------------------------------
-- Owners and EXECUTE. Nothing is executable by PUBLIC; each role gets its list.
do $grants$
declare
    v_worker constant text[] := array[
        'claim_jobs', 'job_stats', 'maintain_if_due', 'maintain_in_steps', '_check_every',
        '_maintenance_due', '_maintenance_lock', '_maintenance_step', '_record_task'];
    -- memory.current_tenant and what it inlines (each login that reads the
    -- tables under the tenant policy runs them as itself).
    v_tenant_test constant text[] := array[
        'current_tenant', '_granted_tenant', '_privileged', '_tenant_setting'];
    v_app constant text[] := v_tenant_test || array[
        'add_summary', 'append', 'append_many', 'apply_pii_policy', 'complete_job',
        'configure_pii', 'configure_recall', 'configure_session', 'configure_tenant', 'context',
        'count_terms',
        'delete_session', 'erase_subject', 'estimate_tokens', 'export_subject', 'extend_session',
        'fail_job', 'history', 'last_messages', 'list_sessions', 'list_summaries',
        'messages_to_embed', 'pii_policy', 'pii_scan', 'pop_message', 'purge_session', 'rate_limit',
        'recall',
        'redact', 'restore_session', 'retry_job', 'reveal', 'session_info', 'set_embeddings',
        'stats', 'summary_cadence'];
    v_reader constant text[] := v_tenant_test || array[
        'context', 'estimate_tokens', 'export_subject', 'history', 'last_messages',
        'list_sessions', 'list_summaries', 'pii_scan', 'recall', 'redact', 'reveal',
        'session_info', 'stats'];
    v_auditor constant text[] := v_tenant_test || array[
        'audit_checkpoint', 'audit_hash_at', 'verify_audit'];
    v_monitor constant text[] := array['metrics'];
    v_fn record;
begin
    for v_fn in
        select p.oid::regprocedure::text as signature, p.proname::text as name
          from pg_catalog.pg_proc as p
         where p.pronamespace = 'memory'::regnamespace
           and not exists (select from pg_catalog.pg_depend as d
                            where d.objid = p.oid and d.deptype = 'e')
    loop
        -- Signatures come from the catalog (regprocedure text is quoted).
        -- memory._node_key keeps its owner: the role that may read the key file.
        if v_fn.name <> '_node_key' then
            execute format('alter routine %s owner to pymem_owner', v_fn.signature);
        end if;
        execute format('revoke all on routine %s from public', v_fn.signature);
        execute format('grant execute on routine %s to pymem_owner', v_fn.signature);
        if v_fn.name = any (v_app) then
            execute format('grant execute on routine %s to pymem_app', v_fn.signature);
        end if;
        if v_fn.name = any (v_worker) then
            execute format('grant execute on routine %s to pymem_worker', v_fn.signature);
        end if;
        if v_fn.name = any (v_reader) then
            execute format('grant execute on routine %s to pymem_reader', v_fn.signature);
        end if;
        if v_fn.name = any (v_auditor) then
            execute format('grant execute on routine %s to pymem_auditor', v_fn.signature);
        end if;
        if v_fn.name = any (v_monitor) then
            execute format('grant execute on routine %s to pymem_monitor', v_fn.signature);
        end if;
    end loop;
end;
$grants$;

alter view memory.session_overview owner to pymem_owner;
alter view memory.message_log owner to pymem_owner;

grant usage on schema memory to pymem_app, pymem_worker, pymem_reader, pymem_auditor,
    pymem_monitor;
revoke all on all tables in schema memory from public;
grant select on memory.sessions, memory.messages, memory.summaries,
                memory.session_overview, memory.message_log to pymem_reader;
grant select on memory.audit_log, memory.audit_heads to pymem_auditor;
