-- Monthly partitions of memory.messages, created ahead of time.

-------------------------------------------------------------------------------
-- ensure_partitions: create the monthly partitions from `as_of`'s month to
-- `months_ahead` months later, moving any rows the default partition holds for
-- those months into their new partition.
create or replace function memory.ensure_partitions(
    months_ahead integer default 3,
    as_of        timestamptz default now()
)
returns setof text
language plpgsql
volatile security definer
set search_path = pg_catalog, pg_temp
as $fn$
declare
    v_month date;
    v_from  timestamptz;
    v_to    timestamptz;
    v_name  text;
    v_moved bigint;
begin
    if months_ahead is null or months_ahead < 0 or months_ahead > 120 then
        raise exception 'memory: months_ahead must be between 0 and 120, got %', months_ahead
            using errcode = 'ME002', hint = 'the default of 3 suits monthly maintenance';
    end if;

    for i in 0..months_ahead loop
        v_month := (date_trunc('month', as_of at time zone 'UTC') + make_interval(months => i))::date;
        v_from := v_month::timestamp at time zone 'UTC';
        v_to := (v_month + interval '1 month')::timestamp at time zone 'UTC';
        v_name := 'messages_' || to_char(v_month, 'YYYY_MM');

        continue when to_regclass(format('memory.%I', v_name)) is not null;

        -- Rows already caught by the default partition must move first, or
        -- attaching the new range would fail.
        lock table memory.messages_default in access exclusive mode;
        perform 1
           from memory.messages_default as d
          where d.created_at >= v_from
            and d.created_at < v_to
          limit 1;
        if found then
            execute format(
                'create table memory.%I (like memory.messages including defaults including constraints including generated)',
                v_name);
            execute format(
                'with moved as (delete from memory.messages_default as d
                                 where d.created_at >= $1 and d.created_at < $2
                                 returning d.tenant_id, d.session_id, d.seq, d.role, d.content,
                                           d.sealed, d.key_version, d.search, d.tokens,
                                           d.tokens_estimated, d.metadata, d.embedding,
                                           d.idempotency_key, d.created_at)
                 insert into memory.%I (tenant_id, session_id, seq, role, content, sealed,
                                        key_version, search, tokens, tokens_estimated, metadata,
                                        embedding, idempotency_key, created_at)
                 select * from moved', v_name)
                using v_from, v_to;
            get diagnostics v_moved = row_count;
            execute format(
                'alter table memory.messages attach partition memory.%I for values from (%L) to (%L)',
                v_name, v_from, v_to);
            raise notice 'memory: moved % rows from messages_default into %', v_moved, v_name;
        else
            execute format(
                'create table memory.%I partition of memory.messages for values from (%L) to (%L)',
                v_name, v_from, v_to);
        end if;
        -- Closed to direct reads like every pymem table: reads go through
        -- memory.messages, whose policies govern them.
        execute format('alter table memory.%I enable row level security', v_name);
        execute format('alter table memory.%I force row level security', v_name);
        execute format('create policy functions on memory.%I to pymem_owner '
                       'using (true) with check (true)', v_name);
        return next v_name;
    end loop;
end;
$fn$;

comment on function memory.ensure_partitions(integer, timestamptz) is
$$Create the monthly partitions of memory.messages for the month of `as_of`
(UTC) and the `months_ahead` months after it; returns the names created.
Rows that the default partition caught for those months are moved into the new
partition. Takes an access exclusive lock on memory.messages_default while
checking it. Errors: ME002 when months_ahead is outside 0..120.
Example: select * from memory.ensure_partitions(3);$$;

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
