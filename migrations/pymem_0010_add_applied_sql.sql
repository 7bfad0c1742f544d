-- The digest of each sql/ file as last applied, so that `pymem migrate`
-- re-applies only what changed: a run with nothing new takes no lock on any
-- table (creating a policy or a trigger locks its table; replacing a
-- function does not).
--
-- Locks: none on existing tables.
-- depends: pymem_0009_add_observability
create table memory.applied_sql (
    file       text primary key,
    digest     text not null,
    applied_at timestamptz not null default now()
);
alter table memory.applied_sql owner to pymem_owner;
alter table memory.applied_sql enable row level security;
alter table memory.applied_sql force row level security;
