-- The partitions of memory.messages: pg_partman makes them ahead and drops
-- them past retention (migration pymem_0011); these functions run its
-- maintenance and give every new partition pymem's row-level security.

-------------------------------------------------------------------------------
-- maintain_partitions: pg_partman's maintenance of memory.messages.
create or replace function memory.maintain_partitions()
returns setof text
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
-- Attaching a partition locks memory.messages, and appends queue behind a
-- waiting lock: wait at most 2 s, then fail (the next run tries again).
set lock_timeout = '2s'
as $fn$
declare
    v_before text[];
    v_child  text;
begin
    if to_regclass('partman.part_config') is null
       or not exists (select from partman.part_config as c
                       where c.parent_table = 'memory.messages') then
        raise exception 'memory: pg_partman does not manage memory.messages'
            using errcode = '55000',
                  hint = 'run `pymem migrate` with pg_partman installed '
                         '(Debian: apt install postgresql-15-partman)';
    end if;
    select coalesce(array_agg(c.relname::text), '{}')
      into v_before
      from pg_catalog.pg_inherits as i
      join pg_catalog.pg_class as c on c.oid = i.inhrelid
     where i.inhparent = 'memory.messages'::regclass;
    begin
        -- Rows the default partition caught (no partition covered their time)
        -- move into partitions of their own, made for them.
        if exists (select from memory.messages_default) then
            perform partman.partition_data_time('memory.messages', p_batch_count => 100000);
        end if;
        -- Partitions ahead (premake) and retention (whole partitions dropped).
        perform partman.run_maintenance('memory.messages', p_analyze => false);
    exception
        when lock_not_available or raise_exception then
            -- pg_partman re-raises what went wrong as a plain exception.
            if sqlstate = '55P03' or sqlerrm like '%lock timeout%' then
                raise exception 'memory: partition maintenance waited 2 s for a lock and gave way'
                    using errcode = '55P03',
                          hint = 'a long transaction holds memory.messages; the next run tries again';
            end if;
            raise;
    end;
    -- pg_partman 4 sets search_path for the whole session (set_config(...,
    -- false)), which outlives this function's own setting. Give the session
    -- its default back, and pin this function's path again for the rest of
    -- the transaction.
    perform set_config('search_path',
                       (select s.reset_val from pg_catalog.pg_settings as s
                         where s.name = 'search_path'),
                       false);
    perform set_config('search_path', 'pg_catalog, pg_temp', true);
    -- pg_partman does not copy row-level security: closed to direct reads
    -- like every pymem table, open to pymem's own functions.
    for v_child in
        select c.relname
          from pg_catalog.pg_inherits as i
          join pg_catalog.pg_class as c on c.oid = i.inhrelid
         where i.inhparent = 'memory.messages'::regclass
           and not (c.relrowsecurity and c.relforcerowsecurity
                    and exists (select from pg_catalog.pg_policy as p
                                 where p.polrelid = c.oid and p.polname = 'functions'))
    loop
        -- Catalog names only, quoted with %I.
        execute format('alter table memory.%I enable row level security', v_child);
        execute format('alter table memory.%I force row level security', v_child);
        execute format('drop policy if exists functions on memory.%I', v_child);
        execute format('create policy functions on memory.%I to pymem_owner '
                       'using (true) with check (true)', v_child);
    end loop;
    return query
        select c.relname::text
          from pg_catalog.pg_inherits as i
          join pg_catalog.pg_class as c on c.oid = i.inhrelid
         where i.inhparent = 'memory.messages'::regclass
           and not (c.relname = any (v_before))
         order by c.relname;
end;
$fn$;

comment on function memory.maintain_partitions() is
$$Run pg_partman's maintenance of memory.messages: move rows the default
partition caught into partitions made for them, create partitions ahead
(premake, set at install: `pymem migrate --partition-interval`), drop whole
partitions past the retention, and give new partitions pymem's row-level
security. Returns the partitions created. memory.maintain calls it.
Waits at most 2 s for a table lock (lock_timeout), so that appends never
queue long behind it; on a timeout it fails with 55P03 and changes nothing,
and the next run tries again.
pg_partman 4 changes the session's search_path; this function sets it back
to the session's default (a search_path set with SET in the same session is
lost, and inside an open transaction it stays pinned until commit).
Errors: 55000 when pg_partman does not manage memory.messages.
Example: select * from memory.maintain_partitions();$$;

-------------------------------------------------------------------------------
-- ensure_partitions: deprecated, kept for one release (expand and contract).
create or replace function memory.ensure_partitions(
    months_ahead integer default 3,
    as_of        timestamptz default now()
)
returns setof text
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
begin
    if months_ahead is null or months_ahead < 0 or months_ahead > 120 then
        raise exception 'memory: months_ahead must be between 0 and 120, got %', months_ahead
            using errcode = 'ME002', hint = 'the default of 3 suits monthly maintenance';
    end if;
    return query select * from memory.maintain_partitions();
end;
$fn$;

comment on function memory.ensure_partitions(integer, timestamptz) is
$$Deprecated: calls memory.maintain_partitions() (pg_partman now makes the
partitions; `months_ahead` and `as_of` are ignored) and will be removed in
the next release. Errors: ME002 when months_ahead is outside 0..120.
Example: select * from memory.maintain_partitions();$$;

-------------------------------------------------------------------------------
-- partitions: what memory.messages is made of.
create or replace function memory.partitions()
returns table (
    partition_name text,
    range_from     timestamptz,
    range_to       timestamptz,
    is_default     boolean,
    approx_rows    bigint
)
language sql
stable security definer
set search_path = pg_catalog, pg_temp
as $fn$
    select c.relname::text,
           case when b.bound like 'FOR VALUES FROM%'
                then substring(b.bound from $re$FROM \('([^']+)'\)$re$)::timestamptz end,
           case when b.bound like 'FOR VALUES FROM%'
                then substring(b.bound from $re$TO \('([^']+)'\)$re$)::timestamptz end,
           b.bound = 'DEFAULT',
           greatest(c.reltuples, 0)::bigint
      from pg_catalog.pg_inherits as i
      join pg_catalog.pg_class as c on c.oid = i.inhrelid
      cross join lateral (select pg_catalog.pg_get_expr(c.relpartbound, c.oid) as bound) as b
     where i.inhparent = 'memory.messages'::regclass
     order by b.bound = 'DEFAULT', c.relname;
$fn$;

comment on function memory.partitions() is
$$List the partitions of memory.messages with their ranges (null for the
default partition) and the planner's row estimate.
Example: select * from memory.partitions();$$;
