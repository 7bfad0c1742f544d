-- Retention by age: a tenant may keep its messages for a limited time
-- (memory.configure_tenant(..., retention => '30 days'); null keeps them).
-- memory.maintain removes older turns, with their digests and idempotency
-- keys, and keeps the session counters right.
--
-- Locks: ACCESS EXCLUSIVE on memory.tenants for the catalog change only (a
-- nullable column without a default: no rewrite).
-- depends: pymem_0011_manage_partitions_with_pg_partman
alter table memory.tenants
    add column retention interval,
    add constraint tenants_retention_range
        check (retention is null or (retention >= interval '1 hour'
                                     and retention <= interval '100 years'));
