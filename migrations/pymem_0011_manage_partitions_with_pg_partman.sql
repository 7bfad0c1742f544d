-- pg_partman manages the partitions of memory.messages: it creates them ahead
-- (premake), keeps the default partition, and drops whole partitions past a
-- retention period. pymem's own partition code (memory.ensure_partitions)
-- becomes a thin, deprecated wrapper of memory.maintain_partitions.
--
-- The interval is chosen once, here: `pymem migrate --partition-interval
-- daily` (the setting pymem.partition_interval; monthly by default, weekly and
-- daily for heavy installations). An upgrade keeps monthly partitions: the
-- existing ones are renamed to pg_partman's names (messages_2026_11 becomes
-- messages_p2026_11) and adopted.
--
-- Needs the pg_partman extension files (Debian: postgresql-15-partman; Amazon
-- RDS, Cloud SQL and Azure Flexible Server ship it) and a role that may create
-- it (a superuser, rds_superuser, cloudsqlsuperuser, azure_pg_admin).
-- Locks: ACCESS EXCLUSIVE on each existing partition for its rename (catalog
-- only, no rewrite).
-- depends: pymem_0010_add_applied_sql
create schema if not exists partman;
create extension if not exists pg_partman schema partman;

do $adopt$
declare
    v_interval text := coalesce(nullif(current_setting('pymem.partition_interval', true), ''),
                                'monthly');
    v_child    record;
    v_first    timestamptz;
begin
    if v_interval not in ('monthly', 'weekly', 'daily') then
        raise exception 'memory: unknown partition interval %', quote_literal(v_interval)
            using errcode = 'ME002', hint = 'use monthly (default), weekly or daily';
    end if;
    -- Existing monthly partitions (an upgrade) keep their month.
    for v_child in
        select c.relname,
               substring(pg_catalog.pg_get_expr(c.relpartbound, c.oid)
                         from $re$FROM \('([^']+)'\)$re$)::timestamptz as range_from
          from pg_catalog.pg_inherits as i
          join pg_catalog.pg_class as c on c.oid = i.inhrelid
         where i.inhparent = 'memory.messages'::regclass
           and c.relname ~ '^messages_[0-9]{4}_[0-9]{2}$'
    loop
        if v_interval <> 'monthly' then
            raise exception 'memory: this database already has monthly partitions'
                using errcode = 'ME002',
                      hint = 'upgrades keep the monthly interval: drop --partition-interval';
        end if;
        execute format('alter table memory.%I rename to %I',
                       v_child.relname, 'messages_p' || substr(v_child.relname, 10));
        v_first := least(v_first, v_child.range_from);
    end loop;
    -- A new install has no ranged partition yet: pg_partman makes the
    -- default partition itself, so the empty one of pymem_0002 goes first.
    if v_first is null then
        if exists (select from memory.messages_default) then
            raise exception 'memory: memory.messages_default holds rows but no partition exists'
                using errcode = 'ME002',
                      hint = 'run `pymem migrate` of the previous release first, or move the rows';
        end if;
        drop table memory.messages_default;
    end if;
    perform partman.create_parent(
        p_parent_table => 'memory.messages',
        p_control => 'created_at',
        p_type => 'native',
        p_interval => v_interval,
        p_premake => case v_interval when 'daily' then 14 when 'weekly' then 8 else 3 end,
        p_start_partition => coalesce(v_first,
                                      date_trunc(case v_interval when 'monthly' then 'month'
                                                                 when 'weekly' then 'week'
                                                                 else 'day' end,
                                                 now()))::text);
    -- What create_parent made belongs to pymem_owner, closed like every
    -- pymem table (memory.maintain_partitions does the same for later ones).
    for v_child in
        select c.relname
          from pg_catalog.pg_inherits as i
          join pg_catalog.pg_class as c on c.oid = i.inhrelid
         where i.inhparent = 'memory.messages'::regclass
    loop
        execute format('alter table memory.%I owner to pymem_owner', v_child.relname);
        execute format('alter table memory.%I enable row level security', v_child.relname);
        execute format('alter table memory.%I force row level security', v_child.relname);
        execute format('drop policy if exists functions on memory.%I', v_child.relname);
        execute format('create policy functions on memory.%I to pymem_owner '
                       'using (true) with check (true)', v_child.relname);
    end loop;
    -- Partitions ahead even before data arrives; retention (memory.maintain)
    -- drops whole partitions, never keeps them detached.
    update partman.part_config
       set infinite_time_partitions = true,
           retention_keep_table = false,
           retention_keep_index = false
     where parent_table = 'memory.messages';
end;
$adopt$;

-- memory.maintain_partitions runs as pymem_owner (security definer).
grant usage on schema partman to pymem_owner;
grant select, insert, update, delete on all tables in schema partman to pymem_owner;
grant execute on all functions in schema partman to pymem_owner;
grant execute on all procedures in schema partman to pymem_owner;
grant usage on all sequences in schema partman to pymem_owner;
