-- Rate-limit state for the PostgreSQL limiter (the fallback when Redis is
-- unavailable, or the only limiter without Redis): one row per limited key,
-- holding its GCRA theoretical arrival time. A new table: no locks elsewhere.
-- depends: pymem_0003_add_recall_and_jobs
create table memory.rate_limits (
    tenant_id  text not null,
    limit_key  text not null,
    tat        timestamptz not null,
    expires_at timestamptz not null,
    primary key (tenant_id, limit_key)
);
create index rate_limits_expires_at_idx on memory.rate_limits (expires_at);
