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
-- _tenant_setting: pymem.tenant as set for this transaction, empty as unset.
-- No `set search_path`, so that it inlines: the body uses pg_catalog only.
create or replace function memory._tenant_setting()
returns text
language sql
stable security invoker
return nullif(pg_catalog.current_setting('pymem.tenant', true), '');

comment on function memory._tenant_setting() is
$$The setting pymem.tenant, null when unset or empty (a setting once set in a
session reads as empty after its transaction ends). Inlined into
memory.current_tenant, memory._acting_for and memory._tenant_guard.$$;

-------------------------------------------------------------------------------
-- _granted_tenant: the tenant a login that is not privileged may act for.
create or replace function memory._granted_tenant(
    tenant text
)
returns text
language plpgsql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    -- A bound login (any pymem_reader member, or any login listed in
    -- tenant_grants) acts only for the tenants it was granted; one query
    -- answers both questions.
    if tenant is null
       or (exists (select from memory.tenant_grants as g
                    where g.role_name = session_user and g.tenant_id = _granted_tenant.tenant)
           or not (pg_catalog.pg_has_role(session_user, 'pymem_reader', 'member')
                   or exists (select from memory.tenant_grants as g
                               where g.role_name = session_user))) then
        return tenant;
    end if;
    return null;
end;
$fn$;

comment on function memory._granted_tenant(text) is
$$`tenant` when the login may act for it although not privileged (it is not
bound by memory.tenant_grants, or was granted that tenant), else null. Runs
as pymem_owner to read the grants; memory.current_tenant calls it for logins
that memory._privileged does not let act for any tenant.$$;

-------------------------------------------------------------------------------
-- current_tenant: the tenant this transaction acts for, as the row-level
-- security policies see it. An expression PostgreSQL inlines into each
-- caller, policies and memory.append included (no `set search_path`, no
-- security definer: either would make it a call of its own, with a settings
-- save and restore, where owners, superusers and the API functions need two
-- cheap tests). The body names only pg_catalog and memory functions,
-- resolved when it was created.
create or replace function memory.current_tenant()
returns text
language sql
stable security invoker
return case
           when memory._privileged() then memory._tenant_setting()
           else memory._granted_tenant(memory._tenant_setting())
       end;

comment on function memory.current_tenant() is
$$The tenant of this transaction: the setting pymem.tenant, which a client sets
with `select set_config('pymem.tenant', 'acme', true)` (true: for this
transaction only, so a pooled connection never carries it over). Null when
unset, or when the login is bound by memory.tenant_grants (every pymem_reader
member is) and was not granted that tenant (memory._granted_tenant). Every
row-level security policy compares tenant_id with it, so with no tenant set a
query sees no rows.
Example: select memory.current_tenant();$$;

-------------------------------------------------------------------------------
-- _acting_for: the guard's test, as an expression hot paths inline.
create or replace function memory._acting_for(
    tenant text
)
returns boolean
language sql
stable security invoker
return memory._tenant_setting() is not distinct from tenant
   and (tenant is null or memory.current_tenant() is not distinct from tenant);

comment on function memory._acting_for(text) is
$$True when this transaction already acts for `tenant` (the test
memory._tenant_guard passes without a word). Inlined into memory._act_for
and memory._tenant_guard.$$;

-------------------------------------------------------------------------------
-- _act_for: the guard's two passing cases, as an expression hot paths inline.
-- Volatile (it may set pymem.tenant) and not pinned: a body in SQL-standard
-- form is bound to its functions when created, not by the caller's
-- search_path, and a pinned setting would stop inlining.
create or replace function memory._act_for(
    tenant text
)
returns boolean
language sql
volatile security invoker
return case
           when memory._acting_for(tenant) then true
           -- A privileged login acts for the tenant it names, as the guard
           -- lets it: the setting is taken for the transaction.
           when memory._privileged()
               then pg_catalog.set_config('pymem.tenant', tenant, true) is not null
           else false
       end;

comment on function memory._act_for(text) is
$$True when this transaction acts for `tenant`: it already did
(memory._acting_for), or the login is privileged (memory._privileged) and
pymem.tenant is set to `tenant` for the transaction, as memory._tenant_guard
would set it. False otherwise, with nothing changed: the caller then runs the
guard, which raises ME017 or lets a granted login through. Inlined: the API
functions on hot paths run `if not memory._act_for(t) then perform
memory._tenant_guard(t); end if;`, which costs a few cheap tests instead of a
function call, for owners that name the tenant without setting it too.$$;

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
    v_set text := memory._tenant_setting();
begin
    if memory._acting_for(tenant) then
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
