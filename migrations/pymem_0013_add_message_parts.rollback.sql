-- Contract back to plain text messages. Refuses while structured messages
-- exist: their parts would be left as JSON text that no function reads.
do $$
begin
    if exists (select from memory.messages where structured) then
        raise exception 'memory: structured messages exist; cannot roll back pymem_0013'
            using errcode = 'ME002',
                  hint = 'purge or rewrite the sessions that hold tool calls or parts first';
    end if;
end;
$$;
drop type memory.turn_input;
alter table memory.messages
    drop constraint messages_tool_parts_range,
    drop column tool_parts,
    drop column structured;
