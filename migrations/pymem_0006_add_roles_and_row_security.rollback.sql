-- Turns row-level security off and drops the tenant bindings. Ownership stays
-- with pymem_owner and the roles stay: they are cluster-wide and may serve
-- other databases (drop them by hand with DROP OWNED / DROP ROLE).
do $off$
declare
    v_rel record;
begin
    for v_rel in
        select p.polname, c.relname
          from pg_catalog.pg_policy as p
          join pg_catalog.pg_class as c on c.oid = p.polrelid
         where c.relnamespace = 'memory'::regnamespace
    loop
        execute format('drop policy %I on memory.%I', v_rel.polname, v_rel.relname);
    end loop;
    for v_rel in
        select c.relname
          from pg_catalog.pg_class as c
         where c.relnamespace = 'memory'::regnamespace
           and c.relkind in ('r', 'p')
           and c.relrowsecurity
    loop
        execute format('alter table memory.%I no force row level security', v_rel.relname);
        execute format('alter table memory.%I disable row level security', v_rel.relname);
    end loop;
end;
$off$;
drop table memory.tenant_grants;
