-- The audit triggers: which changes to which tables write memory.audit_log
-- (the trigger functions are in 100_audit.sql). Creating a trigger locks its
-- table, so `pymem migrate` re-applies this file only when its text changed
-- (memory.applied_sql keeps each file's digest), with a short lock_timeout.
--
-- An update trigger names the columns it audits: an update that sets none of
-- them (an append counting its message into the session row) does not look
-- at the trigger at all, not even to read its WHEN condition. The WHEN
-- condition still skips updates that set those columns to what they were.

drop trigger if exists tenants_audit on memory.tenants;
create trigger tenants_audit
    after insert or update on memory.tenants
    for each row execute function memory._audit_tenants();

drop trigger if exists sessions_audit_insert_delete on memory.sessions;
create trigger sessions_audit_insert_delete
    after insert or delete on memory.sessions
    for each row execute function memory._audit_sessions();

drop trigger if exists sessions_audit_update on memory.sessions;
create trigger sessions_audit_update
    after update of deleted_at, expires_at, max_messages, max_tokens, summary_every_tokens,
                    user_id, metadata
    on memory.sessions
    for each row
    when (old.deleted_at is distinct from new.deleted_at
          or old.expires_at is distinct from new.expires_at
          or old.max_messages is distinct from new.max_messages
          or old.max_tokens is distinct from new.max_tokens
          or old.summary_every_tokens is distinct from new.summary_every_tokens
          or old.user_id is distinct from new.user_id
          or old.metadata is distinct from new.metadata)
    execute function memory._audit_sessions();

drop trigger if exists messages_audit_delete on memory.messages;
create trigger messages_audit_delete
    after delete on memory.messages
    referencing old table as gone
    for each statement execute function memory._audit_message_deletes();

drop trigger if exists messages_audit_update on memory.messages;
create trigger messages_audit_update
    after update on memory.messages
    for each row
    when (old.role is distinct from new.role
          or old.metadata is distinct from new.metadata
          or (old.key_version is not distinct from new.key_version
              and (old.content is distinct from new.content
                   or old.sealed is distinct from new.sealed)))
    execute function memory._audit_message_updates();

drop trigger if exists tenant_keys_audit on memory.tenant_keys;
create trigger tenant_keys_audit
    after insert or update or delete on memory.tenant_keys
    for each row execute function memory._audit_keys();

drop trigger if exists summaries_audit on memory.summaries;
create trigger summaries_audit
    after insert on memory.summaries
    for each row execute function memory._audit_summaries();

drop trigger if exists audit_log_append_only on memory.audit_log;
create trigger audit_log_append_only
    before update or delete on memory.audit_log
    for each row execute function memory._audit_log_append_only();

drop trigger if exists audit_log_no_truncate on memory.audit_log;
create trigger audit_log_no_truncate
    before truncate on memory.audit_log
    for each statement execute function memory._audit_log_append_only();
