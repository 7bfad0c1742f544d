-- Rate limiting in PostgreSQL: the generic cell rate algorithm (GCRA), the
-- same rule the Redis limiter runs in Lua.

-------------------------------------------------------------------------------
-- rate_limit: admit or refuse `cost` units for a key, `max_count` per `period`.
create or replace function memory.rate_limit(
    tenant    text,
    limit_key text,
    max_count integer,
    period    interval,
    cost      integer default 1
)
returns table (
    allowed     boolean,
    retry_after interval,
    remaining   integer
)
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
#variable_conflict use_column
declare
    v_now      timestamptz := clock_timestamp();
    v_interval interval;
    v_tau      interval;
    v_tat      timestamptz;
    v_new      timestamptz;
begin
    perform memory._tenant_guard(rate_limit.tenant);
    perform memory._check_ident('tenant', rate_limit.tenant);
    perform memory._check_ident('limit_key', rate_limit.limit_key);
    if max_count is null or max_count < 1 or period is null or period <= interval '0'
       or cost is null or cost < 1 or cost > max_count then
        raise exception 'memory: need max_count >= 1, period > 0 and 1 <= cost <= max_count'
            using errcode = 'ME002', hint = 'e.g. max_count => 60, period => ''1 minute''';
    end if;
    v_interval := period / max_count;
    v_tau := period - v_interval;

    -- Lock the key's row (creating it if needed), so concurrent callers queue.
    insert into memory.rate_limits as r (tenant_id, limit_key, tat, expires_at)
    values (rate_limit.tenant, rate_limit.limit_key, v_now, v_now + period)
    on conflict (tenant_id, limit_key) do update set tat = r.tat
    returning r.tat into v_tat;
    v_tat := greatest(v_tat, v_now);
    v_new := v_tat + v_interval * cost;

    if v_new - v_now > v_tau + v_interval then
        return query select false, (v_new - v_now) - (v_tau + v_interval),
                            greatest(floor(extract(epoch from (v_tau + v_interval - (v_tat - v_now)))
                                           / extract(epoch from v_interval))::integer, 0);
        return;
    end if;
    update memory.rate_limits as r
       set tat = v_new,
           expires_at = v_new + period
     where r.tenant_id = rate_limit.tenant
       and r.limit_key = rate_limit.limit_key;
    return query select true, interval '0',
                        floor(extract(epoch from (v_tau + v_interval - (v_new - v_now)))
                              / extract(epoch from v_interval))::integer;
end;
$fn$;

comment on function memory.rate_limit(text, text, integer, interval, integer) is
$$Admit `cost` units for `limit_key` if the key stays within `max_count` per
`period` (GCRA: a full burst of max_count, then one every period/max_count).
Returns (allowed, retry_after, remaining). Concurrent callers on one key are
serialized by its row lock, so no more than the limit is ever admitted.
Errors: ME002 bad limit, period or cost; ME006 bad identifier.
Example: select * from memory.rate_limit('acme', 'user:u-7', 60, '1 minute');$$;

-------------------------------------------------------------------------------
-- purge_rate_limits: forget keys idle for longer than their period.
create or replace function memory.purge_rate_limits(
    as_of timestamptz default now()
)
returns integer
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_gone integer;
begin
    delete from memory.rate_limits as r
     where r.expires_at < purge_rate_limits.as_of;
    get diagnostics v_gone = row_count;
    return v_gone;
end;
$fn$;

comment on function memory.purge_rate_limits(timestamptz) is
$$Delete rate-limit rows whose key has been idle past its period; returns how
many. Run from maintenance. Example: select memory.purge_rate_limits();$$;
