-- Refuses while any row is sealed: decrypt first with
-- memory.configure_encryption(tenant, 'none') and memory.reencrypt until it
-- reports nothing left. Rebuilding the generated search column rewrites
-- memory.messages (ACCESS EXCLUSIVE for the duration).
do $check$
begin
    if exists (select from memory.messages where sealed is not null)
       or exists (select from memory.summaries where sealed is not null) then
        raise exception 'memory: sealed rows remain; decrypt them before rolling back'
            using errcode = 'ME002',
                  hint = 'memory.configure_encryption(tenant, ''none''), then memory.reencrypt(tenant) until done';
    end if;
end;
$check$;

drop index memory.sessions_key_version_idx;
alter table memory.sessions drop column key_version;

alter table memory.summaries drop constraint summaries_content_or_sealed;
alter table memory.summaries drop column sealed, drop column key_version;
alter table memory.summaries alter column content set not null;

alter table memory.messages drop constraint messages_content_or_sealed;
alter table memory.messages drop column sealed, drop column key_version;
alter table memory.messages alter column content set not null;
alter table memory.messages drop column search;
alter table memory.messages
    add column search tsvector generated always as (to_tsvector('english'::regconfig, content)) stored;
create index messages_session_search_idx on memory.messages
    using gin (tenant_id, session_id, search) with (fastupdate = off);

drop table memory.tenant_keys;

alter table memory.tenants drop constraint tenants_encryption_known;
alter table memory.tenants drop column encryption;
