-- Acting for a tenant: who may, which tenant a transaction acts for, and the
-- guard every function that takes a tenant runs first.

-------------------------------------------------------------------------------
-- _privileged: may the login act for any tenant? Members of pymem_owner (the
-- role migrations run as) may, and superusers, who are members of every role.
-- No `set search_path`, so that it inlines: the body uses pg_catalog only.
create or replace function memory._privileged()
returns boolean
language sql
stable parallel safe security invoker
return pg_catalog.pg_has_role(session_user, 'pymem_owner', 'member');

comment on function memory._privileged() is
$$True when the login (session_user, not the owner of a running security
definer function) is a superuser or a member of pymem_owner. Such logins may
name any tenant in a call.$$;

-------------------------------------------------------------------------------
-- current_tenant: the tenant this transaction acts for, as the row-level
-- security policies see it.
create or replace function memory.current_tenant()
returns text
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_tenant text := nullif(current_setting('pymem.tenant', true), '');
begin
    if v_tenant is null then
        return null;
    end if;
    if memory._privileged() then
        return v_tenant;
    end if;
    -- A bound login (any pymem_reader member, or any login listed in
    -- tenant_grants) sees only the tenants it was granted.
    if (pg_catalog.pg_has_role(session_user, 'pymem_reader', 'member')
        or exists (select from memory.tenant_grants as g where g.role_name = session_user))
       and not exists (select from memory.tenant_grants as g
                        where g.role_name = session_user and g.tenant_id = v_tenant) then
        return null;
    end if;
    return v_tenant;
end;
$fn$;

comment on function memory.current_tenant() is
$$The tenant of this transaction: the setting pymem.tenant, which a client sets
with `select set_config('pymem.tenant', 'acme', true)` (true: for this
transaction only, so a pooled connection never carries it over). Null when
unset, or when the login is bound by memory.tenant_grants (every pymem_reader
member is) and was not granted that tenant. Every row-level security policy
compares tenant_id with it, so with no tenant set a query sees no rows.
Example: select memory.current_tenant();$$;

-------------------------------------------------------------------------------
-- _tenant_guard: the first statement of every function that takes a tenant.
create or replace function memory._tenant_guard(
    tenant text
)
returns void
language plpgsql
volatile security invoker
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_set text := nullif(current_setting('pymem.tenant', true), '');
begin
    if v_set is not distinct from tenant and (v_set is null or memory.current_tenant() = v_set) then
        return;
    end if;
    if memory._privileged() then
        -- Owners and superusers act for the tenant they name.
        perform set_config('pymem.tenant', tenant, true);
        return;
    end if;
    if v_set is null then
        raise exception 'memory: no tenant is set for this transaction'
            using errcode = 'ME017',
                  hint = format('run select set_config(''pymem.tenant'', %L, true) in the same '
                                'transaction first (pymem''s Python client does this for you)', tenant);
    end if;
    if v_set is distinct from tenant then
        raise exception 'memory: this transaction acts for tenant %, not %', v_set, tenant
            using errcode = 'ME017',
                  hint = 'a transaction acts for one tenant: set pymem.tenant to the tenant you name';
    end if;
    raise exception 'memory: role % may not act for tenant %', session_user, tenant
        using errcode = 'ME017',
              hint = format('an owner grants it with select memory.grant_tenant(%L, %L)',
                            tenant, session_user);
end;
$fn$;

comment on function memory._tenant_guard(text) is
$$Raise ME017 unless this transaction acts for `tenant` (see
memory.current_tenant). Privileged logins (memory._privileged) need not set
pymem.tenant: the guard sets it to the tenant they name.$$;
