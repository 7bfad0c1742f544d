-- A tamper-evident audit log: one hash chain per tenant. Each row carries the
-- SHA-256 of the previous row's hash and its own content; the chain head per
-- tenant is kept in audit_heads (its row lock orders concurrent writers into
-- one linear chain). Triggers in sql/ fill it; content is never copied in.
-- New tables only: nothing existing is locked or rewritten.
-- depends: pymem_0004_add_rate_limits
create table memory.audit_log (
    tenant_id  text not null,
    audit_id   bigint not null,
    at         timestamptz not null,
    actor      text not null,
    action     text not null,
    object     text not null,
    object_key text not null,
    details    jsonb not null default '{}'::jsonb,
    prev_hash  bytea not null,
    hash       bytea not null,
    primary key (tenant_id, audit_id),
    constraint audit_log_id_positive check (audit_id >= 1)
);

create table memory.audit_heads (
    tenant_id text primary key,
    last_id   bigint not null default 0,
    last_hash bytea not null default '\x'::bytea
);
