-- Hands memory.messages back to pymem's own monthly partitions: pg_partman
-- forgets it and the partitions get their former names. Daily or weekly
-- partitions cannot be handed back (pymem's old code made monthly ones only):
-- the rollback stops then. The extension and schema partman stay, since other
-- tables may use them (drop them by hand when nothing does).
do $release$
declare
    v_child record;
begin
    for v_child in
        select c.relname
          from pg_catalog.pg_inherits as i
          join pg_catalog.pg_class as c on c.oid = i.inhrelid
         where i.inhparent = 'memory.messages'::regclass
           and c.relname <> 'messages_default'
    loop
        if v_child.relname !~ '^messages_p[0-9]{4}_[0-9]{2}$' then
            raise exception 'memory: % is not a monthly partition', v_child.relname
                using errcode = 'ME002',
                      hint = 'only monthly partitions can go back to pymem''s own partitioning';
        end if;
        execute format('alter table memory.%I rename to %I',
                       v_child.relname, 'messages_' || substr(v_child.relname, 11));
    end loop;
end;
$release$;
delete from partman.part_config where parent_table = 'memory.messages';
drop table if exists partman.template_memory_messages;
revoke all on all tables in schema partman from pymem_owner;
revoke all on all functions in schema partman from pymem_owner;
revoke all on all procedures in schema partman from pymem_owner;
revoke all on all sequences in schema partman from pymem_owner;
revoke all on schema partman from pymem_owner;
